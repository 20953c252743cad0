// Binary conv2d as an implicit GEMM, in three passes over each block of output pixels (the
// split of Larq Compute Engine's bconv2d: gather, binary GEMM, zero-padding correction):
//
// 1. gather: the packed taps of each output pixel form one GEMM row of KH*KW*ceil(Cg/32)
//    words ("bit im2col", 1/32 the size of a float im2col). A tap outside the input is
//    gathered as the padding value: all-ones for pad_value=+1, all-zeros for -1 and for 0
//    (zero padding, which no +-1 bit can express, is gathered as -1 and fixed in pass 3).
//    Rows are never materialized: each block of pixels goes straight into the micro-kernel's
//    A tiles.
// 2. multiply: XOR-popcount GEMM against the weight rows (same layout, packed once into B
//    tiles): out = taps*Cg - 2 * popcount(row ^ wrow) = sum over taps and channels of x * w.
// 3. zero-padding correction (pad_value=0 only). A padded tap t gathered as x = -1 adds
//    sum_c (-1) * w[t][c] = -wsum[t] to the result, where it should add 0 (a zero-padded
//    input times anything). So each output pixel adds back wsum[t] = sum_c w[t][c]
//    = 2 * popcount(w[t]) - Cg for each of its padded taps t; wsum is computed once per call.
//
// All three run on a block while it is in cache, in one parallel region, and so does the
// fused epilogue (gemm/epilogue_cpu.h) when the op has one: the block's int32 results go
// through it into the float or bit outputs before the next block.
#include "conv/binary_conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/bits.h"
#include "conv/direct.h"
#include "gemm/epilogue_cpu.h"
#include "gemm/microkernel.h"
#include "gemm/popcount_gemm.h"

