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
#include "gemm/epilogue_simd.h"

namespace bnn::cpu {

// The value kernel of the best ISA the CPU has under BNN_KERNELS_CPU_ISA (read now): callers
// that apply the epilogue tile by tile pick it once per call.
ValuesFn select_epilogue_values();

// Applies e to a block of accumulators while it is in cache: output rows [m0, m0 + rows) and
// channels [n0, n0 + cols), channel n0 + j of row r at acc[r * acc_ld + j]. Float outputs take
// any block; bits need n0 % 32 == 0 and a block that ends at a multiple of 32 or at the last
// channel (the words it covers are written whole).
void epilogue_block(const Epilogue& e, ValuesFn values, const int32_t* acc, int64_t acc_ld, int64_t m0, int64_t rows,
                    int64_t n0, int64_t cols);

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
