// Run-time choice of the popcount micro-kernel and of its plane-sum kernel.
#include "common/cpu_features.h"
#include "gemm/microkernel.h"

namespace bnn::cpu {

MicroKernel select_microkernel(BitOp op) {
  if (cpu_isa_cap() >= CpuIsa::Avx512 && cpu_has_avx512_vpopcnt()) return avx512_microkernel(op);
  if (use_avx2()) return avx2_microkernel(op);
  return scalar_microkernel(op);
}

PlaneSumFn plane_sum_kernel(const MicroKernel& mk) { return mk.plane_sum; }

}  // namespace bnn::cpu
