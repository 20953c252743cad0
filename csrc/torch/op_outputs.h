// Output shapes and values shared by the CPU (cpu_ops.cpp) and CUDA (cuda/cuda_ops.cpp)
// bindings, so both allocate exactly the same tensors.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/bits.h"
#include "common/epilogue.h"
#include "conv/binary_conv.h"
#include "torch/checks.h"

namespace bnn::binding {

// sizes with the last dim replaced by `last` (e.g. K values -> ceil(K/32) packed words).
inline std::vector<int64_t> with_last(at::IntArrayRef sizes, int64_t last) {
  std::vector<int64_t> s(sizes.begin(), sizes.end());
  s.back() = last;
  return s;
}

// to_bitplanes' output shape: [nbits, ...q's leading dims, ceil(K/32)].
inline std::vector<int64_t> bitplanes_shape(at::IntArrayRef q_sizes, int64_t nbits, int64_t words) {
  std::vector<int64_t> shape{nbits};
  for (int64_t s : with_last(q_sizes, words)) shape.push_back(s);
  return shape;
}

// binary_conv2d's output: NHWC storage, returned as an [N, O, Ho, Wo] int32 tensor in
// channels_last memory format, on the device of `options`.
inline at::Tensor empty_conv_output(const ConvParams& p, const at::TensorOptions& options) {
  return at::empty({p.batch, p.out_channels, p.out_h, p.out_w},
                   options.dtype(at::kInt).memory_format(at::MemoryFormat::ChannelsLast));
}

// The element bit patterns of +1 and -1 in an output dtype (computed on the host), as the
// unpack kernels take them: they write `bytes`-byte elements without knowing the dtype.
struct PlusMinusBits {
  uint64_t plus = 0, minus = 0;
  int bytes = 0;
};

inline PlusMinusBits plus_minus_bits(at::ScalarType dtype) {
  const at::Tensor pm = at::tensor({1.0, -1.0}, at::TensorOptions().dtype(at::kDouble)).to(dtype);
  PlusMinusBits b;
  b.bytes = static_cast<int>(pm.element_size());
  std::memcpy(&b.plus, static_cast<const char*>(pm.data_ptr()), b.bytes);
  std::memcpy(&b.minus, static_cast<const char*>(pm.data_ptr()) + b.bytes, b.bytes);
  return b;
}

// binary_weight_linear's accumulation dtype (float64 for float64 x, float32 otherwise) and
// its optional scale and bias converted to it: `data` is null where one is absent.
struct LinearAffine {
  at::ScalarType acc;
  at::Tensor scale, bias;  // undefined where absent
  void* scale_data() const { return scale.defined() ? scale.data_ptr() : nullptr; }
  void* bias_data() const { return bias.defined() ? bias.data_ptr() : nullptr; }
};

inline LinearAffine linear_affine(at::ScalarType x_type, const c10::optional<at::Tensor>& scale,
                                  const c10::optional<at::Tensor>& bias) {
  LinearAffine a;
  a.acc = x_type == at::kDouble ? at::kDouble : at::kFloat;
  if (scale.has_value()) a.scale = scale->to(a.acc).contiguous();
  if (bias.has_value()) a.bias = bias->to(a.acc).contiguous();
  return a;
}

// xnor_gemm's output with an epilogue: int32 or float [M, N], or bits [M, ceil(N/32)].
inline at::Tensor empty_gemm_output(const EpilogueSpec& s, int64_t m, int64_t n, const at::TensorOptions& options) {
  if (s.output == EpilogueOutput::Bits) return at::empty({m, words_for_bits(n)}, options.dtype(at::kInt));
  return at::empty({m, n}, options.dtype(s.dtype));
}

// binary_conv2d's output with an epilogue: int32 or float [N, O, Ho, Wo] in channels_last
// memory format (NHWC storage), or packed NHWC bits [N, Ho, Wo, ceil(O/32)], the layout the
// next binary_conv2d reads.
inline at::Tensor empty_conv_output(const ConvParams& p, const at::TensorOptions& options, const EpilogueSpec& s) {
  if (s.output == EpilogueOutput::Bits)
    return at::empty({p.batch, p.out_h, p.out_w, words_for_bits(p.out_channels)}, options.dtype(at::kInt));
  return at::empty({p.batch, p.out_channels, p.out_h, p.out_w},
                   options.dtype(s.dtype).memory_format(at::MemoryFormat::ChannelsLast));
}

// A bnn::Epilogue over the op's output `out` (rows of n channels, as allocated above) and
// its arguments; `keep` holds the contiguous tensors the pointers refer to.
struct BoundEpilogue {
  Epilogue e;
  std::vector<at::Tensor> keep;
};

// residual_rows: the residual as contiguous rows of n floats in the output's row order
// (undefined when absent).
inline BoundEpilogue bind_epilogue(const EpilogueArgs& a, const EpilogueSpec& s, const at::Tensor& out,
                                   const at::Tensor& residual_rows, int64_t n) {
  BoundEpilogue b;
  const auto vec = [&](const c10::optional<at::Tensor>& t) -> const float* {
    if (!t.has_value()) return nullptr;
    b.keep.push_back(t->contiguous());
    return b.keep.back().data_ptr<float>();
  };
  Epilogue& e = b.e;
  e.multiplier = vec(a.multiplier);
  e.bias = vec(a.bias);
  e.act_slope = vec(a.act_slope);
  e.act_shift_in = e.act_slope ? vec(a.act_shift_in) : nullptr;
  e.act_shift_out = e.act_slope ? vec(a.act_shift_out) : nullptr;
  if (residual_rows.defined()) {
    b.keep.push_back(residual_rows);
    e.residual = residual_rows.data_ptr<float>();
    e.residual_ld = n;
  }
  if (s.output == EpilogueOutput::Bits) {
    e.out_threshold = vec(a.out_threshold);
    e.bits_out = out.data_ptr<int32_t>();
    e.bits_ld = words_for_bits(n);
    return b;
  }
  e.out = out.data_ptr();
  e.out_ld = n;
  e.out_dtype = s.dtype == at::kFloat      ? OutDtype::Float32
                : s.dtype == at::kHalf     ? OutDtype::Float16
                : s.dtype == at::kBFloat16 ? OutDtype::BFloat16
                                           : OutDtype::Int32;
  return b;
}

// The dual ops' epilogue: the float output `out` (spec s, a float dtype) and the packed bits
// `bits` ([rows, ceil(n/32)] words) of y >= out_threshold, written by one pass over the results.
inline BoundEpilogue bind_dual_epilogue(const EpilogueArgs& a, const EpilogueSpec& s, const at::Tensor& out,
                                        const at::Tensor& bits, const at::Tensor& residual_rows, int64_t n) {
  BoundEpilogue b = bind_epilogue(a, s, out, residual_rows, n);
  b.keep.push_back(a.out_threshold->contiguous());
  b.e.out_threshold = b.keep.back().data_ptr<float>();
  b.e.bits_out = bits.data_ptr<int32_t>();
  b.e.bits_ld = words_for_bits(n);
  return b;
}

// The dual ops' packed bits: xnor_gemm_dual [M, ceil(N/32)], binary_conv2d_dual NHWC
// [N, Ho, Wo, ceil(O/32)] (what the out_threshold form of each op returns).
inline at::Tensor empty_gemm_bits(int64_t m, int64_t n, const at::TensorOptions& options) {
  return at::empty({m, words_for_bits(n)}, options.dtype(at::kInt));
}
inline at::Tensor empty_conv_bits(const ConvParams& p, const at::TensorOptions& options) {
  return at::empty({p.batch, p.out_h, p.out_w, words_for_bits(p.out_channels)}, options.dtype(at::kInt));
}

// binary_weight_conv2d: the kernels write NHWC, an [N, O, Ho, Wo] tensor in channels_last
// memory format of the accumulation dtype; wconv_result gives it x's dtype and x's memory
// format (PyTorch's rule for convolutions: x.suggest_memory_format()).
inline at::Tensor empty_wconv_output(const ConvParams& p, const at::TensorOptions& options) {
  return at::empty({p.batch, p.out_channels, p.out_h, p.out_w}, options.memory_format(at::MemoryFormat::ChannelsLast));
}

inline at::Tensor wconv_result(const at::Tensor& out, const at::Tensor& x) {
  return out.to(x.scalar_type()).contiguous(x.suggest_memory_format());
}

}  // namespace bnn::binding