namespace bnn::cpu {
namespace {

// Weight preparation and packing run on one thread below this many words (~100 us of
// work): each parallel region is a point where all threads must meet, and on a busy
// machine a preempted thread makes that cost a scheduler time slice.
constexpr int64_t kParallelWords = int64_t(1) << 18;

// Copies channels [c0, c0 + cg) of one packed pixel row into dst (words_g words, tail 0).
inline void extract_channels(const uint32_t* src, int64_t src_words, int64_t c0, int64_t cg, int64_t words_g,
                             uint32_t* dst) {
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
__attribute__((always_inline)) inline void prepare_channel(const int32_t* w, const ConvParams& p, int64_t wg, int64_t o,
                                                           int32_t* wclean, int32_t* wsum) {
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
using PrepareFn = void (*)(const int32_t*, const ConvParams&, int64_t, int64_t, int32_t*, int32_t*);
__attribute__((target("popcnt"))) void prepare_channel_popcnt(const int32_t* w, const ConvParams& p, int64_t wg,
                                                              int64_t o, int32_t* wclean, int32_t* wsum) {
  prepare_channel(w, p, wg, o, wclean, wsum);
}
void prepare_channel_generic(const int32_t* w, const ConvParams& p, int64_t wg, int64_t o, int32_t* wclean,
                             int32_t* wsum) {
  prepare_channel(w, p, wg, o, wclean, wsum);
}

void prepare_weights(const int32_t* w, const ConvParams& p, int64_t wg, int32_t* wclean, int32_t* wsum, int nt) {
  static const PrepareFn fn = __builtin_cpu_supports("popcnt") ? prepare_channel_popcnt : prepare_channel_generic;
  const int64_t work = p.out_channels * p.kernel_h * p.kernel_w * wg;
#pragma omp parallel for num_threads(nt) schedule(static) if (work > kParallelWords)
  for (int64_t o = 0; o < p.out_channels; ++o) fn(w, p, wg, o, wclean, wsum);
}

// Sizes shared by the passes: of a group's GEMM (rows = output pixels, columns = the
// group's output channels, K = taps * Cg bits) and of its tiles and pixel blocks.
struct ConvGemm : ConvSizes {
  int64_t row_words;
  int64_t w64, n_tiles;  // 64-bit words per GEMM row; B tiles per group
  int64_t block_rows, blocks;
  uint32_t fill, last;  // a padded tap's words; the valid bits of a tap's last word
  MicroKernel mk;
  int64_t out_ld;  // row stride of the int32 results a block's passes 2-3 write
};

ConvGemm plan_gemm(const ConvParams& p, int nt) {
  ConvGemm g{ConvSizes::of(p)};
  g.row_words = g.taps * g.wg;
  g.mk = select_microkernel(BitOp::Xor);
  g.w64 = (g.row_words + 1) / 2;
  g.n_tiles = (g.og + g.mk.nr - 1) / g.mk.nr;
  // Blocks of up to 8 A tiles, about 8 per thread, handed out dynamically.
  const int64_t mr = g.mk.mr;
  const int64_t tiles_per_block = std::clamp<int64_t>((g.pixels + 8 * nt * mr - 1) / (8 * nt * mr), 1, 8);
  g.block_rows = tiles_per_block * mr;
  g.blocks = (g.pixels + g.block_rows - 1) / g.block_rows;
  g.fill = p.pad_value == 1 ? 0xFFFFFFFFu : 0u;
  g.last = tail_mask(g.cg);
  g.out_ld = p.out_channels;
  return g;
}

// The weight rows of every group, packed once into the micro-kernel's B tiles.
void pack_weight_tiles(const int32_t* wrows, const ConvParams& p, const ConvGemm& g, uint64_t* bp, int nt) {
  const int nr = g.mk.nr;
#pragma omp parallel for num_threads(nt) schedule(static) if (p.groups * g.og * g.row_words > kParallelWords)
  for (int64_t u = 0; u < p.groups * g.n_tiles; ++u) {
    const int64_t grp = u / g.n_tiles, n0 = (u % g.n_tiles) * nr;
    pack_tiles(wrows + (grp * g.og + n0) * g.row_words, g.row_words, std::min<int64_t>(nr, g.og - n0), nr, g.row_words,
               0xFFFFFFFFu, g.w64, bp + u * nr * g.w64);
  }
}

// Pass 1 for one output pixel: its taps over channels [c0, c0 + Cg) into row (row_words
// words, each tap's tail 0); padded[t] = 1 where tap t lies outside the input. Returns
// whether any tap did.
bool gather_pixel(const uint32_t* x, const ConvParams& p, const ConvGemm& g, int64_t pix, int64_t c0, uint32_t* row,
                  uint8_t* padded) {
  const int64_t ow = pix % p.out_w, oh = (pix / p.out_w) % p.out_h;
  const int64_t n = pix / (p.out_w * p.out_h);
  bool any_padded = false;
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dil_h;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dil_w;
      const int64_t t = kh * p.kernel_w + kw;
      uint32_t* d = row + t * g.wg;
      const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
      padded[t] = !inside;
      if (inside) {
        extract_channels(x + ((n * p.in_h + ih) * p.in_w + iw) * g.wx, g.wx, c0, g.cg, g.wg, d);
      } else {
        any_padded = true;
        for (int64_t j = 0; j < g.wg; ++j) d[j] = g.fill;
        d[g.wg - 1] &= g.last;
      }
    }
  }
  return any_padded;
}

// Writes one GEMM row (row_words words, or null for a row of zeros) as row r of the
// block's A tiles: row r % mr of tile r / mr, whose word kk sits at kk * mr.
void store_tile_row(const uint32_t* row, int64_t r, const ConvGemm& g, uint64_t* ap) {
  const int mr = g.mk.mr;
  uint64_t* dst = ap + (r / mr) * mr * g.w64 + r % mr;
  for (int64_t kk = 0; kk < g.w64; ++kk) {
    uint64_t v = 0;
    if (row) std::memcpy(&v, row + 2 * kk, sizeof v);
    dst[kk * mr] = v;
  }
}

// Pass 1 for a block: pixels [r0, r0 + rn) of group grp into A tiles (rows past rn up to a
// whole tile are zero). row is scratch of 2 * w64 words whose last word is 0. Returns
// whether any tap of the block was padded.
bool gather_block(const uint32_t* x, const ConvParams& p, const ConvGemm& g, int64_t grp, int64_t r0, int64_t rn,
                  uint32_t* row, uint8_t* padded, uint64_t* ap) {
  bool any_padded = false;
  for (int64_t r = 0; r < rn; ++r) {
    any_padded |= gather_pixel(x, p, g, r0 + r, grp * g.cg, row, padded + r * g.taps);
    store_tile_row(row, r, g, ap);
  }
  for (int64_t r = rn; r % g.mk.mr != 0; ++r) store_tile_row(nullptr, r, g, ap);
  return any_padded;
}

// Pass 3 (pad_value=0): adds wsum[t] (this group's columns, [tap][out channel] with row
// stride O) to each of the block's rn output rows (stride g.out_ld) for each of its padded taps.
void correct_zero_padding(const uint8_t* padded, const int32_t* wsum_g, int64_t rn, const ConvParams& p,
                          const ConvGemm& g, int32_t* out) {
  for (int64_t r = 0; r < rn; ++r) {
    const uint8_t* pad = padded + r * g.taps;
    int32_t* orow = out + r * g.out_ld;
    for (int64_t t = 0; t < g.taps; ++t) {
      if (!pad[t]) continue;
      const int32_t* ws = wsum_g + t * p.out_channels;
      for (int64_t j = 0; j < g.og; ++j) orow[j] += ws[j];
    }
  }
}

// Passes 1-3 over every (group, pixel block), each block gathered into A tiles, multiplied
// against the group's B tiles while it is in L1, and corrected while its rows are in cache;
// with an epilogue e, the block's int32 results (in a per-thread buffer, g.out_ld = og) then
// go through e into its outputs while still in cache.
void run_blocks(const uint32_t* x, const ConvParams& p, const ConvGemm& g, const uint64_t* bp, const int32_t* wsum,
                int32_t* out, const Epilogue* e, int nt) {
  const int32_t alpha = -2, beta = static_cast<int32_t>(g.taps * g.cg);
  const ValuesFn values = e ? select_epilogue_values() : nullptr;
#pragma omp parallel num_threads(nt)
  {
    static thread_local std::vector<uint64_t> acache;
    static thread_local std::vector<uint32_t> rcache;
    static thread_local std::vector<uint8_t> pcache;
    static thread_local std::vector<int32_t> ocache;
    const ScratchBuffer<uint64_t> apack(acache, g.block_rows * g.w64);
    const ScratchBuffer<uint32_t> row_buf(rcache, 2 * g.w64);
    const ScratchBuffer<uint8_t> pad_buf(pcache, g.block_rows * g.taps);
    const ScratchBuffer<int32_t> block_out(ocache, e ? g.block_rows * g.og : 0);
    uint32_t* const row = row_buf.get();
    row[2 * g.w64 - 1] = 0;  // the odd half-word, when row_words is odd

#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      for (int64_t blk = 0; blk < g.blocks; ++blk) {
        const int64_t r0 = blk * g.block_rows, rn = std::min(g.block_rows, g.pixels - r0);
        const bool any_padded = gather_block(x, p, g, grp, r0, rn, row, pad_buf.get(), apack.get());
        int32_t* o = e ? block_out.get() : out + r0 * p.out_channels + grp * g.og;
        multiply_tiles(g.mk, apack.get(), rn, bp + grp * g.n_tiles * g.mk.nr * g.w64, g.og, g.w64, alpha, beta, o,
                       g.out_ld);
        if (p.pad_value == 0 && any_padded) correct_zero_padding(pad_buf.get(), wsum + grp * g.og, rn, p, g, o);
        if (e) epilogue_block(*e, values, o, g.og, r0, rn, grp * g.og, g.og);
      }
    }
  }
}

