#include "torch/checks.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include "common/bits.h"

namespace bnn::binding {

void check_bits(const at::Tensor& t, const char* name, int64_t dims, bool at_least) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, name, " must be an int32 tensor of packed bits (see pack_bits), got ",
                   t.scalar_type());
  if (at_least) {
    TORCH_CHECK_VALUE(t.dim() >= dims, name, " must have at least ", dims, " dims, got shape ", t.sizes());
  } else {
    TORCH_CHECK_VALUE(t.dim() == dims, name, " must have ", dims, " dims, got shape ", t.sizes());
  }
}

void check_k(int64_t k, const at::Tensor& t, const char* name, const char* kname) {
  const int64_t words = t.size(-1);
  TORCH_CHECK_VALUE(k >= 1, kname, " must be >= 1, got ", k);
  TORCH_CHECK_VALUE(words_for_bits(k) == words, kname, "=", k, " needs ceil(", kname, "/32)=", words_for_bits(k),
                    " words in the last dim of ", name, ", but it has ", words, " (shape ", t.sizes(), ")");
}

void check_same_device(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn) {
  TORCH_CHECK_VALUE(a.device() == b.device(), an, " and ", bn, " must be on the same device, got ", a.device(), " and ",
                    b.device());
}

GemmShape check_xnor_gemm(const at::Tensor& a, const at::Tensor& b, int64_t k) {
  check_bits(a, "a_bits", 2);
  check_bits(b, "b_bits", 2);
  check_same_device(a, "a_bits", b, "b_bits");
  TORCH_CHECK_VALUE(a.size(1) == b.size(1), "a_bits and b_bits must have the same number of words", " per row, got ",
                    a.sizes(), " and ", b.sizes());
  check_k(k, a, "a_bits");
  TORCH_CHECK_VALUE(k <= std::numeric_limits<int32_t>::max(), "k=", k, " overflows the int32 result");
  return {a.size(0), b.size(0), k};
}

static std::pair<int64_t, int64_t> pair_arg(at::IntArrayRef v, const char* name) {
  TORCH_CHECK_VALUE(v.size() == 1 || v.size() == 2, name, " must be an int or a pair of ints, got ", v);
  return {v[0], v.size() == 2 ? v[1] : v[0]};
}

