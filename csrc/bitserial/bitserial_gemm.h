// Multi-bit GEMM on bit planes (BitSplit / bit-serial). Torch-free.
//
// Activation values are a = sum_p a_coefs[p] * a_bit_p + a_offset and weight values
// w = sum_q w_coefs[q] * w_bit_q + w_offset, each plane a packed {0,1} row of k bits.
#pragma once

#include <cstdint>

namespace bnn::cpu {

// a: [P, M, words] planes, w: [Q, N, words] planes (words = ceil(k/32)).
// reduce: out [M, N] = A @ W^T exactly.
// !reduce: out [P, M, N], out[p] = a_bit_p @ W^T (each {0,1} activation plane against the
// decoded weights: the separate BitSplit paths; a_coefs and a_offset are not used).
// The caller guarantees every result fits int32.
void bitserial_gemm(const int32_t* a, int64_t P, const int32_t* w, int64_t Q, int64_t M, int64_t N, int64_t k,
                    const int64_t* a_coefs, const int64_t* w_coefs, int64_t a_offset, int64_t w_offset, bool reduce,
                    int32_t* out, int num_threads);

// popcount of each of `rows` packed rows of k bits (tail bits ignored).
void row_popcounts(const int32_t* bits, int64_t rows, int64_t k, int64_t* out, int num_threads);

}  // namespace bnn::cpu
