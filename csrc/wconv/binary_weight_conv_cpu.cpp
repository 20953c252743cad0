// binary_weight_conv2d on the CPU as an implicit GEMM over real-valued patch rows:
//  1. the weights are repacked into GEMM rows of taps * Cg bits (the conv layout pads each tap
//     to whole words; the GEMM row does not); the float32 panel path then transposes them into
//     panels of 16 output channels (linear/panel.h), kept between calls (prepared_cache.h);
//  2. for each (group, block of output pixels), the block's patch rows (im2col over NHWC:
//     KH * KW taps of Cg floats each, zeros for padded taps) are gathered into a per-thread
//     buffer while it stays in cache ...
//  3. ... and multiplied by the single-threaded row kernels, which also apply the multiplier
//     and bias and write the block's outputs in place (row stride O): float32 on AVX-512, or on
//     AVX2 with FMA, takes the panel kernel (FMAs with +-1.0f, the scalar order); otherwise
//     the scalar row loop (linear_rows), in the same order.
// A 1x1 convolution with stride 1, no padding and one group reads x directly (its rows are
// the patch rows). Threads take (group, block) pairs dynamically.
#include "wconv/binary_weight_conv.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/bits.h"
#include "common/cpu_features.h"
#include "common/prepared_cache.h"
#include "linear/linear_kernels.h"
#include "linear/panel.h"

namespace bnn::cpu {
namespace {

// Appends the first n bits of src (LSB first) to the zero-initialized bit stream dst at bit pos.
void append_bits(const uint32_t* src, int64_t n, uint32_t* dst, int64_t pos) {
  for (int64_t j = 0; 32 * j < n; ++j) {
    const int64_t nb = std::min<int64_t>(32, n - 32 * j);
    const uint32_t v = src[j] & (nb == 32 ? 0xFFFFFFFFu : ((1u << nb) - 1u));
    const int64_t bit = pos + 32 * j;
    const int s = static_cast<int>(bit & 31);
    dst[bit >> 5] |= v << s;
    if (s != 0 && s + nb > 32) dst[(bit >> 5) + 1] |= v >> (32 - s);
  }
}

// Patch rows of at most about this many bytes per thread block.
constexpr int64_t kBlockBytes = int64_t(256) << 10;

struct Plan {
  int64_t cg, og, taps, K, words, pixels, block_rows, blocks;
  bool direct;  // 1x1, stride 1, no padding, one group: x rows are the patch rows
};

template <typename T>
Plan make_plan(const ConvParams& p, int nt) {
  Plan g;
  g.cg = p.group_channels();
  g.og = p.group_out();
  g.taps = p.kernel_h * p.kernel_w;
  g.K = g.taps * g.cg;
  g.words = words_for_bits(g.K);
  g.pixels = p.batch * p.out_h * p.out_w;
  g.direct = g.taps == 1 && p.groups == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  // whole register tiles of the panel kernels (6 rows on AVX2, 12 on AVX-512)
  constexpr int64_t R = 12;
  const int64_t max_rows = std::max<int64_t>(R, kBlockBytes / (g.K * int64_t(sizeof(T))) / R * R);
  const int64_t want = (g.pixels + 8 * nt - 1) / (8 * nt);  // about 8 blocks per thread
  g.block_rows = std::clamp<int64_t>((want + R - 1) / R * R, R, max_rows);
  g.blocks = (g.pixels + g.block_rows - 1) / g.block_rows;
  return g;
}

// Patch rows of output pixels [r0, r0 + rn) for group grp into rows (rn x K, row stride K).
template <typename T>
void gather_rows(const T* x, const ConvParams& p, const Plan& g, int64_t grp, int64_t r0, int64_t rn, T* rows) {
  for (int64_t r = 0; r < rn; ++r) {
    const int64_t pix = r0 + r;
    const int64_t ow = pix % p.out_w, oh = (pix / p.out_w) % p.out_h, n = pix / (p.out_w * p.out_h);
    T* row = rows + r * g.K;
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dil_h;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dil_w;
        T* d = row + (kh * p.kernel_w + kw) * g.cg;
        if (ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w) {
          std::memcpy(d, x + ((n * p.in_h + ih) * p.in_w + iw) * p.in_channels + grp * g.cg, g.cg * sizeof(T));
        } else {
          std::fill(d, d + g.cg, T(0));
        }
      }
    }
  }
}

