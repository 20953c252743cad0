// binary_weight_conv2d's CUDA kernel under the emulator, compared bit for bit with the CPU
// kernel's scalar path (the order the CUDA kernel promises to reproduce) on random float and
// double activations (exact zeros and negative zeros included), dirty weight tail bits,
// channel tails, groups, strides, dilations and paddings, with and without the epilogue.
#include <cstdlib>

#include "test_util.h"
#include "wconv/binary_weight_conv.h"
#include "wconv/binary_weight_conv_cuda.h"

using namespace bnn;
using emu::DevBuf;

namespace emutest {
namespace {

template <class T>
std::vector<T> rand_values(size_t n) {
  std::normal_distribution<double> nd;
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i % 13 == 0 ? T(i % 2 ? -0.0 : 0.0) : static_cast<T>(nd(rng));
  return v;
}

template <class T>
void wconv_case(const ConvParams& p, bool affine) {
  const int64_t cg = p.group_channels(), n_out = p.batch * p.out_h * p.out_w * p.out_channels;
  const auto x = rand_values<T>(p.batch * p.in_h * p.in_w * p.in_channels);
  const auto w = rand_bits(p.out_channels * p.kernel_h * p.kernel_w, cg, true);
  const auto mult = rand_values<T>(p.out_channels), bias = rand_values<T>(p.out_channels);
  std::vector<T> ref(n_out);
  setenv("BNN_KERNELS_CPU_ISA", "scalar", 1);
  cpu::binary_weight_conv2d<T>(x.data(), w.data(), p, affine ? mult.data() : nullptr, affine ? bias.data() : nullptr,
                               ref.data(), 2);
  unsetenv("BNN_KERNELS_CPU_ISA");
  DevBuf<T> dx(x), dm(mult), db(bias);
  DevBuf<int32_t> dw(w);
  DevBuf<T> out(n_out);
  const auto type = sizeof(T) == 8 ? cuda::WconvType::F64 : cuda::WconvType::F32;
  cuda::launch_binary_weight_conv2d(type, dx.get(), dw.get(), p, affine ? dm.get() : nullptr,
                                    affine ? db.get() : nullptr, out.get(), nullptr);
  CHECK(same(out, ref), "wconv%zu c=%ld o=%ld g=%ld k=%ldx%ld s=%ld,%ld p=%ld,%ld d=%ld,%ld affine=%d", sizeof(T) * 8,
        (long)p.in_channels, (long)p.out_channels, (long)p.groups, (long)p.kernel_h, (long)p.kernel_w, (long)p.stride_h,
        (long)p.stride_w, (long)p.pad_h, (long)p.pad_w, (long)p.dil_h, (long)p.dil_w, affine);
}

}  // namespace

void test_wconv() {
  struct G {
    int64_t cg, og, groups, kh, kw, batch, h, w;
  };
  // 70 output channels: two channel tiles; 2 x 9 x 10 pixels: three pixel tiles; Cg 70 with
  // a 3x3 kernel: 630 GEMM columns, a partial last step of 32
  const G shapes[] = {{1, 1, 1, 1, 1, 1, 1, 1},    {3, 5, 1, 3, 3, 2, 6, 5},  {40, 3, 2, 3, 2, 1, 7, 6},
                      {32, 70, 1, 1, 1, 2, 9, 10}, {70, 4, 3, 3, 3, 1, 6, 7}, {5, 9, 4, 2, 3, 2, 5, 8}};
  std::uniform_int_distribution<int> pick(0, 1000);
  int cases = 0;
  for (const G& g : shapes)
    for (int variant = 0; variant < 3; ++variant) {
      ConvParams p{};
      p.batch = g.batch, p.in_h = g.h, p.in_w = g.w, p.in_channels = g.cg * g.groups;
      p.out_channels = g.og * g.groups, p.kernel_h = g.kh, p.kernel_w = g.kw, p.groups = g.groups;
      p.stride_h = p.stride_w = p.dil_h = p.dil_w = 1;
      if (variant > 0) {
        p.stride_h = 1 + pick(rng) % 2, p.stride_w = 1 + pick(rng) % 3;
        p.pad_h = pick(rng) % 3, p.pad_w = pick(rng) % 2;
        p.dil_h = 1 + pick(rng) % 2, p.dil_w = 1 + pick(rng) % 2;
      }
      p.out_h = conv_out_size(p.in_h, p.kernel_h, p.stride_h, p.pad_h, p.dil_h);
      p.out_w = conv_out_size(p.in_w, p.kernel_w, p.stride_w, p.pad_w, p.dil_w);
      if (p.out_h < 1 || p.out_w < 1) continue;
      wconv_case<float>(p, variant != 1);
      wconv_case<double>(p, variant != 2);
      ++cases;
    }
  ConvParams empty{};  // nothing to compute: no launch, nothing written
  empty.batch = 0, empty.out_channels = 1, empty.groups = 1;
  cuda::launch_binary_weight_conv2d(cuda::WconvType::F32, nullptr, nullptr, empty, nullptr, nullptr, nullptr, nullptr);
  fprintf(stderr, "wconv cases: %d\n", cases);
}

}  // namespace emutest