ConvParams check_binary_conv2d(const at::Tensor& x, const at::Tensor& w, int64_t in_channels, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t pad_value) {
  check_bits(x, "x_bits", 4);
  check_bits(w, "w_bits", 4);
  check_same_device(x, "x_bits", w, "w_bits");
  TORCH_CHECK_VALUE(in_channels >= 1, "in_channels must be >= 1, got ", in_channels);
  check_k(in_channels, x, "x_bits [N, H, W, ceil(C/32)]", "in_channels");
  TORCH_CHECK_VALUE(groups >= 1, "groups must be >= 1, got ", groups);
  TORCH_CHECK_VALUE(in_channels % groups == 0, "groups=", groups, " must divide in_channels=", in_channels);
  const int64_t out_channels = w.size(0);
  TORCH_CHECK_VALUE(out_channels % groups == 0, "groups=", groups, " must divide the out channels of w_bits (",
                    out_channels, ")");
  const int64_t cg = in_channels / groups;
  TORCH_CHECK_VALUE(w.size(3) == words_for_bits(cg), "w_bits [O, KH, KW, ceil((C/groups)/32)] must have ",
                    words_for_bits(cg), " words in its last dim for ", cg, " channels per group, got shape ",
                    w.sizes());
  TORCH_CHECK_VALUE(w.size(1) >= 1 && w.size(2) >= 1, "w_bits must have a kernel of at least 1x1, got shape ",
                    w.sizes());
  auto [sh, sw] = pair_arg(stride, "stride");
  auto [ph, pw] = pair_arg(padding, "padding");
  auto [dh, dw] = pair_arg(dilation, "dilation");
  TORCH_CHECK_VALUE(sh >= 1 && sw >= 1, "stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(ph >= 0 && pw >= 0, "padding must be >= 0, got ", padding);
  TORCH_CHECK_VALUE(dh >= 1 && dw >= 1, "dilation must be >= 1, got ", dilation);
  // int32 bounds keep every size the checks and kernels derive (in + 2 * pad, dil * (k - 1)) in int64
  constexpr int64_t kMaxGeometry = std::numeric_limits<int32_t>::max();
  for (const auto& [v, name] :
       {std::pair{stride, "stride"}, std::pair{padding, "padding"}, std::pair{dilation, "dilation"}}) {
    for (int64_t e : v) TORCH_CHECK_VALUE(e <= kMaxGeometry, name, " must be at most 2^31 - 1, got ", v);
  }
  TORCH_CHECK_VALUE(pad_value == 0 || pad_value == 1 || pad_value == -1, "pad_value must be 0, 1 or -1, got ",
                    pad_value);
  ConvParams p{};
  p.batch = x.size(0);
  p.in_h = x.size(1);
  p.in_w = x.size(2);
  p.in_channels = in_channels;
  p.out_channels = out_channels;
  p.kernel_h = w.size(1);
  p.kernel_w = w.size(2);
  p.groups = groups;
  p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw, p.dil_h = dh, p.dil_w = dw;
  p.pad_value = static_cast<int>(pad_value);
  p.out_h = conv_out_size(p.in_h, p.kernel_h, sh, ph, dh);
  p.out_w = conv_out_size(p.in_w, p.kernel_w, sw, pw, dw);
  TORCH_CHECK_VALUE(p.out_h >= 1 && p.out_w >= 1, "kernel ", p.kernel_h, "x", p.kernel_w, " with dilation (", dh, ", ",
                    dw, ") is larger than the padded input ", p.in_h + 2 * ph, "x", p.in_w + 2 * pw);
  TORCH_CHECK_VALUE(static_cast<double>(p.out_h) * static_cast<double>(p.out_w) <= 0x1p53, "padding ", padding,
                    " gives an output of ", p.out_h, "x", p.out_w, " pixels per channel, too large");
  TORCH_CHECK_VALUE(cg * p.kernel_h * p.kernel_w <= std::numeric_limits<int32_t>::max(),
                    "in_channels/groups * KH * KW overflows the int32 result");
  return p;
}

static int64_t abs_sum(at::IntArrayRef coefs, int64_t offset) {
  int64_t s = std::llabs(offset);
  for (int64_t c : coefs) s += std::llabs(c);
  return s;
}

BitserialShape check_bitserial_gemm(const at::Tensor& a, const at::Tensor& w, int64_t k, at::IntArrayRef a_coefs,
                                    at::IntArrayRef w_coefs, int64_t a_offset, int64_t w_offset, bool reduce) {
  check_bits(a, "a_planes", 3);
  check_bits(w, "w_planes", 3);
  check_same_device(a, "a_planes", w, "w_planes");
  TORCH_CHECK_VALUE(a.size(2) == w.size(2), "a_planes and w_planes must have the same number of ",
                    "words per row, got ", a.sizes(), " and ", w.sizes());
  check_k(k, a, "a_planes");
  TORCH_CHECK_VALUE(a.size(0) >= 1, "a_planes must have at least one plane, got shape ", a.sizes());
  TORCH_CHECK_VALUE(w.size(0) >= 1, "w_planes must have at least one plane, got shape ", w.sizes());
  TORCH_CHECK_VALUE(static_cast<int64_t>(a_coefs.size()) == a.size(0), "a_coefs must have one ",
                    "coefficient per plane of a_planes (", a.size(0), "), got ", a_coefs.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(w_coefs.size()) == w.size(0), "w_coefs must have one ",
                    "coefficient per plane of w_planes (", w.size(0), "), got ", w_coefs.size());
  const int64_t limit = std::numeric_limits<int32_t>::max();
  for (int64_t c : a_coefs) TORCH_CHECK_VALUE(std::llabs(c) <= limit, "a_coefs entry ", c, " is out of int32 range");
  for (int64_t c : w_coefs) TORCH_CHECK_VALUE(std::llabs(c) <= limit, "w_coefs entry ", c, " is out of int32 range");
  TORCH_CHECK_VALUE(std::llabs(a_offset) <= limit && std::llabs(w_offset) <= limit,
                    "a_offset and w_offset must be in int32 range");
  // Bound every partial sum the kernel forms: |a| <= amax, |w| <= wmax over k terms.
  const double amax = reduce ? static_cast<double>(abs_sum(a_coefs, a_offset)) : 1.0;
  const double wmax = static_cast<double>(abs_sum(w_coefs, w_offset));
  TORCH_CHECK_VALUE(static_cast<double>(k) * amax * wmax <= static_cast<double>(limit),
                    "results may overflow int32: k=", k, " times max|a|=", amax, " times max|w|=", wmax,
                    " exceeds 2^31-1; split k or use smaller coefficients");
  return {a.size(0), w.size(0), a.size(1), w.size(1), k};
}

void check_pack_bits(const at::Tensor& x, const c10::optional<at::Tensor>& channel_threshold) {
  TORCH_CHECK_VALUE(x.dim() >= 1, "x must have at least 1 dim (packed along the last), got a scalar");
  TORCH_CHECK_VALUE(x.size(-1) >= 1, "x must have a non-empty last dim, got shape ", x.sizes());
  const auto st = x.scalar_type();
  TORCH_CHECK_TYPE(at::isFloatingType(st) || (at::isIntegralType(st, /*includeBool=*/false) && st != at::kUInt16 &&
                                              st != at::kUInt32 && st != at::kUInt64),
                   "x must be a floating point or integer tensor, got ", st);
  if (channel_threshold.has_value()) {
    const auto& t = *channel_threshold;
    TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()) || at::isIntegralType(t.scalar_type(), false),
                     "threshold must be a float or a real tensor, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == x.size(-1), "threshold tensor must have shape [", x.size(-1),
                      "] (one per element of the last dim of x), got ", t.sizes());
    check_same_device(x, "x", t, "threshold");
  }
}

