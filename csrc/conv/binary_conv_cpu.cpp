// Implicit GEMM: the packed taps of each output pixel form a row of KH*KW*ceil(Cg/32) words
// ("bit im2col", 1/32 of a float im2col), multiplied by XOR-popcount against the weight rows
// of the same layout; border pixels are then corrected for zero padding (padding with +1
// or -1 is just a value, gathered as all-ones or all-zeros). The rows are never
// materialized: each block of pixels is gathered straight into the GEMM micro-kernel's A
// tiles, multiplied, and corrected while it is in cache, all in one parallel region.
#include "conv/binary_conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/bits.h"
#include "gemm/microkernel.h"
#include "gemm/popcount_gemm.h"

namespace bnn::cpu {
namespace {

// Weight preparation and packing run on one thread below this many words (~100 us of
// work): each parallel region is a point where all threads must meet, and on a busy
// machine a preempted thread makes that cost a scheduler time slice.
constexpr int64_t kParallelWords = int64_t(1) << 18;

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
#pragma omp parallel for num_threads(nt) schedule(static) if (work > kParallelWords)
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
  const ScratchBuffer<int32_t> wclean(wcache, clean_w ? p.out_channels * row_words : 0);
  const ScratchBuffer<int32_t> wsum(scache, p.pad_value == 0 ? taps * p.out_channels : 0);
  if (clean_w || p.pad_value == 0)
    prepare_weights(w, p, wg, clean_w ? wclean.get() : nullptr,
                    p.pad_value == 0 ? wsum.get() : nullptr, nt);
  const int32_t* wrows = clean_w ? wclean.get() : w;

  // Weight rows of every group packed once into the micro-kernel's B tiles.
  const MicroKernel mk = select_microkernel(BitOp::Xor);
  const int mr = mk.mr, nr = mk.nr;
  const int64_t w64 = (row_words + 1) / 2;
  const int64_t n_tiles = (og + nr - 1) / nr;
  static thread_local std::vector<uint64_t> bcache;
  const ScratchBuffer<uint64_t> bpack(bcache, p.groups * n_tiles * nr * w64);
  uint64_t* const bp = bpack.get();
#pragma omp parallel for num_threads(nt) schedule(static) \
    if (p.groups * og * row_words > kParallelWords)
  for (int64_t u = 0; u < p.groups * n_tiles; ++u) {
    const int64_t g = u / n_tiles, n0 = (u % n_tiles) * nr;
    pack_tiles(wrows + (g * og + n0) * row_words, row_words, std::min<int64_t>(nr, og - n0), nr,
               row_words, 0xFFFFFFFFu, w64, bp + u * nr * w64);
  }

  // Blocks of output pixels (up to 8 A tiles), handed out dynamically: each is gathered
  // straight into A tiles, multiplied against the group's B tiles while it is in L1, and
  // corrected for zero padding while its output rows are in cache.
  const int64_t tiles_per_block =
      std::clamp<int64_t>((pixels + 8 * nt * mr - 1) / (8 * nt * mr), 1, 8);
  const int64_t block_rows = tiles_per_block * mr;
  const int64_t blocks = (pixels + block_rows - 1) / block_rows;
  const int32_t alpha = -2, beta = static_cast<int32_t>(taps * cg);
#pragma omp parallel num_threads(nt)
  {
    static thread_local std::vector<uint64_t> acache;
    static thread_local std::vector<uint32_t> rcache;
    static thread_local std::vector<uint8_t> pcache;
    const ScratchBuffer<uint64_t> apack(acache, block_rows * w64);
    const ScratchBuffer<uint32_t> row_buf(rcache, 2 * w64);
    const ScratchBuffer<uint8_t> pad_buf(pcache, block_rows * taps);
    uint64_t* const ap = apack.get();
    uint32_t* const row = row_buf.get();
    uint8_t* const padded = pad_buf.get();
    row[2 * w64 - 1] = 0;  // the odd half-word, when row_words is odd

#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t g = 0; g < p.groups; ++g) {
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t c0 = g * cg, r0 = blk * block_rows;
        const int64_t rn = std::min(block_rows, pixels - r0);
        bool any_padded = false;
        for (int64_t r = 0; r < rn; ++r) {
          const int64_t pix = r0 + r;
          const int64_t ow = pix % p.out_w, oh = (pix / p.out_w) % p.out_h;
          const int64_t n = pix / (p.out_w * p.out_h);
          for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
            const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dil_h;
            for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
              const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dil_w;
              const int64_t t = kh * p.kernel_w + kw;
              uint32_t* d = row + t * wg;
              const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
              padded[r * taps + t] = !inside;
              if (inside) {
                const uint32_t* src = reinterpret_cast<const uint32_t*>(x) +
                                      ((n * p.in_h + ih) * p.in_w + iw) * wx;
                extract_channels(src, wx, c0, cg, wg, d);
              } else {
                any_padded = true;
                for (int64_t j = 0; j < wg; ++j) d[j] = fill;
                d[wg - 1] &= last;
              }
            }
          }
          // Row r is row r % mr of A tile r / mr (tile layout: word kk at kk * mr).
          uint64_t* dst = ap + (r / mr) * mr * w64 + r % mr;
          for (int64_t kk = 0; kk < w64; ++kk) {
            uint64_t v;
            std::memcpy(&v, row + 2 * kk, sizeof v);
            dst[kk * mr] = v;
          }
        }
        for (int64_t r = rn; r % mr != 0; ++r) {  // rows past the end of the last tile
          uint64_t* dst = ap + (r / mr) * mr * w64 + r % mr;
          for (int64_t kk = 0; kk < w64; ++kk) dst[kk * mr] = 0;
        }
        int32_t* o = out + r0 * p.out_channels + g * og;
        multiply_tiles(mk, ap, rn, bp + g * n_tiles * nr * w64, og, w64, alpha, beta, o,
                       p.out_channels);
        if (p.pad_value != 0 || !any_padded) continue;
        for (int64_t r = 0; r < rn; ++r) {
          const uint8_t* pad = padded + r * taps;
          int32_t* orow = o + r * p.out_channels;
          for (int64_t t = 0; t < taps; ++t) {
            if (!pad[t]) continue;
            const int32_t* ws = wsum.get() + t * p.out_channels + g * og;
            for (int64_t j = 0; j < og; ++j) orow[j] += ws[j];
          }
        }
      }
    }
  }
}

}  // namespace bnn::cpu
