// The emulator's own sm_90a test kernels (test_sm90_kernels.cu) and their drivers (test_sm90.cpp).
#pragma once
#include <cuda.h>

#include <cstdint>
#include <string>

namespace emutest {
// A small warp-specialized AND-popcount GEMM: C[m][n] = sum_k popc(A[m][k] & B[n][k]) for
// K-major bit rows (TMA with 128B swizzle into a 3-stage ring, mbarriers, one consumer
// warpgroup issuing wgmma.m64n<BN>k256, persistent CTAs). `bug` plants one defect (see
// kGemmBugs in test_sm90_kernels.cu); 0 is the correct kernel.
void sm90_gemm(int bn, const CUtensorMap& a, const CUtensorMap& b, int32_t* c, int m, int n, int k_tiles, int grid,
               int bug);
int sm90_gemm_bug(const std::string& name);  // bug number, 0 when unknown
// One wgmma.m64n256k256 on shared tiles A (8 KiB) and B (32 KiB), both 1024-byte aligned,
// zero except bytes[i] = writes[2i+1] at tile offset writes[2i] (A offsets first, B offsets
// + 65536); descriptors with start addresses relative to their tile. out[t * 128 + i]: register
// i of thread t. mode: see probe modes in test_sm90_kernels.cu.
void sm90_probe(const uint32_t* writes, int nwrites, uint64_t a_desc, uint64_t b_desc, int32_t* out, int mode);
// One TMA load of map's box at (c0, c1), `bytes` long, waited for; out receives the shared tile.
void sm90_tma_probe(const CUtensorMap& map, int c0, int c1, uint32_t bytes, uint8_t* out);
// Launches the sm_90 bug kernel `name`; false when unknown.
bool run_sm90_bug_kernel(const std::string& name, int32_t* buf, int64_t n);
}  // namespace emutest
