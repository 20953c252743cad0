// Direct binary conv2d (conv/direct.h): the logic every ISA shares, templated on a counting
// traits class K of one instruction set (direct_avx2.cpp, direct_avx512.cpp,
// direct_scalar.cpp). Internal to those files.
//
// Layouts (32-bit words; K::kSplit words stored per word: 2 for the AVX2 nibble lookup, which
// keeps each word as its low and high nibbles x & 0x0f0f0f0f, (x >> 4) & 0x0f0f0f0f, and 1
// for the popcount instructions):
// - xs: for each input pixel (batch * in_h * in_w of them, then one more holding the padding
//   value's words), word j as K::kSplit words at xs[kSplit * (pixel * wx + j)], the channel
//   tail masked. A padded tap of a conv with pad_value +-1 reads the padding pixel; with
//   pad_value 0 it is skipped (its contribution is 0).
// - ws: for each group, each chunk of K::kChunk output channels, each tap t and word j of a
//   tap: kRegs registers of K::kLanes words, register kSplit * v + h holding part h of the
//   word for channels chunk * kChunk + kLanes * v + lane; channels past the group's end are 0
//   (their results are dropped).
//
// Per output pixel, the (input word, weight word) pairs of its taps form a list; each chunk of
// channels runs over it (K::count), result = k_valid - 2 * count, k_valid = Cg * (taps
// counted): sum over channels and taps of x * w in +-1 values, as the implicit GEMM computes it.
// Rows of more than kSegmentPairs words are counted a segment at a time over a block's pixels
// (see Segment). The split weights of recent calls are kept (common/prepared_cache.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/bits.h"
#include "common/prepared_cache.h"
#include "conv/direct.h"
#include "gemm/epilogue_cpu.h"
#include "gemm/microkernel.h"

namespace bnn::cpu::direct {

constexpr int64_t kSegmentPairs = 64;  // weight words per segment: 16 KiB of a chunk's weights on every ISA

struct Pair {
  int64_t x;  // index of the pair's input word (its kSplit words) in xs
  int64_t w;  // the weight word's index t * wg + j within a chunk
};

// Sizes of one call.
struct Sizes : ConvSizes {
  int64_t chunks, in_pixels;
  int64_t rows;  // output pixels per block
};

// One output pixel's pairs: xs + base + pairs[k].x is the input word of its pair k, for k < n.
struct PixelRun {
  int64_t base;
  const Pair* pairs;
  int64_t n;
  int32_t kvalid;
};

// A range [lo, hi) of a chunk's weight words (t * wg + j): rows of many words are counted a
// segment at a time over a block's pixels, so that the segment's weights stay in L1 while every
// pixel of the block reads them.
struct Segment {
  int64_t lo, hi;
  int64_t words;  // the chunk's weight words (taps * wg)
  bool whole;     // the segment covers every word (no search for each run's pairs)
  bool first;     // the first segment writes kvalid - 2 * count, the others subtract 2 * count
};

// A run holding a pair for every weight word (an interior pixel, or a border pixel with pad
// value +-1): its pair k reads weight word k.
inline bool full_run(const PixelRun& run, const Segment& seg) { return run.n == seg.words; }

// The pairs [k0, k1) of run r over segment seg (all of them when seg.whole): the run's pairs
// are in weight word order (a border run skips some).
inline void segment_pairs(const PixelRun& run, const Segment& seg, int64_t& k0, int64_t& k1) {
  k0 = 0, k1 = run.n;
  if (seg.whole) return;
  if (full_run(run, seg)) {
    k0 = seg.lo, k1 = seg.hi;
    return;
  }
  const auto by_word = [](const Pair& a, int64_t w) { return a.w < w; };
  k0 = std::lower_bound(run.pairs, run.pairs + run.n, seg.lo, by_word) - run.pairs;
  k1 = std::lower_bound(run.pairs + k0, run.pairs + run.n, seg.hi, by_word) - run.pairs;
}

// Whether the n runs from runs[0] on are full runs of seg over one pair list (interior pixels
// share the list of interior_pairs; a border run padded with +-1 has its own): their pair k
// then reads input word runs[i].base + pairs[k].x and weight word k, so one weight load serves
// all of them.
inline bool shared_full_runs(const PixelRun* runs, int64_t n, const Segment& seg) {
  for (int64_t i = 0; i < n; ++i)
    if (!full_run(runs[i], seg) || runs[i].pairs != runs[0].pairs) return false;
  return true;
}

template <class K>
struct Kernel {
  static constexpr int kRegs = K::kSplit * K::kChunk / K::kLanes;  // registers per weight word