void check_to_bitplanes(const at::Tensor& q, int64_t nbits) {
  TORCH_CHECK_TYPE(at::isIntegralType(q.scalar_type(), /*includeBool=*/false),
                   "q must be an integer tensor (round and cast first, e.g. q.round().to(torch.int32)), got ",
                   q.scalar_type());
  TORCH_CHECK_VALUE(q.dim() >= 1, "q must have at least 1 dim, got a scalar");
  TORCH_CHECK_VALUE(q.size(-1) >= 1, "q must have a non-empty last dim, got shape ", q.sizes());
  TORCH_CHECK_VALUE(nbits >= 1 && nbits <= 16, "nbits must be in [1, 16], got ", nbits);
}

void bitplanes_range_error(int64_t value, int64_t flat_index, int64_t nbits, bool is_signed) {
  const int64_t lo = is_signed ? -(int64_t(1) << (nbits - 1)) : 0;
  const int64_t hi = is_signed ? (int64_t(1) << (nbits - 1)) - 1 : (int64_t(1) << nbits) - 1;
  TORCH_CHECK_VALUE(false, "q holds ", value, " (flat index ", flat_index, "), outside [", lo, ", ", hi,
                    "], the range of ", nbits, "-bit ", is_signed ? "signed" : "unsigned", " values");
  TORCH_INTERNAL_ASSERT(false);  // unreachable
}

