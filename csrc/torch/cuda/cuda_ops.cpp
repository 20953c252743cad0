// CUDA kernels of every op: validate (checks.h, shared with the CPU binding), guard the
// input's device, allocate on it, and launch the torch-free kernels of csrc/<family>/ on the
// current stream. Results equal the CPU kernels' exactly (binary_weight_linear: up to float
// summation order; binary_weight_conv2d: the CPU scalar path's, bit for bit).
//
// Test hooks (read at every call):
//   BNN_KERNELS_CUDA_GEMM_PATH=auto|mma|popc|gemv|wgmma    xnor_gemm, binary_conv2d, bitserial_gemm
//   BNN_KERNELS_CUDA_LINEAR_PATH=auto|gemv|tiled     binary_weight_linear
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdlib>
#include <limits>

#include "bitserial/bitserial_gemm_cuda.h"
#include "common/bits.h"
#include "conv/binary_conv_cuda.h"
#include "gemm/and_gemm_cuda.h"
#include "gemm/epilogue_cuda.h"
#include "linear/binary_weight_linear_cuda.h"
#include "pack/pack_cuda.h"
#include "torch/checks.h"
#include "torch/op_outputs.h"
#include "wconv/binary_weight_conv_cuda.h"

namespace bnn::binding {
namespace {

cudaStream_t stream() { return at::cuda::getCurrentCUDAStream().stream(); }

cuda::GemmPath gemm_path() {
  const char* s = std::getenv("BNN_KERNELS_CUDA_GEMM_PATH");
  cuda::GemmPath p = cuda::GemmPath::Auto;
  TORCH_CHECK_VALUE(cuda::parse_gemm_path(s, &p),
                    "BNN_KERNELS_CUDA_GEMM_PATH must be auto, mma, popc, gemv or wgmma, got '", s, "'");
  return p;
}

cuda::LinearPath linear_path() {
  const char* s = std::getenv("BNN_KERNELS_CUDA_LINEAR_PATH");
  cuda::LinearPath p = cuda::LinearPath::Auto;
  TORCH_CHECK_VALUE(cuda::parse_linear_path(s, &p), "BNN_KERNELS_CUDA_LINEAR_PATH must be auto, gemv or tiled, got '",
                    s, "'");
  return p;
}

at::Tensor workspace(int64_t bytes, const at::Tensor& like) {
  return at::empty({std::max<int64_t>(1, (bytes + 3) / 4)}, like.options().dtype(at::kInt));
}

cuda::PackType pack_type(at::ScalarType st) {
  switch (st) {
    case at::kHalf:
      return cuda::PackType::F16;
    case at::kBFloat16:
      return cuda::PackType::BF16;
    case at::kFloat:
      return cuda::PackType::F32;
    case at::kDouble:
      return cuda::PackType::F64;
    case at::kChar:
      return cuda::PackType::I8;
    case at::kByte:
      return cuda::PackType::U8;
    case at::kShort:
      return cuda::PackType::I16;
    case at::kInt:
      return cuda::PackType::I32;
    case at::kLong:
      return cuda::PackType::I64;
    default:
      TORCH_CHECK_TYPE(false, "x has unsupported dtype ", st);
  }
}

at::Tensor pack_bits_cuda(const at::Tensor& x_in, double threshold,
                          const c10::optional<at::Tensor>& channel_threshold) {
  check_pack_bits(x_in, channel_threshold);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t k = x_in.size(-1);
  at::Tensor out = at::empty(with_last(x_in.sizes(), words_for_bits(k)), x_in.options().dtype(at::kInt));
  if (x_in.numel() == 0) return out;
  const auto st = x_in.scalar_type();
  const cuda::PackType type = pack_type(st);
  const at::Tensor thr = pack_thresholds(x_in, threshold, channel_threshold);
  const at::Tensor x = x_in.contiguous();
  cuda::launch_pack_bits(type, x.data_ptr(), x.numel() / k, k, thr.data_ptr(), channel_threshold.has_value() ? 1 : 0,
                         out.data_ptr<int32_t>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor unpack_bits_cuda(const at::Tensor& bits_in, int64_t k, c10::optional<at::ScalarType> dtype) {
  const at::ScalarType st = check_unpack_bits(bits_in, k, dtype);
  const c10::cuda::CUDAGuard guard(bits_in.device());
  at::Tensor out = at::empty(with_last(bits_in.sizes(), k), bits_in.options().dtype(st));
  if (out.numel() == 0) return out;
  const at::Tensor bits = bits_in.contiguous();
  const PlusMinusBits pm = plus_minus_bits(st);
  cuda::launch_unpack_bits(bits.data_ptr<int32_t>(), bits.numel() / bits.size(-1), k, pm.bytes, pm.plus, pm.minus,
                           out.data_ptr(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor to_bitplanes_cuda(const at::Tensor& q_in, int64_t nbits, bool is_signed) {
  check_to_bitplanes(q_in, nbits);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const int64_t k = q_in.size(-1);
  at::Tensor out = at::empty(bitplanes_shape(q_in.sizes(), nbits, words_for_bits(k)), q_in.options().dtype(at::kInt));
  if (q_in.numel() == 0) return out;
  const at::Tensor q = q_in.to(at::kLong).contiguous();
  at::Tensor first_bad = at::full({1}, std::numeric_limits<int64_t>::max(), q.options());
  cuda::launch_to_bitplanes(q.data_ptr<int64_t>(), q.numel() / k, k, static_cast<int>(nbits), is_signed,
                            out.data_ptr<int32_t>(), first_bad.data_ptr<int64_t>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t bad = first_bad.item<int64_t>();  // synchronizes: the range check must raise here
  if (bad != std::numeric_limits<int64_t>::max())
    bitplanes_range_error(q.reshape(-1)[bad].item<int64_t>(), bad, nbits, is_signed);
  return out;
}

// The int32 accumulators a kernel writes: the output itself without an epilogue, else a
// scratch [rows, n] matrix the epilogue kernel then reads.
at::Tensor accumulators(const at::Tensor& out, const EpilogueSpec& spec, int64_t rows, int64_t n) {
  return spec.output == EpilogueOutput::Int32 ? out : at::empty({rows, n}, out.options().dtype(at::kInt));
}

void run_epilogue(const BoundEpilogue& ep, const at::Tensor& acc, int64_t rows, int64_t n) {
  if (ep.e.raw_int32()) return;
  cuda::launch_epilogue(ep.e, acc.data_ptr<int32_t>(), n, rows, n, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor xnor_gemm_cuda(const at::Tensor& a_in, const at::Tensor& b_in, int64_t k,
                          const c10::optional<at::Tensor>& multiplier, const c10::optional<at::Tensor>& bias,
                          const c10::optional<at::Tensor>& residual, const c10::optional<at::Tensor>& act_slope,
                          const c10::optional<at::Tensor>& act_shift_in, const c10::optional<at::Tensor>& act_shift_out,
                          c10::optional<at::ScalarType> out_dtype, const c10::optional<at::Tensor>& out_threshold) {
  const GemmShape s = check_xnor_gemm(a_in, b_in, k);
  const EpilogueArgs args{multiplier, bias, residual, act_slope, act_shift_in, act_shift_out, out_dtype, out_threshold};
  const EpilogueSpec spec = check_epilogue(args, a_in, s.n, {s.m, s.n});
  const c10::cuda::CUDAGuard guard(a_in.device());
  at::Tensor out = empty_gemm_output(spec, s.m, s.n, a_in.options());
  if (out.numel() == 0) return out;
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const BoundEpilogue ep = bind_epilogue(args, spec, out, residual ? residual->contiguous() : at::Tensor(), s.n);
  const at::Tensor acc = accumulators(out, spec, s.m, s.n);
  const cuda::GemmPath path = gemm_path();
  at::Tensor ws = workspace(cuda::xnor_gemm_workspace_bytes(s.m, s.n), a);
  cuda::launch_xnor_gemm(a.data_ptr<int32_t>(), b.data_ptr<int32_t>(), s.m, s.n, k, acc.data_ptr<int32_t>(), s.n,
                         ws.data_ptr(), path, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  run_epilogue(ep, acc, s.m, s.n);
  return out;
}

at::Tensor binary_conv2d_cuda(const at::Tensor& x_in, const at::Tensor& w_in, int64_t in_channels,
                              at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                              int64_t pad_value, const c10::optional<at::Tensor>& multiplier,
                              const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                              const c10::optional<at::Tensor>& act_slope, const c10::optional<at::Tensor>& act_shift_in,
                              const c10::optional<at::Tensor>& act_shift_out, c10::optional<at::ScalarType> out_dtype,
                              const c10::optional<at::Tensor>& out_threshold) {
  const ConvParams p = check_binary_conv2d(x_in, w_in, in_channels, stride, padding, dilation, groups, pad_value);
  const EpilogueArgs args{multiplier, bias, residual, act_slope, act_shift_in, act_shift_out, out_dtype, out_threshold};
  const EpilogueSpec spec = check_epilogue(args, x_in, p.out_channels, {p.batch, p.out_channels, p.out_h, p.out_w});
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = empty_conv_output(p, x_in.options(), spec);
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const at::Tensor res_rows = residual ? residual->permute({0, 2, 3, 1}).contiguous() : at::Tensor();
  const BoundEpilogue ep = bind_epilogue(args, spec, out, res_rows, p.out_channels);
  const int64_t pixels = p.batch * p.out_h * p.out_w;
  const at::Tensor acc = accumulators(out, spec, pixels, p.out_channels);
  const cuda::GemmPath path = gemm_path();
  at::Tensor ws = workspace(cuda::binary_conv2d_workspace_bytes(p), x);
  cuda::launch_binary_conv2d(x.data_ptr<int32_t>(), w.data_ptr<int32_t>(), p, acc.data_ptr<int32_t>(), ws.data_ptr(),
                             path, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  run_epilogue(ep, acc, pixels, p.out_channels);
  return out;
}

// The dual ops: the float output and the packed bits of y >= out_threshold, both written by
// the one epilogue kernel after the GEMM / conv.
std::tuple<at::Tensor, at::Tensor> xnor_gemm_dual_cuda(
    const at::Tensor& a_in, const at::Tensor& b_in, int64_t k, const c10::optional<at::Tensor>& multiplier,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
    const c10::optional<at::Tensor>& act_slope, const c10::optional<at::Tensor>& act_shift_in,
    const c10::optional<at::Tensor>& act_shift_out, c10::optional<at::ScalarType> out_dtype,
    const at::Tensor& out_threshold) {
  const GemmShape s = check_xnor_gemm(a_in, b_in, k);
  const EpilogueArgs args{multiplier, bias, residual, act_slope, act_shift_in, act_shift_out, out_dtype, out_threshold};
  const EpilogueSpec spec = check_epilogue_dual(args, a_in, s.n, {s.m, s.n});
  const c10::cuda::CUDAGuard guard(a_in.device());
  at::Tensor out = empty_gemm_output(spec, s.m, s.n, a_in.options());
  at::Tensor bits = empty_gemm_bits(s.m, s.n, a_in.options());
  if (out.numel() == 0) return {out, bits};
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const at::Tensor res = residual ? residual->contiguous() : at::Tensor();
  const BoundEpilogue ep = bind_dual_epilogue(args, spec, out, bits, res, s.n);
  const at::Tensor acc = accumulators(out, spec, s.m, s.n);
  at::Tensor ws = workspace(cuda::xnor_gemm_workspace_bytes(s.m, s.n), a);
  cuda::launch_xnor_gemm(a.data_ptr<int32_t>(), b.data_ptr<int32_t>(), s.m, s.n, k, acc.data_ptr<int32_t>(), s.n,
                         ws.data_ptr(), gemm_path(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  run_epilogue(ep, acc, s.m, s.n);
  return {out, bits};
}

std::tuple<at::Tensor, at::Tensor> binary_conv2d_dual_cuda(
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
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = empty_conv_output(p, x_in.options(), spec);
  at::Tensor bits = empty_conv_bits(p, x_in.options());
  if (out.numel() == 0) return {out, bits};
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const at::Tensor res_rows = residual ? residual->permute({0, 2, 3, 1}).contiguous() : at::Tensor();
  const BoundEpilogue ep = bind_dual_epilogue(args, spec, out, bits, res_rows, p.out_channels);
  const int64_t pixels = p.batch * p.out_h * p.out_w;
  const at::Tensor acc = accumulators(out, spec, pixels, p.out_channels);
  at::Tensor ws = workspace(cuda::binary_conv2d_workspace_bytes(p), x);
  cuda::launch_binary_conv2d(x.data_ptr<int32_t>(), w.data_ptr<int32_t>(), p, acc.data_ptr<int32_t>(), ws.data_ptr(),
                             gemm_path(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  run_epilogue(ep, acc, pixels, p.out_channels);
  return {out, bits};
}

at::Tensor bitserial_gemm_cuda(const at::Tensor& a_in, const at::Tensor& w_in, int64_t k, at::IntArrayRef a_coefs,
                               at::IntArrayRef w_coefs, int64_t a_offset, int64_t w_offset, bool reduce) {
  const BitserialShape s = check_bitserial_gemm(a_in, w_in, k, a_coefs, w_coefs, a_offset, w_offset, reduce);
  const c10::cuda::CUDAGuard guard(a_in.device());
  at::Tensor out = reduce ? at::empty({s.m, s.n}, a_in.options().dtype(at::kInt))
                          : at::empty({s.p, s.m, s.n}, a_in.options().dtype(at::kInt));
  if (out.numel() == 0) return out;
  const at::Tensor a = a_in.contiguous(), w = w_in.contiguous();
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  const at::Tensor ac = at::tensor(a_coefs.vec(), long_opts).to(a.device());
  const at::Tensor wc = at::tensor(w_coefs.vec(), long_opts).to(a.device());
  const cuda::GemmPath path = gemm_path();
  at::Tensor ws = workspace(cuda::bitserial_gemm_workspace_bytes(s.p, s.q, s.m, s.n), a);
  cuda::launch_bitserial_gemm(a.data_ptr<int32_t>(), s.p, w.data_ptr<int32_t>(), s.q, s.m, s.n, k,
                              ac.data_ptr<int64_t>(), wc.data_ptr<int64_t>(), a_offset, w_offset, reduce,
                              out.data_ptr<int32_t>(), ws.data_ptr(), path, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor binary_weight_linear_cuda(const at::Tensor& x_in, const at::Tensor& w_in, int64_t k,
                                     const c10::optional<at::Tensor>& scale_in,
                                     const c10::optional<at::Tensor>& bias_in) {
  check_binary_weight_linear(x_in, w_in, k, scale_in, bias_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t n = w_in.size(0);
  const auto out_type = x_in.scalar_type();
  const LinearAffine affine = linear_affine(out_type, scale_in, bias_in);
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();  // x keeps its dtype: converted on load
  const int64_t m = x.numel() / k;
  at::Tensor out = at::empty(with_last(x_in.sizes(), n), x.options().dtype(affine.acc));
  if (out.numel() > 0) {
    cuda::LinearXType type = cuda::LinearXType::F32;
    if (out_type == at::kHalf) type = cuda::LinearXType::F16;
    if (out_type == at::kBFloat16) type = cuda::LinearXType::BF16;
    if (out_type == at::kDouble) type = cuda::LinearXType::F64;
    cuda::launch_binary_weight_linear(type, x.data_ptr(), m, k, w.data_ptr<int32_t>(), n, affine.scale_data(),
                                      affine.bias_data(), out.data_ptr(), linear_path(), stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out.to(out_type);
}

at::Tensor binary_weight_conv2d_cuda(const at::Tensor& x_in, const at::Tensor& w_in, int64_t in_channels,
                                     at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                     int64_t groups, const c10::optional<at::Tensor>& multiplier_in,
                                     const c10::optional<at::Tensor>& bias_in) {
  const ConvParams p =
      check_binary_weight_conv2d(x_in, w_in, in_channels, stride, padding, dilation, groups, multiplier_in, bias_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const LinearAffine affine = linear_affine(x_in.scalar_type(), multiplier_in, bias_in);
  at::Tensor out = empty_wconv_output(p, x_in.options().dtype(affine.acc));
  if (out.numel() == 0) return wconv_result(out, x_in);
  const at::Tensor x = x_in.to(affine.acc).contiguous(at::MemoryFormat::ChannelsLast), w = w_in.contiguous();
  const auto type = affine.acc == at::kDouble ? cuda::WconvType::F64 : cuda::WconvType::F32;
  cuda::launch_binary_weight_conv2d(type, x.data_ptr(), w.data_ptr<int32_t>(), p, affine.scale_data(),
                                    affine.bias_data(), out.data_ptr(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return wconv_result(out, x_in);
}

}  // namespace

TORCH_LIBRARY_IMPL(bnn_kernels, CUDA, m) {
  m.impl("pack_bits", &pack_bits_cuda);
  m.impl("unpack_bits", &unpack_bits_cuda);
  m.impl("to_bitplanes", &to_bitplanes_cuda);
  m.impl("xnor_gemm", &xnor_gemm_cuda);
  m.impl("binary_conv2d", &binary_conv2d_cuda);
  m.impl("bitserial_gemm", &bitserial_gemm_cuda);
  m.impl("binary_weight_linear", &binary_weight_linear_cuda);
  m.impl("binary_weight_conv2d", &binary_weight_conv2d_cuda);
  m.impl("xnor_gemm_dual", &xnor_gemm_dual_cuda);
  m.impl("binary_conv2d_dual", &binary_conv2d_dual_cuda);
}

}  // namespace bnn::binding