  // xs from x (each pixel's last word masked to C bits) and the padding pixel.
  static void split_input(const uint32_t* x, const ConvParams& p, const Sizes& d, uint32_t* xs, int nt) {
    const uint32_t last = tail_mask(p.in_channels);
    const uint32_t fill = p.pad_value == 1 ? 0xFFFFFFFFu : 0u;
#pragma omp parallel for num_threads(nt) schedule(static) if (d.in_pixels * d.wx > (int64_t(1) << 16))
    for (int64_t px = 0; px <= d.in_pixels; ++px)
      for (int64_t j = 0; j < d.wx; ++j) {
        uint32_t v = px < d.in_pixels ? x[px * d.wx + j] : fill;
        if (j == d.wx - 1) v &= last;
        K::split(v, xs + K::kSplit * (px * d.wx + j), 1);
      }
  }

  // ws from w (each tap's last word masked to Cg bits).
  static void split_weights(const uint32_t* w, const ConvParams& p, const Sizes& d, uint32_t* ws, int nt) {
    const uint32_t last = tail_mask(d.cg);
    const int64_t chunk_words = d.taps * d.wg * kRegs * K::kLanes;
#pragma omp parallel for collapse(2) num_threads(nt) \
    schedule(static) if (p.groups * d.chunks * chunk_words > (int64_t(1) << 17))
    for (int64_t g = 0; g < p.groups; ++g)
      for (int64_t c = 0; c < d.chunks; ++c) {
        uint32_t* dst = ws + (g * d.chunks + c) * chunk_words;
        for (int64_t k = 0; k < d.taps * d.wg; ++k)
          for (int lane = 0; lane < K::kChunk; ++lane) {
            const int64_t o = c * K::kChunk + lane;
            uint32_t v = o < d.og ? w[(g * d.og + o) * d.taps * d.wg + k] : 0u;
            if (k % d.wg == d.wg - 1) v &= last;
            const int64_t reg = K::kSplit * (lane / K::kLanes);
            K::split(v, dst + (k * kRegs + reg) * K::kLanes + lane % K::kLanes, K::kLanes);
          }
      }
  }

  // The pairs of a pixel whose taps all lie inside the input, relative to its first tap's word 0.
  static void interior_pairs(const ConvParams& p, const Sizes& d, Pair* rel) {
    int64_t k = 0;
    for (int64_t kh = 0; kh < p.kernel_h; ++kh)
      for (int64_t kw = 0; kw < p.kernel_w; ++kw)
        for (int64_t j = 0; j < d.wg; ++j, ++k)
          rel[k] = Pair{K::kSplit * ((kh * p.dil_h * p.in_w + kw * p.dil_w) * d.wx + j), k};
  }

