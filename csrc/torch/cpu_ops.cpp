// CPU kernels of every op: validate (checks.h), allocate, call the torch-free kernel.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "bitserial/bitserial_gemm.h"
#include "common/bits.h"
#include "conv/binary_conv.h"
#include "gemm/popcount_gemm.h"
#include "linear/binary_weight_linear.h"
#include "pack/pack.h"
#include "torch/checks.h"
#include "torch/op_outputs.h"
#include "wconv/binary_weight_conv.h"

namespace bnn::binding {
namespace {

int threads() { return at::get_num_threads(); }

at::Tensor pack_bits_cpu(const at::Tensor& x_in, double threshold, const c10::optional<at::Tensor>& channel_threshold) {
  check_pack_bits(x_in, channel_threshold);
  const int64_t k = x_in.size(-1);
  at::Tensor out = at::empty(with_last(x_in.sizes(), words_for_bits(k)), x_in.options().dtype(at::kInt));
  if (x_in.numel() == 0) return out;
  at::Tensor x = x_in;
  const auto st = x.scalar_type();
  const bool half = st == at::kHalf || st == at::kBFloat16;
  const at::Tensor thr = pack_thresholds(x, threshold, channel_threshold);
  if (half) x = x.to(at::kFloat);
  x = x.contiguous();
  const int64_t rows = x.numel() / k, stride = channel_threshold.has_value() ? 1 : 0;
  int32_t* o = out.data_ptr<int32_t>();
  switch (x.scalar_type()) {
    case at::kFloat:
      cpu::pack_bits(x.data_ptr<float>(), rows, k, thr.data_ptr<float>(), stride, o, threads());
      break;
    case at::kDouble:
      cpu::pack_bits(x.data_ptr<double>(), rows, k, thr.data_ptr<double>(), stride, o, threads());
      break;
    case at::kChar:
      cpu::pack_bits(x.data_ptr<int8_t>(), rows, k, thr.data_ptr<double>(), stride, o, threads());
      break;
    case at::kByte:
      cpu::pack_bits(x.data_ptr<uint8_t>(), rows, k, thr.data_ptr<double>(), stride, o, threads());
      break;
    case at::kShort:
      cpu::pack_bits(x.data_ptr<int16_t>(), rows, k, thr.data_ptr<double>(), stride, o, threads());
      break;
    case at::kInt:
      cpu::pack_bits(x.data_ptr<int32_t>(), rows, k, thr.data_ptr<double>(), stride, o, threads());
      break;
    case at::kLong:
      cpu::pack_bits(x.data_ptr<int64_t>(), rows, k, thr.data_ptr<double>(), stride, o, threads());
      break;
    default:
      TORCH_CHECK_TYPE(false, "x has unsupported dtype ", x.scalar_type());
  }
  return out;
}

at::Tensor unpack_bits_cpu(const at::Tensor& bits_in, int64_t k, c10::optional<at::ScalarType> dtype) {
  const at::ScalarType st = check_unpack_bits(bits_in, k, dtype);
  at::Tensor out = at::empty(with_last(bits_in.sizes(), k), bits_in.options().dtype(st));
  if (out.numel() == 0) return out;
  const at::Tensor bits = bits_in.contiguous();
  const PlusMinusBits pm = plus_minus_bits(st);
  cpu::unpack_bits(bits.data_ptr<int32_t>(), bits.numel() / bits.size(-1), k, pm.bytes, pm.plus, pm.minus,
                   out.data_ptr(), threads());
  return out;
}

at::Tensor to_bitplanes_cpu(const at::Tensor& q_in, int64_t nbits, bool is_signed) {
  check_to_bitplanes(q_in, nbits);
  const int64_t k = q_in.size(-1);
  at::Tensor out = at::empty(bitplanes_shape(q_in.sizes(), nbits, words_for_bits(k)), q_in.options().dtype(at::kInt));
  if (q_in.numel() == 0) return out;
  const at::Tensor q = q_in.to(at::kLong).contiguous();
  const int64_t bad = cpu::to_bitplanes(q.data_ptr<int64_t>(), q.numel() / k, k, static_cast<int>(nbits), is_signed,
                                        out.data_ptr<int32_t>(), threads());
  if (bad >= 0) bitplanes_range_error(q.data_ptr<int64_t>()[bad], bad, nbits, is_signed);
  return out;
}

at::Tensor xnor_gemm_cpu(const at::Tensor& a_in, const at::Tensor& b_in, int64_t k,
                         const c10::optional<at::Tensor>& multiplier, const c10::optional<at::Tensor>& bias,
                         const c10::optional<at::Tensor>& residual, const c10::optional<at::Tensor>& act_slope,
                         const c10::optional<at::Tensor>& act_shift_in, const c10::optional<at::Tensor>& act_shift_out,
                         c10::optional<at::ScalarType> out_dtype, const c10::optional<at::Tensor>& out_threshold) {
  const GemmShape s = check_xnor_gemm(a_in, b_in, k);
  const EpilogueArgs args{multiplier, bias, residual, act_slope, act_shift_in, act_shift_out, out_dtype, out_threshold};
  const EpilogueSpec spec = check_epilogue(args, a_in, s.n, {s.m, s.n});
  at::Tensor out = empty_gemm_output(spec, s.m, s.n, a_in.options());
  if (out.numel() == 0) return out;
  const BoundEpilogue ep = bind_epilogue(args, spec, out, residual ? residual->contiguous() : at::Tensor(), s.n);
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  cpu::xnor_gemm(a.data_ptr<int32_t>(), a.size(1), b.data_ptr<int32_t>(), b.size(1), s.m, s.n, k, ep.e, threads());
  return out;
}

// residual [N, O, Ho, Wo] (any memory format) as contiguous NHWC rows of O floats.
at::Tensor conv_residual_rows(const c10::optional<at::Tensor>& residual) {
  return residual ? residual->permute({0, 2, 3, 1}).contiguous() : at::Tensor();
}

at::Tensor binary_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& w_in, int64_t in_channels,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                             int64_t pad_value, const c10::optional<at::Tensor>& multiplier,
                             const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                             const c10::optional<at::Tensor>& act_slope, const c10::optional<at::Tensor>& act_shift_in,
                             const c10::optional<at::Tensor>& act_shift_out, c10::optional<at::ScalarType> out_dtype,
                             const c10::optional<at::Tensor>& out_threshold) {
  const ConvParams p = check_binary_conv2d(x_in, w_in, in_channels, stride, padding, dilation, groups, pad_value);
  const EpilogueArgs args{multiplier, bias, residual, act_slope, act_shift_in, act_shift_out, out_dtype, out_threshold};
  const EpilogueSpec spec = check_epilogue(args, x_in, p.out_channels, {p.batch, p.out_channels, p.out_h, p.out_w});
  at::Tensor out = empty_conv_output(p, x_in.options(), spec);
  if (out.numel() == 0) return out;
  const BoundEpilogue ep = bind_epilogue(args, spec, out, conv_residual_rows(residual), p.out_channels);
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  cpu::binary_conv2d(x.data_ptr<int32_t>(), w.data_ptr<int32_t>(), p, ep.e, threads());
  return out;
}

// The dual ops: the float output and the packed bits of y >= out_threshold from one epilogue pass.
std::tuple<at::Tensor, at::Tensor> xnor_gemm_dual_cpu(
    const at::Tensor& a_in, const at::Tensor& b_in, int64_t k, const c10::optional<at::Tensor>& multiplier,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
    const c10::optional<at::Tensor>& act_slope, const c10::optional<at::Tensor>& act_shift_in,
    const c10::optional<at::Tensor>& act_shift_out, c10::optional<at::ScalarType> out_dtype,
    const at::Tensor& out_threshold) {
  const GemmShape s = check_xnor_gemm(a_in, b_in, k);
  const EpilogueArgs args{multiplier, bias, residual, act_slope, act_shift_in, act_shift_out, out_dtype, out_threshold};
  const EpilogueSpec spec = check_epilogue_dual(args, a_in, s.n, {s.m, s.n});
  at::Tensor out = empty_gemm_output(spec, s.m, s.n, a_in.options());
  at::Tensor bits = empty_gemm_bits(s.m, s.n, a_in.options());
  if (out.numel() == 0) return {out, bits};
  const at::Tensor res = residual ? residual->contiguous() : at::Tensor();
  const BoundEpilogue ep = bind_dual_epilogue(args, spec, out, bits, res, s.n);
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  cpu::xnor_gemm(a.data_ptr<int32_t>(), a.size(1), b.data_ptr<int32_t>(), b.size(1), s.m, s.n, k, ep.e, threads());
  return {out, bits};
}

std::tuple<at::Tensor, at::Tensor> binary_conv2d_dual_cpu(
    const at::Tensor& x_in, const at::Tensor& w_in, int64_t in_channels, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t pad_value,
    const c10::optional<at::Tensor>& multiplier, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& residual, const c10::optional<at::Tensor>& act_slope,
    const c10::optional<at::Tensor>& act_shift_in, const c10::optional<at::Tensor>& act_shift_out,
    c10::optional<at::ScalarType> out_dtype, const at::Tensor& out_threshold) {
  const ConvParams p = check_binary_conv2d(x_in, w_in, in_channels, stride, padding, dilation, groups, pad_value);
  const EpilogueArgs args{multiplier, bias, residual, act_slope, act_shift_in, act_shift_out, out_dtype, out_threshold};
  const EpilogueSpec spec =
      check_epilogue_dual(args, x_in, p.out_channels, {p.batch, p.out_channels, p.out_h, p.out_w});
  at::Tensor out = empty_conv_output(p, x_in.options(), spec);
  at::Tensor bits = empty_conv_bits(p, x_in.options());
  if (out.numel() == 0) return {out, bits};
  const BoundEpilogue ep = bind_dual_epilogue(args, spec, out, bits, conv_residual_rows(residual), p.out_channels);
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  cpu::binary_conv2d(x.data_ptr<int32_t>(), w.data_ptr<int32_t>(), p, ep.e, threads());
  return {out, bits};
}

at::Tensor bitserial_gemm_cpu(const at::Tensor& a_in, const at::Tensor& w_in, int64_t k, at::IntArrayRef a_coefs,
                              at::IntArrayRef w_coefs, int64_t a_offset, int64_t w_offset, bool reduce) {
  const BitserialShape s = check_bitserial_gemm(a_in, w_in, k, a_coefs, w_coefs, a_offset, w_offset, reduce);
  at::Tensor out = reduce ? at::empty({s.m, s.n}, a_in.options().dtype(at::kInt))
                          : at::empty({s.p, s.m, s.n}, a_in.options().dtype(at::kInt));
  if (out.numel() == 0) return out;
  const at::Tensor a = a_in.contiguous(), w = w_in.contiguous();
  cpu::bitserial_gemm(a.data_ptr<int32_t>(), s.p, w.data_ptr<int32_t>(), s.q, s.m, s.n, k, a_coefs.data(),
                      w_coefs.data(), a_offset, w_offset, reduce, out.data_ptr<int32_t>(), threads());
  return out;
}

at::Tensor binary_weight_linear_cpu(const at::Tensor& x_in, const at::Tensor& w_in, int64_t k,
                                    const c10::optional<at::Tensor>& scale_in,
                                    const c10::optional<at::Tensor>& bias_in) {
  check_binary_weight_linear(x_in, w_in, k, scale_in, bias_in);
  const int64_t n = w_in.size(0);
  const auto out_type = x_in.scalar_type();
  const LinearAffine affine = linear_affine(out_type, scale_in, bias_in);
  const at::Tensor x = x_in.to(affine.acc).contiguous(), w = w_in.contiguous();
  const int64_t m = x.numel() / k;
  at::Tensor out = at::empty(with_last(x_in.sizes(), n), x.options());
  if (out.numel() > 0) {
    if (affine.acc == at::kFloat) {
      cpu::binary_weight_linear<float>(x.data_ptr<float>(), m, k, w.data_ptr<int32_t>(), n,
                                       static_cast<const float*>(affine.scale_data()),
                                       static_cast<const float*>(affine.bias_data()), out.data_ptr<float>(), threads());
    } else {
      cpu::binary_weight_linear<double>(
          x.data_ptr<double>(), m, k, w.data_ptr<int32_t>(), n, static_cast<const double*>(affine.scale_data()),
          static_cast<const double*>(affine.bias_data()), out.data_ptr<double>(), threads());
    }
  }
  return out.to(out_type);
}

at::Tensor binary_weight_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& w_in, int64_t in_channels,
                                    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                    int64_t groups, const c10::optional<at::Tensor>& multiplier_in,
                                    const c10::optional<at::Tensor>& bias_in) {
  const ConvParams p =
      check_binary_weight_conv2d(x_in, w_in, in_channels, stride, padding, dilation, groups, multiplier_in, bias_in);
  const LinearAffine affine = linear_affine(x_in.scalar_type(), multiplier_in, bias_in);
  at::Tensor out = empty_wconv_output(p, x_in.options().dtype(affine.acc));
  if (out.numel() == 0) return wconv_result(out, x_in);
  const at::Tensor x = x_in.to(affine.acc).contiguous(at::MemoryFormat::ChannelsLast), w = w_in.contiguous();
  if (affine.acc == at::kFloat) {
    cpu::binary_weight_conv2d<float>(x.data_ptr<float>(), w.data_ptr<int32_t>(), p,
                                     static_cast<const float*>(affine.scale_data()),
                                     static_cast<const float*>(affine.bias_data()), out.data_ptr<float>(), threads());
  } else {
    cpu::binary_weight_conv2d<double>(
        x.data_ptr<double>(), w.data_ptr<int32_t>(), p, static_cast<const double*>(affine.scale_data()),
        static_cast<const double*>(affine.bias_data()), out.data_ptr<double>(), threads());
  }
  return wconv_result(out, x_in);
}

}  // namespace

TORCH_LIBRARY_IMPL(bnn_kernels, CPU, m) {
  m.impl("pack_bits", &pack_bits_cpu);
  m.impl("unpack_bits", &unpack_bits_cpu);
  m.impl("to_bitplanes", &to_bitplanes_cpu);
  m.impl("xnor_gemm", &xnor_gemm_cpu);
  m.impl("binary_conv2d", &binary_conv2d_cpu);
  m.impl("bitserial_gemm", &bitserial_gemm_cpu);
  m.impl("binary_weight_linear", &binary_weight_linear_cpu);
  m.impl("binary_weight_conv2d", &binary_weight_conv2d_cpu);
  m.impl("xnor_gemm_dual", &xnor_gemm_dual_cpu);
  m.impl("binary_conv2d_dual", &binary_conv2d_dual_cpu);
}

}  // namespace bnn::binding
