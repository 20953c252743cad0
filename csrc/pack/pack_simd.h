// Vectorized packing paths (internal to pack_cpu.cpp).
#pragma once

#include <cstdint>

#include "common/cpu_features.h"

namespace bnn::cpu {

// float32 pack_bits with the best ISA the CPU and BNN_KERNELS_CPU_ISA allow; false when none
// applies (then the caller runs the scalar loop).
bool pack_bits_f32_simd(const float* x, int64_t rows, int64_t k, const float* thr, int64_t thr_stride, int32_t* out,
                        int num_threads);

}  // namespace bnn::cpu
