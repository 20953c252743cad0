// CPU side of the fused epilogue (common/epilogue.h): applies a bnn::Epilogue to rows of
// exact int32 accumulators, writing the float output (float32 / float16 / bfloat16) and/or
// the bit-packed output. Torch-free.
//
// Every ISA path (AVX-512, AVX2, scalar; picked at run time under BNN_KERNELS_CPU_ISA)
// performs exactly the operations of epilogue_value() in the same order, each rounded on
// its own, so results are bit-identical across paths and equal to the unfused torch
// sequence. Float16 / bfloat16 outputs round the float32 y once, to nearest even (NaN stays
// NaN; its payload is unspecified).
#pragma once

#include <cstdint>

#include "common/epilogue.h"

namespace bnn::cpu {

// Applies e to rows [m0, m0 + rows) of the accumulators acc (row r of the block at
// acc + r * acc_ld, columns [0, n)): row m of e's outputs is written in full (n values,
// ceil(n/32) bit words). e must not be raw_int32().
void epilogue_rows(const Epilogue& e, const int32_t* acc, int64_t acc_ld, int64_t m0, int64_t rows, int64_t n);

// The same over all M rows of an [M, acc_ld] accumulator matrix, rows split over threads.
void apply_epilogue(const Epilogue& e, const int32_t* acc, int64_t acc_ld, int64_t M, int64_t n, int num_threads);

// Name of the epilogue code path in effect ("avx512", "avx2" or "scalar").
const char* epilogue_isa();

// float32 -> float16 / bfloat16 bits, rounded to nearest even, as torch rounds (NaN -> a
// quiet NaN of the same sign).
uint16_t float_to_half_bits(float f);
uint16_t float_to_bfloat16_bits(float f);

}  // namespace bnn::cpu
