// Vector value kernels of the CPU epilogue (internal to epilogue_cpu.cpp).
#pragma once

#include <cstdint>

#include "common/epilogue.h"

namespace bnn::cpu {

// y[j] = epilogue_value(e, m, n0 + j, acc[j]) for j < len, the same operations in the same
// order and rounding, several lanes at a time.
using ValuesFn = void (*)(const Epilogue& e, int64_t m, int64_t n0, int64_t len, const int32_t* acc, float* y);

// Bit words o[0, ceil(len/32)) of the bits y[j] >= thr[j], j < len: 32 per int32 word, LSB
// first, tail bits 0. An ordered comparison: NaN on either side gives 0, as the scalar >= does.
using BitsFn = void (*)(const float* y, const float* thr, int64_t len, int32_t* o);

// Rows [m0, m0 + rows) of a float32 output computed in place: for each row r, the ValuesFn of
// the same ISA into y + r * y_ld (acc + r * acc_ld) and, where o is not null, its BitsFn into
// o + r * o_ld. One call per block of rows instead of two per row: with 32-128 channels a row is
// a few vectors, and the calls cost as much as the arithmetic.
using RowsFn = void (*)(const Epilogue& e, int64_t m0, int64_t rows, int64_t n0, int64_t len, const int32_t* acc,
                        int64_t acc_ld, float* y, int64_t y_ld, const float* thr, int32_t* o, int64_t o_ld);

// nullptr where the compiler cannot build them (non-x86 targets).
extern const ValuesFn epilogue_values_avx2;
extern const ValuesFn epilogue_values_avx512;
extern const BitsFn epilogue_bits_avx2;
extern const BitsFn epilogue_bits_avx512;
extern const RowsFn epilogue_rows_avx2;
extern const RowsFn epilogue_rows_avx512;

// One word of the bits y[b] >= thr[b], b < nb <= 32 (the scalar definition; the vector paths
// use it for a row's last, partial word).
inline int32_t threshold_word(const float* y, const float* thr, int64_t nb) {
  uint32_t word = 0;
  for (int64_t b = 0; b < nb; ++b) word |= static_cast<uint32_t>(y[b] >= thr[b]) << b;
  return static_cast<int32_t>(word);
}

}  // namespace bnn::cpu
