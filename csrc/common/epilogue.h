// The epilogue of every binary kernel: one description of what happens to the exact int32
// accumulator of an output element, shared by the CPU kernels, the CUDA kernels and the fused
// model layers (bnn_kernels.nn). Torch-free; usable from host and device code.
//
// For the output element of row m (a GEMM row, or a pixel of an NHWC conv output) and channel n
// (a GEMM column, or an output channel), with acc the exact integer result:
//
//   y = float(acc) * multiplier[n]          (multiplier absent: y = float(acc), no multiply)
//   y = y + bias[n]                         (bias absent: skipped)
//   y = y + residual[m * residual_ld + n]   (residual absent: skipped)
//   t = y + act_shift_in[n]                 (PReLU / RPReLU, only when act_slope is given;
//   t = t > 0 ? t : act_slope[n] * t         shifts absent: skipped. RPReLU of ReActNet is
//   y = t + act_shift_out[n]                 prelu(y - gamma) + zeta: shift_in = -gamma.)
//
// every step in float32, each operation rounded on its own (never contracted to an FMA), in
// exactly this order, so a fused kernel and the unfused torch sequence agree bit for bit.
// (float(acc) is exact for |acc| <= 2^24; beyond that it rounds to nearest even, as torch's
// int32 -> float32 conversion does.) Then one or both outputs are written:
//   float_out[m * out_ld + n] = y rounded once to out_dtype (float32, float16 or bfloat16);
//   bits_out: bit n of row m = (y >= out_threshold[n]), packed along n, LSB first, in int32
//             words of row m at bits_out[m * bits_ld + n / 32], tail bits 0 (the canonical bit
//             format: the packed activations the next binary layer reads).
// With no epilogue step and no bits_out, the output is the raw int32 accumulator (OutDtype::Int32).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define BNN_HOST_DEVICE __host__ __device__
#else
#define BNN_HOST_DEVICE
#endif

namespace bnn {

enum class OutDtype : int { Int32 = 0, Float32 = 1, Float16 = 2, BFloat16 = 3 };

struct Epilogue {
  // per channel [N], each may be null
  const float* multiplier = nullptr;
  const float* bias = nullptr;
  const float* act_slope = nullptr;  // PReLU slope; null: no activation (shifts ignored)
  const float* act_shift_in = nullptr;
  const float* act_shift_out = nullptr;
  // [M rows of residual_ld floats], may be null
  const float* residual = nullptr;
  int64_t residual_ld = 0;
  // outputs: float_out of out_dtype (void*: float, half or bfloat16 storage), and/or bits_out
  OutDtype out_dtype = OutDtype::Int32;
  void* out = nullptr;  // Int32: int32_t*; otherwise the float output, or null when only bits
  int64_t out_ld = 0;
  const float* out_threshold = nullptr;  // [N]; with bits_out
  int32_t* bits_out = nullptr;           // [M rows of bits_ld words], or null
  int64_t bits_ld = 0;

  // True when the accumulator is stored as it is (no float step, no bits).
  BNN_HOST_DEVICE bool raw_int32() const { return out_dtype == OutDtype::Int32 && bits_out == nullptr; }
  BNN_HOST_DEVICE bool has_float_steps() const { return multiplier || bias || residual || act_slope; }
};

// The float value y of one element, in the order described above. Kernels with vector
// code must reproduce this order and rounding exactly; this scalar form is the definition.
BNN_HOST_DEVICE inline float epilogue_value(const Epilogue& e, int64_t m, int64_t n, int32_t acc) {
#if defined(__CUDA_ARCH__)
  float y = __int2float_rn(acc);
  if (e.multiplier) y = __fmul_rn(y, e.multiplier[n]);
  if (e.bias) y = __fadd_rn(y, e.bias[n]);
  if (e.residual) y = __fadd_rn(y, e.residual[m * e.residual_ld + n]);
  if (e.act_slope) {
    float t = e.act_shift_in ? __fadd_rn(y, e.act_shift_in[n]) : y;
    t = t > 0.f ? t : __fmul_rn(e.act_slope[n], t);
    y = e.act_shift_out ? __fadd_rn(t, e.act_shift_out[n]) : t;
  }
  return y;
#else
  // host code is compiled with -ffp-contract=off, so these are separate roundings
  float y = static_cast<float>(acc);
  if (e.multiplier) y = y * e.multiplier[n];
  if (e.bias) y = y + e.bias[n];
  if (e.residual) y = y + e.residual[m * e.residual_ld + n];
  if (e.act_slope) {
    float t = e.act_shift_in ? y + e.act_shift_in[n] : y;
    t = t > 0.f ? t : e.act_slope[n] * t;
    y = e.act_shift_out ? t + e.act_shift_out[n] : t;
  }
  return y;
#endif
}

}  // namespace bnn
