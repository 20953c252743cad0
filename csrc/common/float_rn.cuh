// Correctly rounded multiply and add that nvcc never contracts into an FMA: the CPU kernels
// round dot * scale and then + bias separately (built with -ffp-contract=off), and so must
// the CUDA epilogues for CUDA and CPU to agree bit for bit. Host compilations (the CPU
// emulation of the kernels) use plain operators, with contraction off as well.
#pragma once

#include "common/cuda_common.cuh"

namespace bnn::cuda {

#if defined(__CUDA_ARCH__)
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
#else
template <typename Acc>
__device__ __forceinline__ Acc mul_rn(Acc a, Acc b) {
  return a * b;
}
template <typename Acc>
__device__ __forceinline__ Acc add_rn(Acc a, Acc b) {
  return a + b;
}
#endif

// dot * scale[n], rounded, + bias[n], rounded (either may be null).
template <typename Acc>
__device__ __forceinline__ Acc finish_rn(Acc dot, const Acc* scale, const Acc* bias, int64_t n) {
  if (scale) dot = mul_rn(dot, scale[n]);
  if (bias) dot = add_rn(dot, bias[n]);
  return dot;
}

}  // namespace bnn::cuda