  // The run of output pixel (n, oh, ow): the shared interior list rel, or its own list written
  // to own (taps * wg pairs of room) when a tap lies outside the input.
  static PixelRun pixel_run(const ConvParams& p, const Sizes& d, int64_t n, int64_t oh, int64_t ow, const Pair* rel,
                            Pair* own) {
    const int64_t ih0 = oh * p.stride_h - p.pad_h, iw0 = ow * p.stride_w - p.pad_w;
    const int64_t full = d.taps * d.wg;
    if (ih0 >= 0 && iw0 >= 0 && ih0 + (p.kernel_h - 1) * p.dil_h < p.in_h && iw0 + (p.kernel_w - 1) * p.dil_w < p.in_w)
      return PixelRun{K::kSplit * ((n * p.in_h + ih0) * p.in_w + iw0) * d.wx, rel, full,
                      static_cast<int32_t>(d.taps * d.cg)};
    int64_t count = 0, taps = 0;
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t ih = ih0 + kh * p.dil_h;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        const int64_t iw = iw0 + kw * p.dil_w;
        const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
        if (!inside && p.pad_value == 0) continue;
        const int64_t src = inside ? (n * p.in_h + ih) * p.in_w + iw : d.in_pixels;
        const int64_t t = kh * p.kernel_w + kw;
        for (int64_t j = 0; j < d.wg; ++j) own[count++] = Pair{K::kSplit * (src * d.wx + j), t * d.wg + j};
        ++taps;
      }
    }
    return PixelRun{0, own, count, static_cast<int32_t>(taps * d.cg)};
  }

  // Output pixels [r0, r0 + rn): their runs (own: room for rn lists of taps * wg pairs), then
  // every group and chunk of channels over all of them into out (row stride out_channels).
  static void conv_block(const uint32_t* xs, const uint32_t* ws, const ConvParams& p, const Sizes& d, const Pair* rel,
                         int64_t r0, int64_t rn, PixelRun* runs, Pair* own, int32_t* out) {
    int64_t ow = r0 % p.out_w, oh = (r0 / p.out_w) % p.out_h, n = r0 / (p.out_w * p.out_h);
    for (int64_t r = 0; r < rn; ++r) {
      runs[r] = pixel_run(p, d, n, oh, ow, rel, own + r * d.taps * d.wg);
      if (++ow == p.out_w) {
        ow = 0;
        if (++oh == p.out_h) oh = 0, ++n;
      }
    }
    const int64_t words = d.taps * d.wg, chunk_words = words * kRegs * K::kLanes;
    for (int64_t g = 0; g < p.groups; ++g) {
      const uint32_t* xg = xs + K::kSplit * g * d.wg;
      for (int64_t c = 0; c < d.chunks; ++c) {
        const int valid = static_cast<int>(std::min<int64_t>(K::kChunk, d.og - c * K::kChunk));
        for (int64_t lo = 0; lo < words; lo += kSegmentPairs) {
          const Segment seg{lo, std::min(words, lo + kSegmentPairs), words, words <= kSegmentPairs, lo == 0};
          K::count(xg, runs, rn, ws + (g * d.chunks + c) * chunk_words, valid, seg, out + g * d.og + c * K::kChunk,
                   p.out_channels);
        }
      }
    }
  }

  static void run(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                  int num_threads) {
    Sizes d{ConvSizes::of(p)};
    d.chunks = (d.og + K::kChunk - 1) / K::kChunk;
    d.in_pixels = p.batch * p.in_h * p.in_w;
    if (d.pixels == 0 || p.out_channels == 0) return;
    const int nt = sane_threads(num_threads);
    // Blocks of output pixels: an int32 block buffer of about 64 KiB, at least 4 blocks a thread.
    d.rows = std::clamp<int64_t>(16384 / p.out_channels, 1, 64);
    d.rows = std::clamp<int64_t>((d.pixels + 4 * nt - 1) / (4 * nt), 1, d.rows);
    const int64_t blocks = (d.pixels + d.rows - 1) / d.rows;

    static thread_local std::vector<uint32_t> xcache;
    const ScratchBuffer<uint32_t> xs(xcache, K::kSplit * (d.in_pixels + 1) * d.wx);
    split_input(reinterpret_cast<const uint32_t*>(x), p, d, xs.get(), nt);
    // The split weights of the layer's last calls are kept (common/prepared_cache.h).
    static thread_local PreparedCache weights;
    const uint32_t* const ws = weights.get(
        reinterpret_cast<const uint32_t*>(w), static_cast<size_t>(p.out_channels * d.taps * d.wg),
        {p.groups, d.cg, d.og, d.taps}, static_cast<size_t>(p.groups * d.chunks * d.taps * d.wg * kRegs * K::kLanes),
        [&](uint32_t* dst) { split_weights(reinterpret_cast<const uint32_t*>(w), p, d, dst, nt); });
    const ValuesFn values = e ? select_epilogue_values() : nullptr;

    static thread_local std::vector<Pair> relcache;
    const ScratchBuffer<Pair> rel(relcache, d.taps * d.wg);
    interior_pairs(p, d, rel.get());

#pragma omp parallel num_threads(nt)
    {
      static thread_local std::vector<Pair> pcache;
      static thread_local std::vector<PixelRun> rcache;
      static thread_local std::vector<int32_t> ocache;
      const ScratchBuffer<Pair> own(pcache, d.rows * d.taps * d.wg);
      const ScratchBuffer<PixelRun> runs(rcache, d.rows);
      const ScratchBuffer<int32_t> block_out(ocache, e ? d.rows * p.out_channels : 0);
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t r0 = b * d.rows, rn = std::min(d.rows, d.pixels - r0);
        int32_t* o = e ? block_out.get() : out + r0 * p.out_channels;
        conv_block(xs.get(), ws, p, d, rel.get(), r0, rn, runs.get(), own.get(), o);
        if (e) epilogue_block(*e, values, o, p.out_channels, r0, rn, 0, p.out_channels);
      }
    }
  }
};

}  // namespace bnn::cpu::direct