at::Tensor pack_thresholds(const at::Tensor& x, double threshold, const c10::optional<at::Tensor>& channel_threshold) {
  TORCH_CHECK_VALUE(channel_threshold.has_value() || !std::isnan(threshold),
                    "threshold must not be NaN (no value is >= NaN: every bit would be 0)");
  const auto st = x.scalar_type();
  const bool half = st == at::kHalf || st == at::kBFloat16;
  const at::ScalarType cmp = at::isFloatingType(st) ? (half ? at::kFloat : st) : at::kDouble;
  // A threshold tensor already of x's (floating) dtype needs no rounding: the round trip through
  // float64 would return the same values at the cost of two copies per call.
  if (channel_threshold.has_value() && channel_threshold->scalar_type() == st && at::isFloatingType(st))
    return channel_threshold->to(cmp).contiguous();
  at::Tensor thr = channel_threshold.has_value() ? channel_threshold->to(at::kDouble)
                                                 : at::full({1}, threshold, x.options().dtype(at::kDouble));
  if (at::isFloatingType(st)) thr = thr.to(st);
  return thr.to(cmp).contiguous();
}

at::ScalarType check_unpack_bits(const at::Tensor& bits, int64_t k, c10::optional<at::ScalarType> dtype) {
  check_bits(bits, "bits", 1, /*at_least=*/true);
  check_k(k, bits, "bits");
  const at::ScalarType st = dtype.value_or(at::kFloat);
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16 || st == at::kChar ||
                       st == at::kShort || st == at::kInt || st == at::kLong,
                   "dtype must be a float type or a signed integer type, got ", st);
  return st;
}

void check_binary_weight_linear(const at::Tensor& x, const at::Tensor& w, int64_t k,
                                const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias) {
  const auto st = x.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
                   "x must be float32, float64, float16 or bfloat16, got ", st);
  TORCH_CHECK_VALUE(x.dim() >= 1, "x must have at least 1 dim [..., K], got a scalar");
  check_bits(w, "w_bits", 2);
  check_same_device(x, "x", w, "w_bits");
  check_k(k, w, "w_bits");
  TORCH_CHECK_VALUE(x.size(-1) == k, "x must have k=", k, " features in its last dim, got shape ", x.sizes());
  const int64_t n = w.size(0);
  for (const auto& [opt, name] : {std::pair{&scale, "scale"}, std::pair{&bias, "bias"}}) {
    if (!opt->has_value()) continue;
    const at::Tensor& t = **opt;
    TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name, " must be a floating point tensor, got ",
                     t.scalar_type());
    TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, name, " must have shape [", n, "] (one per output feature), got ",
                      t.sizes());
    check_same_device(x, "x", t, name);
  }
}

static void check_channel_vector(const c10::optional<at::Tensor>& opt, const char* name, const at::Tensor& like,
                                 int64_t n) {
  if (!opt.has_value()) return;
  const at::Tensor& t = *opt;
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, name, " must be a float32 tensor, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, name, " must have shape [", n, "] (one per output channel), got ",
                    t.sizes());
  check_same_device(like, "the packed inputs", t, name);
}

