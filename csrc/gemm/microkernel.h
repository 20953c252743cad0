// Register-blocked popcount micro-kernels over packed 64-bit panels (internal).
//
// Panel layout: a tile of R rows is stored k-major, p[kk * R + r] = 64-bit word kk of row r,
// so one K step of a tile is R consecutive words (one or more vector registers of B).
#pragma once

#include <cstdint>

#include "gemm/popcount_gemm.h"

namespace bnn::cpu {

// Largest tile any kernel uses (bounds for the driver's stack buffers).
constexpr int kMaxMR = 8;
constexpr int kMaxNR = 16;

// acc[i * nr + j] = sum_kk popcount(op(a[kk * mr + i], b[kk * nr + j])) for kk < w64,
// i < mr, j < nr (overwrites acc).
using MicroKernelFn = void (*)(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t* acc);

struct MicroKernel {
  MicroKernelFn fn;
  const char* name;
  int mr;  // rows of A per tile
  int nr;  // rows of B per tile
};

// Best micro-kernel for this CPU: AVX-512 VPOPCNTDQ, else AVX2, else scalar POPCNT.
// BNN_KERNELS_CPU_ISA=scalar (or =avx2) forces that path where the CPU has it.
MicroKernel select_microkernel(BitOp op);

// Individual kernels, for tests and benchmarks that force each path.
MicroKernel scalar_microkernel(BitOp op);
MicroKernel avx2_microkernel(BitOp op);    // fn == nullptr where not compiled in
MicroKernel avx512_microkernel(BitOp op);  // fn == nullptr where not compiled in
bool cpu_has_avx2();
bool cpu_has_avx512_vpopcntdq();

}  // namespace bnn::cpu
