// Register-blocked MR x NR popcount micro-kernels over packed 64-bit panels (internal).
#pragma once

#include <cstdint>

#include "gemm/popcount_gemm.h"

namespace bnn::cpu {

constexpr int kMR = 4;
constexpr int kNR = 4;

// acc[i][j] = sum_kk popcount(op(a[kk * kMR + i], b[kk * kNR + j])) for kk < w64.
using MicroKernelFn = void (*)(const uint64_t* a, const uint64_t* b, int64_t w64,
                               int32_t acc[kMR][kNR]);

struct MicroKernel {
  MicroKernelFn fn;
  const char* name;
};

// Best micro-kernel for this CPU (AVX-512 VPOPCNTDQ, then AVX2, then scalar POPCNT);
// BNN_KERNELS_CPU_ISA=scalar|avx2|avx512 caps the choice (tests force each path with it).
MicroKernel select_microkernel(BitOp op);

// Individual kernels, for tests that force each path.
MicroKernel scalar_microkernel(BitOp op);
MicroKernel avx2_microkernel(BitOp op);    // {nullptr, ...} where not compiled in
MicroKernel avx512_microkernel(BitOp op);  // {nullptr, ...} where not compiled in
bool cpu_has_avx2();
bool cpu_has_avx512_vpopcnt();

}  // namespace bnn::cpu