EpilogueSpec check_epilogue(const EpilogueArgs& a, const at::Tensor& like, int64_t n, at::IntArrayRef float_shape) {
  check_channel_vector(a.multiplier, "multiplier", like, n);
  check_channel_vector(a.bias, "bias", like, n);
  check_channel_vector(a.act_slope, "act_slope", like, n);
  check_channel_vector(a.act_shift_in, "act_shift_in", like, n);
  check_channel_vector(a.act_shift_out, "act_shift_out", like, n);
  check_channel_vector(a.out_threshold, "out_threshold", like, n);
  TORCH_CHECK_VALUE(a.act_slope.has_value() || !(a.act_shift_in.has_value() || a.act_shift_out.has_value()),
                    "act_shift_in and act_shift_out need act_slope (they are the shifts of PReLU / RPReLU)");
  if (a.residual.has_value()) {
    const at::Tensor& r = *a.residual;
    TORCH_CHECK_TYPE(r.scalar_type() == at::kFloat, "residual must be a float32 tensor, got ", r.scalar_type());
    TORCH_CHECK_VALUE(r.sizes() == float_shape, "residual must have the float output's shape ", float_shape, ", got ",
                      r.sizes());
    check_same_device(like, "the packed inputs", r, "residual");
  }
  const bool float_steps = a.multiplier || a.bias || a.residual || a.act_slope;
  EpilogueSpec s;
  if (a.out_threshold.has_value()) {
    TORCH_CHECK_VALUE(!a.out_dtype.has_value(),
                      "out_dtype and out_threshold exclude each other: with out_threshold the op returns packed bits");
    s.output = EpilogueOutput::Bits;
    return s;
  }
  if (a.out_dtype.has_value()) {
    const at::ScalarType st = *a.out_dtype;
    const bool ok = st == at::kFloat || st == at::kHalf || st == at::kBFloat16 || (st == at::kInt && !float_steps);
    TORCH_CHECK_TYPE(ok, "out_dtype must be torch.float32, torch.float16 or torch.bfloat16",
                     float_steps ? "" : " (or torch.int32 for the raw result)", ", got ", st);
    if (st != at::kInt) s = {EpilogueOutput::Float, st};
  } else if (float_steps) {
    s = {EpilogueOutput::Float, at::kFloat};
  }
  return s;
}

EpilogueSpec check_epilogue_dual(const EpilogueArgs& a, const at::Tensor& like, int64_t n,
                                 at::IntArrayRef float_shape) {
  TORCH_CHECK_VALUE(a.out_threshold.has_value(),
                    "out_threshold is required: the dual ops return the float output and its packed bits");
  TORCH_CHECK_TYPE(!a.out_dtype.has_value() || *a.out_dtype != at::kInt,
                   "out_dtype must be torch.float32, torch.float16 or torch.bfloat16 (the dual ops return a float "
                   "output), got ",
                   *a.out_dtype);
  check_channel_vector(a.out_threshold, "out_threshold", like, n);
  EpilogueArgs float_args = a;
  float_args.out_threshold.reset();
  EpilogueSpec s = check_epilogue(float_args, like, n, float_shape);
  if (s.output == EpilogueOutput::Int32) s = {EpilogueOutput::Float, at::kFloat};
  return s;
}

ConvParams check_binary_weight_conv2d(const at::Tensor& x, const at::Tensor& w, int64_t in_channels,
                                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups, const c10::optional<at::Tensor>& multiplier,
                                      const c10::optional<at::Tensor>& bias) {
  const auto st = x.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
                   "x must be float32, float64, float16 or bfloat16, got ", st);
  TORCH_CHECK_VALUE(x.dim() == 4, "x must have 4 dims [N, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.size(1) == in_channels, "x must have in_channels=", in_channels, " channels in dim 1, got shape ",
                    x.sizes());
  check_bits(w, "w_bits", 4);
  check_same_device(x, "x", w, "w_bits");
  // The packed geometry checks of binary_conv2d, on a stand-in x_bits of x's sizes (never read).
  const at::Tensor shape_only =
      at::empty({x.size(0), x.size(2), x.size(3), words_for_bits(std::max<int64_t>(in_channels, 1))},
                x.options().dtype(at::kInt).device(at::kMeta));
  ConvParams p = check_binary_conv2d(shape_only, w.to(at::kMeta), in_channels, stride, padding, dilation, groups, 0);
  for (const auto& [opt, name] : {std::pair{&multiplier, "multiplier"}, std::pair{&bias, "bias"}}) {
    if (!opt->has_value()) continue;
    const at::Tensor& t = **opt;
    TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name, " must be a floating point tensor, got ",
                     t.scalar_type());
    TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == p.out_channels, name, " must have shape [", p.out_channels,
                      "] (one per output channel), got ", t.sizes());
    check_same_device(x, "x", t, name);
  }
  return p;
}

}  // namespace bnn::binding
