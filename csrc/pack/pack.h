// Packing to and from the canonical bit format (see common/bits.h). Torch-free.
#pragma once

#include <cstdint>

namespace bnn::cpu {

// out[r, w] (rows x ceil(k/32) words): bit j of word w is 1 where
// x[r, 32*w + j] >= thr[(32*w + j) * thr_stride]. thr_stride is 0 (one threshold)
// or 1 (one per column). T is the element type, Thr the type the comparison runs in.
template <typename T, typename Thr>
void pack_bits(const T* x, int64_t rows, int64_t k, const Thr* thr, int64_t thr_stride, int32_t* out, int num_threads);

// out[r, c] (rows x k elements of elem_bytes bytes each) = `plus` where bit c of row r
// is 1, else `minus`; plus and minus are the element's bit patterns (low elem_bytes bytes).
void unpack_bits(const int32_t* bits, int64_t rows, int64_t k, int elem_bytes, uint64_t plus, uint64_t minus, void* out,
                 int num_threads);

// Bit planes of integers: out[p, r, w] holds bit p of q[r, c] (two's complement when
// is_signed). Returns the flat index of the first value that does not fit nbits bits,
// or -1 when all fit (then out is complete).
int64_t to_bitplanes(const int64_t* q, int64_t rows, int64_t k, int nbits, bool is_signed, int32_t* out,
                     int num_threads);

}  // namespace bnn::cpu
