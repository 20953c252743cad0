// Binary weights, real activations: y = x @ (scale * sign(W))^T + bias. Torch-free.
#pragma once

#include <cstdint>

namespace bnn::cpu {

// x [M, K] (T = float or double), w packed [N, ceil(K/32)], scale and bias [N] or null,
// out [M, N]. Accumulates in T.
template <typename T>
void binary_weight_linear(const T* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const T* scale, const T* bias,
                          T* out, int num_threads);

}  // namespace bnn::cpu
