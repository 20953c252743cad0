// The row kernel behind binary_weight_conv2d where its panel kernel does not run (internal).
#pragma once

#include <cstdint>

namespace bnn::cpu {

// Single-threaded rows (for callers that parallelize themselves: binary_weight_conv2d in
// float64, or in float32 without AVX2 / AVX-512): out[m * ldo + n] for m < M, n < N, x rows of
// K values (row stride K), w [N, ceil(K/32)]. Each output is one sequential sum over k from +0,
// as the panel kernels compute it, so a row gives the same result wherever it sits.
template <typename T>
void linear_rows(const T* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const T* scale, const T* bias, T* out,
                 int64_t ldo);

}  // namespace bnn::cpu
