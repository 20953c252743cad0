// Run-time CPU feature dispatch shared by the CPU kernels.
#pragma once

#include <cstdlib>
#include <cstring>

namespace bnn {

// True when AVX2 kernels may run: the CPU has AVX2 and BNN_KERNELS_CPU_ISA is not "scalar"
// (the switch tests and benchmarks use to force the portable path).
inline bool use_avx2() {
#if defined(__x86_64__)
  const char* force = std::getenv("BNN_KERNELS_CPU_ISA");
  if (force != nullptr && std::strcmp(force, "scalar") == 0) return false;
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

}  // namespace bnn