// rows(a, rn, grp, out_block): the row kernel for rn patch rows a (row stride K) of group grp,
// writing the block's outputs of that group at out_block (row stride O).
template <typename T, class Rows>
void run_blocks(const T* x, const ConvParams& p, const Plan& g, T* out, int nt, const Rows& rows_fn) {
#pragma omp parallel num_threads(nt)
  {
    std::vector<T> rows(g.direct ? 0 : g.block_rows * g.K);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      for (int64_t blk = 0; blk < g.blocks; ++blk) {
        const int64_t r0 = blk * g.block_rows, rn = std::min(g.block_rows, g.pixels - r0);
        const T* a = x + r0 * g.K;
        if (!g.direct) {
          gather_rows(x, p, g, grp, r0, rn, rows.data());
          a = rows.data();
        }
        rows_fn(a, rn, grp, out + r0 * p.out_channels + grp * g.og);
      }
    }
  }
}

// The float32 panel path: the weights' panel bits (kept between calls), then the panel kernel.
void run_panels(const float* x, const int32_t* w, const ConvParams& p, const Plan& g, const float* mult,
                const float* bias, float* out, int nt) {
  const int64_t panels = panels_for(g.og), entries = p.groups * panels * g.K;
  const int64_t wg = words_for_bits(g.cg);
  static thread_local PreparedCache cache;
  const uint32_t* prepared = cache.get(
      reinterpret_cast<const uint32_t*>(w), size_t(p.out_channels * g.taps * wg),
      {/*layout*/ 0x70616e, p.out_channels, g.taps, g.cg, p.groups}, size_t((entries + 1) / 2), [&](uint32_t* dst) {
        std::vector<int32_t> wrows(p.out_channels * g.words);
        conv_weight_rows(w, p.out_channels, g.taps, g.cg, wrows.data());
        panel_bits(wrows.data(), p.groups, g.og, g.K, g.words, reinterpret_cast<uint16_t*>(dst), nt);
      });
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(prepared);
  const PanelRowsFn panel_rows = select_panel_rows();
  run_blocks(x, p, g, out, nt, [&](const float* a, int64_t rn, int64_t grp, float* o) {
    const int64_t o0 = grp * g.og;
    panel_rows(a, rn, g.K, bits + grp * panels * g.K, g.og, mult ? mult + o0 : nullptr, bias ? bias + o0 : nullptr, o,
               p.out_channels);
  });
}

}  // namespace

void conv_weight_rows(const int32_t* w, int64_t out_channels, int64_t taps, int64_t cg, int32_t* rows) {
  const int64_t wg = words_for_bits(cg), words = words_for_bits(taps * cg);
  std::fill(rows, rows + out_channels * words, 0);
  for (int64_t o = 0; o < out_channels; ++o)
    for (int64_t t = 0; t < taps; ++t)
      append_bits(reinterpret_cast<const uint32_t*>(w) + (o * taps + t) * wg, cg,
                  reinterpret_cast<uint32_t*>(rows) + o * words, t * cg);
}

template <typename T>
void binary_weight_conv2d(const T* x, const int32_t* w, const ConvParams& p, const T* multiplier, const T* bias, T* out,
                          int num_threads) {
  if (p.batch * p.out_h * p.out_w == 0 || p.out_channels == 0) return;
  const int nt = sane_threads(num_threads);
  const Plan g = make_plan<T>(p, nt);
  if constexpr (std::is_same_v<T, float>) {
    if (use_panels()) return run_panels(x, w, p, g, multiplier, bias, out, nt);
  }
  std::vector<int32_t> wrows(p.out_channels * g.words);
  conv_weight_rows(w, p.out_channels, g.taps, g.cg, wrows.data());
  run_blocks(x, p, g, out, nt, [&](const T* a, int64_t rn, int64_t grp, T* o) {
    const int64_t o0 = grp * g.og;
    linear_rows<T>(a, rn, g.K, wrows.data() + o0 * g.words, g.og, multiplier ? multiplier + o0 : nullptr,
                   bias ? bias + o0 : nullptr, o, p.out_channels);
  });
}

template void binary_weight_conv2d<float>(const float*, const int32_t*, const ConvParams&, const float*, const float*,
                                          float*, int);
template void binary_weight_conv2d<double>(const double*, const int32_t*, const ConvParams&, const double*,
                                           const double*, double*, int);

}  // namespace bnn::cpu
