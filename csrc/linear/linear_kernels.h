// ISA-specific kernels behind binary_weight_linear (internal).
#pragma once

#include <cstdint>

namespace bnn::cpu {

// float32 x [M, K], packed w [N, ceil(K/32)]; the contract of binary_weight_linear<float>.
// Available only where use_avx512() holds.
void binary_weight_linear_avx512(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                                 const float* bias, float* out, int num_threads);

// Single-threaded rows (for callers that parallelize themselves: binary_weight_conv2d where its
// panel kernel does not run): out[m * ldo + n] for m < M, n < N, x rows of K values (row
// stride K), w [N, ceil(K/32)]. Each output's summation order depends on the ISA path only
// (scalar, AVX2 included: one sequential sum over k from +0; AVX-512: 16-lane masked sums,
// 2 * S - total), never on M, N or the tiling, so a row gives the same result wherever it sits.
void linear_rows_avx512(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                        const float* bias, float* out, int64_t ldo);
template <typename T>
void linear_rows(const T* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const T* scale, const T* bias, T* out,
                 int64_t ldo);

}  // namespace bnn::cpu
