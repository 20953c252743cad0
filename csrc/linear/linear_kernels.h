// ISA-specific kernels behind binary_weight_linear (internal).
#pragma once

#include <cstdint>

namespace bnn::cpu {

// float32 x [M, K], packed w [N, ceil(K/32)]; the contract of binary_weight_linear<float>.
// Available only where use_avx512() holds.
void binary_weight_linear_avx512(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                                 const float* bias, float* out, int num_threads);

}  // namespace bnn::cpu
