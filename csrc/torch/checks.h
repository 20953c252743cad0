// Argument validation shared by the CPU and CUDA bindings: every misuse raises TypeError
// (wrong dtype), ValueError (wrong shape or value) or RuntimeError, naming the argument.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "common/epilogue.h"
#include "conv/binary_conv.h"

namespace bnn::binding {

// int32 tensor of `dims` dims (or at least `dims` when at_least).
void check_bits(const at::Tensor& t, const char* name, int64_t dims, bool at_least = false);
// k in [1, 32 * last dim of t] and ceil(k/32) == last dim of t.
void check_k(int64_t k, const at::Tensor& t, const char* name, const char* kname = "k");
void check_same_device(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn);

struct GemmShape {
  int64_t m, n, k;
};
GemmShape check_xnor_gemm(const at::Tensor& a, const at::Tensor& b, int64_t k);

ConvParams check_binary_conv2d(const at::Tensor& x, const at::Tensor& w, int64_t in_channels, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t pad_value);

struct BitserialShape {
  int64_t p, q, m, n, k;
};
BitserialShape check_bitserial_gemm(const at::Tensor& a, const at::Tensor& w, int64_t k, at::IntArrayRef a_coefs,
                                    at::IntArrayRef w_coefs, int64_t a_offset, int64_t w_offset, bool reduce);

void check_pack_bits(const at::Tensor& x, const c10::optional<at::Tensor>& channel_threshold);
void check_to_bitplanes(const at::Tensor& q, int64_t nbits);
// The ValueError for a value of q that does not fit nbits bits.
[[noreturn]] void bitplanes_range_error(int64_t value, int64_t flat_index, int64_t nbits, bool is_signed);
// pack_bits thresholds as the kernels take them: one (or one per channel) in the dtype the
// comparison runs in. The threshold is rounded to x's dtype first, as `x >= t` does in
// PyTorch; half types then compare exactly in float32, integers in float64.
at::Tensor pack_thresholds(const at::Tensor& x, double threshold, const c10::optional<at::Tensor>& channel_threshold);
at::ScalarType check_unpack_bits(const at::Tensor& bits, int64_t k, c10::optional<at::ScalarType> dtype);
void check_binary_weight_linear(const at::Tensor& x, const at::Tensor& w, int64_t k,
                                const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias);

// The fused epilogue arguments of xnor_gemm and binary_conv2d (keyword-only in the schema;
// see common/epilogue.h for what each does).
struct EpilogueArgs {
  c10::optional<at::Tensor> multiplier, bias, residual, act_slope, act_shift_in, act_shift_out;
  c10::optional<at::ScalarType> out_dtype;
  c10::optional<at::Tensor> out_threshold;
};

// What the op returns: the raw int32 accumulators, a float tensor of `dtype`, or packed bits.
enum class EpilogueOutput { Int32, Float, Bits };
struct EpilogueSpec {
  EpilogueOutput output = EpilogueOutput::Int32;
  at::ScalarType dtype = at::kInt;  // of the returned tensor (Bits: int32 words)
};

// Checks the epilogue arguments of an op whose output has `n` channels and whose float
// output has shape `float_shape` (the shape residual must have), on like's device.
EpilogueSpec check_epilogue(const EpilogueArgs& a, const at::Tensor& like, int64_t n, at::IntArrayRef float_shape);

// The epilogue of the dual ops (xnor_gemm_dual, binary_conv2d_dual), which return the float
// output AND the packed bits of y >= out_threshold: out_threshold is required, out_dtype (float32
// by default) must be a float dtype. Returns the float output's spec (EpilogueOutput::Float).
EpilogueSpec check_epilogue_dual(const EpilogueArgs& a, const at::Tensor& like, int64_t n, at::IntArrayRef float_shape);

// binary_weight_conv2d: x [N, C, H, W] float (any memory format), w_bits like binary_conv2d's,
// multiplier and bias float [O] or absent. Returns the geometry (pad_value 0).
ConvParams check_binary_weight_conv2d(const at::Tensor& x, const at::Tensor& w, int64_t in_channels,
                                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups, const c10::optional<at::Tensor>& multiplier,
                                      const c10::optional<at::Tensor>& bias);

}  // namespace bnn::binding
