// Binary weights, real activations, 2-D convolution:
//   out = conv2d(x, multiplier[o] * sign(W)) + bias[o], zero padding. Torch-free.
//
// Rounding contract (float32; float64 alike): each output is the sum of +-x over its taps in
// a fixed order, accumulated in T, then multiplied by the multiplier and added to the bias,
// each rounded once (no FMA of the epilogue). Zero-padded taps add +-0. The order: one
// sequential sum over the GEMM column k = tap * Cg + c (taps row-major over KH, KW) from +0 on
// the scalar path and on float32 AVX2 and AVX-512 (the panel kernels, linear/panel.h:
// fma(x, +-1, s) rounds exactly as s +- x), which the CUDA kernel reproduces bit for bit. It
// never depends on the ISA, the thread count or the blocking. When every partial
// sum is exact (e.g. integer-valued x with sums below 2^24), every path gives the same, exact
// result.
#pragma once

#include <cstdint>

#include "conv/binary_conv.h"

namespace bnn::cpu {

// x [batch, in_h, in_w, in_channels] (NHWC) of T = float or double; w packed like
// binary_conv2d's weights [O, KH, KW, ceil((C/groups)/32)] (tail bits ignored); multiplier and
// bias [O] or null; out [batch, out_h, out_w, O] (NHWC). p.pad_value is ignored (zeros).
template <typename T>
void binary_weight_conv2d(const T* x, const int32_t* w, const ConvParams& p, const T* multiplier, const T* bias, T* out,
                          int num_threads);

// The conv weights as GEMM rows: row o holds bit c of tap t of w[o] at bit t * cg + c,
// ceil(taps * cg / 32) words per row, tail bits 0.
void conv_weight_rows(const int32_t* w, int64_t out_channels, int64_t taps, int64_t cg, int32_t* rows);

}  // namespace bnn::cpu