// The conv into out (int32, NHWC), or with an epilogue e through e block by block (out unused).
void conv_impl(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
               int num_threads) {
  if (p.batch * p.out_h * p.out_w == 0 || p.out_channels == 0) return;
  if (select_conv_path(p) == ConvPath::Direct) return direct_conv(x, w, p, out, e, num_threads);
  const int nt = sane_threads(num_threads);
  ConvGemm g = plan_gemm(p, nt);
  if (e) g.out_ld = g.og;

  // Weights with each tap's tail masked (only needed when Cg is not a multiple of 32) and,
  // for zero padding, each tap's column sums wsum [tap][o] for pass 3.
  const bool clean_w = g.last != 0xFFFFFFFFu;
  static thread_local std::vector<int32_t> wcache, scache;
  const ScratchBuffer<int32_t> wclean(wcache, clean_w ? p.out_channels * g.row_words : 0);
  const ScratchBuffer<int32_t> wsum(scache, p.pad_value == 0 ? g.taps * p.out_channels : 0);
  if (clean_w || p.pad_value == 0)
    prepare_weights(w, p, g.wg, clean_w ? wclean.get() : nullptr, p.pad_value == 0 ? wsum.get() : nullptr, nt);

  static thread_local std::vector<uint64_t> bcache;
  const ScratchBuffer<uint64_t> bpack(bcache, p.groups * g.n_tiles * g.mk.nr * g.w64);
  pack_weight_tiles(clean_w ? wclean.get() : w, p, g, bpack.get(), nt);
  run_blocks(reinterpret_cast<const uint32_t*>(x), p, g, bpack.get(), wsum.get(), out, e, nt);
}

}  // namespace

void binary_conv2d(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, int num_threads) {
  conv_impl(x, w, p, out, nullptr, num_threads);
}

void binary_conv2d(const int32_t* x, const int32_t* w, const ConvParams& p, const Epilogue& e, int num_threads) {
  if (e.raw_int32()) return binary_conv2d(x, w, p, static_cast<int32_t*>(e.out), num_threads);
  const int64_t pixels = p.batch * p.out_h * p.out_w;
  if (pixels == 0 || p.out_channels == 0) return;
  // Bits need whole words of a row: a block of one group covers them when groups == 1 or a
  // group's channels are a multiple of 32. Then the epilogue runs per block, in cache.
  if (!e.bits_out || p.groups == 1 || p.group_out() % 32 == 0) return conv_impl(x, w, p, nullptr, &e, num_threads);
  static thread_local std::vector<int32_t> ccache;
  const ScratchBuffer<int32_t> acc(ccache, static_cast<size_t>(pixels * p.out_channels));
  binary_conv2d(x, w, p, acc.get(), num_threads);
  apply_epilogue(e, acc.get(), p.out_channels, pixels, p.out_channels, num_threads);
}

}  // namespace bnn::cpu
