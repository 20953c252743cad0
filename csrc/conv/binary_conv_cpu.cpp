// Implicit GEMM: gather the packed taps of a chunk of output pixels into rows of
// KH*KW*ceil(Cg/32) words ("bit im2col", 1/32 of a float im2col), run the XOR-popcount
// GEMM against the weight rows of the same layout, then correct border pixels for
// zero padding. Padding with +1 or -1 is just a value, gathered as all-ones or all-zeros.
#include "conv/binary_conv.h"

#include <algorithm>
#include <vector>

#include "common/bits.h"
#include "gemm/microkernel.h"
#include "gemm/popcount_gemm.h"

namespace bnn::cpu {
namespace {

// Copies channels [c0, c0 + cg) of one packed pixel row into dst (words_g words, tail 0).
inline void extract_channels(const uint32_t* src, int64_t src_words, int64_t c0, int64_t cg,
                             int64_t words_g, uint32_t* dst) {
  const int64_t w0 = c0 >> 5;
  const int s = static_cast<int>(c0 & 31);
  if (s == 0) {
    for (int64_t j = 0; j < words_g; ++j) dst[j] = src[w0 + j];
  } else {
    for (int64_t j = 0; j < words_g; ++j) {
      const uint32_t lo = src[w0 + j] >> s;
      const uint32_t hi = (w0 + j + 1 < src_words) ? (src[w0 + j + 1] << (32 - s)) : 0u;
      dst[j] = lo | hi;
    }
  }
  dst[words_g - 1] &= tail_mask(cg);
}

// For the taps of output channel o: masks each tap's tail into wclean (when given) and
// writes the tap's column sum sum_c w = 2 * popcount - cg into wsum[t * O + o] (when given).
__attribute__((always_inline)) inline void prepare_channel(const int32_t* w, const ConvParams& p,
                                                           int64_t wg, int64_t o, int32_t* wclean,
                                                           int32_t* wsum) {
  const int64_t taps = p.kernel_h * p.kernel_w, cg = p.group_channels();
  const uint32_t last = tail_mask(cg);
  for (int64_t t = 0; t < taps; ++t) {
    int pc = 0;
    for (int64_t j = 0; j < wg; ++j) {
      uint32_t v = static_cast<uint32_t>(w[(o * taps + t) * wg + j]);
      if (j == wg - 1) v &= last;
      if (wclean) wclean[(o * taps + t) * wg + j] = static_cast<int32_t>(v);
      pc += popcount32(v);
    }
    if (wsum) wsum[t * p.out_channels + o] = 2 * pc - static_cast<int32_t>(cg);
  }
}

// Two copies: with the POPCNT instruction (when the CPU has it) and without.
using PrepareFn = void (*)(const int32_t*, const ConvParams&, int64_t, int64_t, int32_t*,
                           int32_t*);
__attribute__((target("popcnt"))) void prepare_channel_popcnt(const int32_t* w,
                                                             const ConvParams& p, int64_t wg,
                                                             int64_t o, int32_t* wclean,
                                                             int32_t* wsum) {
  prepare_channel(w, p, wg, o, wclean, wsum);
}
void prepare_channel_generic(const int32_t* w, const ConvParams& p, int64_t wg, int64_t o,
                             int32_t* wclean, int32_t* wsum) {
  prepare_channel(w, p, wg, o, wclean, wsum);
}

void prepare_weights(const int32_t* w, const ConvParams& p, int64_t wg, int32_t* wclean,
                     int32_t* wsum, int nt) {
  static const PrepareFn fn =
      __builtin_cpu_supports("popcnt") ? prepare_channel_popcnt : prepare_channel_generic;
  const int64_t work = p.out_channels * p.kernel_h * p.kernel_w * wg;
#pragma omp parallel for num_threads(nt) schedule(static) if (work > 16384)
  for (int64_t o = 0; o < p.out_channels; ++o) fn(w, p, wg, o, wclean, wsum);
}

}  // namespace

void binary_conv2d(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out,
                   int num_threads) {
  const int64_t cg = p.group_channels(), og = p.group_out();
  const int64_t wg = words_for_bits(cg), wx = words_for_bits(p.in_channels);
  const int64_t taps = p.kernel_h * p.kernel_w;
  const int64_t row_words = taps * wg;
  const int64_t pixels = p.batch * p.out_h * p.out_w;
  if (pixels == 0 || p.out_channels == 0) return;
  const int nt = sane_threads(num_threads);
  const uint32_t fill = p.pad_value == 1 ? 0xFFFFFFFFu : 0u;
  const uint32_t last = tail_mask(cg);

  // Weights with each tap's tail masked (only needed when Cg is not a multiple of 32) and,
  // for zero padding, each tap's column sum sum_c w = 2 * popcount - cg, the term a padded
  // tap gathered as all -1 wrongly subtracts; stored [tap][o] for the correction pass.
  const bool clean_w = last != 0xFFFFFFFFu;
  static thread_local std::vector<int32_t> wcache, scache;
  static thread_local std::vector<uint32_t> rcache;
  static thread_local std::vector<uint8_t> pcache;
  const ScratchBuffer<int32_t> wclean(wcache, clean_w ? p.out_channels * row_words : 0);
  const ScratchBuffer<int32_t> wsum(scache, p.pad_value == 0 ? taps * p.out_channels : 0);
  if (clean_w || p.pad_value == 0)
    prepare_weights(w, p, wg, clean_w ? wclean.get() : nullptr,
                    p.pad_value == 0 ? wsum.get() : nullptr, nt);
  const int32_t* wrows = clean_w ? wclean.get() : w;

  // Chunk of output pixels whose gathered rows take about 2 MiB.
  const int64_t chunk = std::max<int64_t>(256, (2 << 20) / (4 * row_words));
  const ScratchBuffer<uint32_t> rows_buf(rcache, std::min(chunk, pixels) * row_words);
  const ScratchBuffer<uint8_t> pad_buf(pcache, std::min(chunk, pixels) * taps);
  uint32_t* const rows = rows_buf.get();
  uint8_t* const padded = pad_buf.get();

  for (int64_t g = 0; g < p.groups; ++g) {
    const int64_t c0 = g * cg;
    for (int64_t r0 = 0; r0 < pixels; r0 += chunk) {
      const int64_t rn = std::min(chunk, pixels - r0);
      bool any_padded = false;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 32) reduction(|| : any_padded)
      for (int64_t r = 0; r < rn; ++r) {
        const int64_t pix = r0 + r;
        const int64_t ow = pix % p.out_w, oh = (pix / p.out_w) % p.out_h, n = pix / (p.out_w * p.out_h);
        uint32_t* dst = rows + r * row_words;
        for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dil_h;
          for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
            const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dil_w;
            const int64_t t = kh * p.kernel_w + kw;
            uint32_t* d = dst + t * wg;
            const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
            padded[r * taps + t] = !inside;
            if (inside) {
              const uint32_t* src =
                  reinterpret_cast<const uint32_t*>(x) + ((n * p.in_h + ih) * p.in_w + iw) * wx;
              extract_channels(src, wx, c0, cg, wg, d);
            } else {
              any_padded = true;
              for (int64_t j = 0; j < wg; ++j) d[j] = fill;
              d[wg - 1] &= last;
            }
          }
        }
      }
      int32_t* o = out + r0 * p.out_channels + g * og;
      popcount_gemm(BitOp::Xor, reinterpret_cast<const int32_t*>(rows), row_words,
                    wrows + g * og * row_words, row_words, rn, og, row_words, 0xFFFFFFFFu,
                    -2, static_cast<int32_t>(taps * cg), o, p.out_channels, nt);
      if (p.pad_value != 0 || !any_padded) continue;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
      for (int64_t r = 0; r < rn; ++r) {
        const uint8_t* pad = padded + r * taps;
        for (int64_t t = 0; t < taps; ++t) {
          if (!pad[t]) continue;
          int32_t* orow = o + r * p.out_channels;
          const int32_t* ws = wsum.get() + t * p.out_channels + g * og;
          for (int64_t j = 0; j < og; ++j) orow[j] += ws[j];
        }
      }
    }
  }
}

}  // namespace bnn::cpu
