// Binary 2-D convolution over packed NHWC activations as an implicit GEMM. Torch-free.
#pragma once

#include <cstdint>

#include "common/bits.h"
#include "common/epilogue.h"

namespace bnn {

struct ConvParams {
  int64_t batch, in_h, in_w, in_channels;    // input [batch, in_h, in_w, ceil(in_channels/32)]
  int64_t out_channels, kernel_h, kernel_w;  // weights [O, KH, KW, ceil((C/groups)/32)]
  int64_t groups;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t out_h, out_w;
  int pad_value;  // 0: padded taps contribute 0; +1 / -1: padding with that value

  int64_t group_channels() const { return in_channels / groups; }
  int64_t group_out() const { return out_channels / groups; }
};

// Output size of one spatial dim, or a value < 1 when the kernel does not fit.
inline int64_t conv_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t span = d * (k - 1) + 1;
  if (in + 2 * p < span) return 0;
  return (in + 2 * p - span) / s + 1;
}

// Sizes every CPU conv kernel derives from ConvParams.
struct ConvSizes {
  int64_t cg, og;  // channels and output channels per group
  int64_t wg, wx;  // 32-bit words per tap (one group) and per input pixel (all channels)
  int64_t taps, pixels;

  static ConvSizes of(const ConvParams& p) {
    return ConvSizes{p.group_channels(),
                     p.group_out(),
                     words_for_bits(p.group_channels()),
                     words_for_bits(p.in_channels),
                     p.kernel_h * p.kernel_w,
                     p.batch * p.out_h * p.out_w};
  }
};

namespace cpu {

// out [batch, out_h, out_w, out_channels] (NHWC) = conv2d(sign(x), sign(w)) exactly.
void binary_conv2d(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, int num_threads);
// The same with the fused epilogue e (common/epilogue.h) applied to each output element: row
// m of e is the NHWC output pixel m (of batch * out_h * out_w), channel n the output channel.
void binary_conv2d(const int32_t* x, const int32_t* w, const ConvParams& p, const Epilogue& e, int num_threads);

}  // namespace cpu
}  // namespace bnn
