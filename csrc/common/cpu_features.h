// Run-time CPU feature dispatch shared by the CPU kernels.
#pragma once

#include <cstdlib>
#include <cstring>

namespace bnn {

enum class CpuIsa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// The highest instruction set kernels may use: BNN_KERNELS_CPU_ISA=scalar|avx2|avx512
// caps it (tests and benchmarks force each path this way); unset means no cap. Read at every
// call. What the cap and the CPU leave for the GEMM is reported by bnn::cpu::gemm_isa()
// (Python: bnn_kernels.cpu_gemm_isa()).
inline CpuIsa cpu_isa_cap() {
  const char* v = std::getenv("BNN_KERNELS_CPU_ISA");
  if (v == nullptr) return CpuIsa::Avx512;
  if (std::strcmp(v, "scalar") == 0) return CpuIsa::Scalar;
  if (std::strcmp(v, "avx2") == 0) return CpuIsa::Avx2;
  return CpuIsa::Avx512;
}

// True when AVX2 kernels may run: the CPU has AVX2 and the cap allows it.
inline bool use_avx2() {
#if defined(__x86_64__)
  return cpu_isa_cap() >= CpuIsa::Avx2 && __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

// True when the CPU runs the AVX-512 kernels: it has AVX-512F (and VPOPCNTDQ, when asked). In
// a build with BNN_EMULATE_AVX512 (common/avx512.h), whose AVX-512 kernels run on an emulation
// of the intrinsics, it needs AVX2 instead.
inline bool cpu_runs_avx512(bool vpopcntdq) {
#if defined(__x86_64__) && defined(BNN_EMULATE_AVX512)
  (void)vpopcntdq;
  return __builtin_cpu_supports("avx2");
#elif defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && (!vpopcntdq || __builtin_cpu_supports("avx512vpopcntdq"));
#else
  (void)vpopcntdq;
  return false;
#endif
}

// True when AVX-512F kernels may run.
inline bool use_avx512() { return cpu_isa_cap() >= CpuIsa::Avx512 && cpu_runs_avx512(false); }

}  // namespace bnn
