// Direct binary conv2d on AVX2 (conv/direct.h): output channels along the lanes, operands
// split into nibbles once per call.
//
// Layouts (32-bit words):
// - xs: for each input pixel (batch * in_h * in_w of them, then one more holding the padding
//   value's words), word j as the pair (lo, hi) at xs[2 * (pixel * wx + j)], the channel tail
//   masked. A padded tap of a conv with pad_value +-1 reads the padding pixel; with pad_value 0
//   it is skipped (its contribution is 0).
// - ws: for each group, each chunk of 32 output channels, each tap t and word j of a tap: 8
//   registers, register 2v + h holding half h (0 lo, 1 hi) of the word for channels
//   chunk * 32 + 8v + lane; channels past the group's end are 0 (their results are dropped).
//
// Per output pixel, the (input word, weight word) pairs of its taps form a list; each chunk of
// channels runs over it, counting bytes for up to 31 pairs (a byte gains at most 4 + 4 per pair)
// before widening them into 32-bit lanes. result = k_valid - 2 * count, k_valid = Cg * (taps
// counted): sum over channels and taps of x * w in +-1 values, as the implicit GEMM computes it.
// Rows of more than kSegmentPairs words are counted a segment at a time over a block's pixels
// (see Segment). The split weights of recent calls are kept (common/prepared_cache.h).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/bits.h"
#include "common/cpu_features.h"
#include "common/prepared_cache.h"
#include "conv/direct.h"
#include "gemm/epilogue_cpu.h"
#include "gemm/microkernel.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNN_HAVE_DIRECT_AVX2 1
#endif

namespace bnn::cpu {

#ifdef BNN_HAVE_DIRECT_AVX2
namespace {

constexpr int kChunk = 32;             // output channels per pass over a pixel's pairs
constexpr int kRegs = 2 * kChunk / 8;  // weight registers per pair (lo and hi of 4 groups of 8)
constexpr int64_t kPairsPerFold = 31;
constexpr int64_t kSegmentPairs = 64;  // weight words per segment: 16 KiB of a chunk's weights

struct Pair {
  int64_t x;  // index of the pair's (lo, hi) in xs
  int64_t w;  // the weight word's index t * wg + j within a chunk
};

// Sizes of one call.
struct Direct : ConvSizes {
  int64_t chunks, in_pixels;
  int64_t rows;  // output pixels per block
};

inline uint32_t lo_nibbles(uint32_t v) { return v & 0x0f0f0f0fu; }
inline uint32_t hi_nibbles(uint32_t v) { return (v >> 4) & 0x0f0f0f0fu; }

// xs from x (each pixel's last word masked to C bits) and the padding pixel.
void split_input(const uint32_t* x, const ConvParams& p, const Direct& d, uint32_t* xs, int nt) {
  const uint32_t last = tail_mask(p.in_channels);
  const uint32_t fill = p.pad_value == 1 ? 0xFFFFFFFFu : 0u;
#pragma omp parallel for num_threads(nt) schedule(static) if (d.in_pixels * d.wx > (int64_t(1) << 16))
  for (int64_t px = 0; px <= d.in_pixels; ++px) {
    for (int64_t j = 0; j < d.wx; ++j) {
      uint32_t v = px < d.in_pixels ? x[px * d.wx + j] : fill;
      if (j == d.wx - 1) v &= last;
      xs[2 * (px * d.wx + j)] = lo_nibbles(v);
      xs[2 * (px * d.wx + j) + 1] = hi_nibbles(v);
    }
  }
}

// ws from w (each tap's last word masked to Cg bits).
void split_weights(const uint32_t* w, const ConvParams& p, const Direct& d, uint32_t* ws, int nt) {
  const uint32_t last = tail_mask(d.cg);
  const int64_t chunk_words = d.taps * d.wg * kRegs * 8;
#pragma omp parallel for collapse(2) num_threads(nt) \
    schedule(static) if (p.groups * d.chunks * chunk_words > (int64_t(1) << 17))
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t c = 0; c < d.chunks; ++c) {
      uint32_t* dst = ws + (g * d.chunks + c) * chunk_words;
      for (int64_t k = 0; k < d.taps * d.wg; ++k)
        for (int lane = 0; lane < kChunk; ++lane) {
          const int64_t o = c * kChunk + lane;
          uint32_t v = o < d.og ? w[(g * d.og + o) * d.taps * d.wg + k] : 0u;
          if (k % d.wg == d.wg - 1) v &= last;
          const int64_t at = k * kRegs * 8 + (lane / 8) * 16 + lane % 8;
          dst[at] = lo_nibbles(v);
          dst[at + 8] = hi_nibbles(v);
        }
    }
}

// One output pixel's pairs: xs + base + pairs[k].x is the (lo, hi) of its pair k, for k < n.
struct PixelRun {
  int64_t base;
  const Pair* pairs;
  int64_t n;
  int32_t kvalid;
};

// The pairs of a pixel whose taps all lie inside the input, relative to its first tap's word 0.
void interior_pairs(const ConvParams& p, const Direct& d, Pair* rel) {
  int64_t k = 0;
  for (int64_t kh = 0; kh < p.kernel_h; ++kh)
    for (int64_t kw = 0; kw < p.kernel_w; ++kw)
      for (int64_t j = 0; j < d.wg; ++j, ++k) rel[k] = Pair{2 * ((kh * p.dil_h * p.in_w + kw * p.dil_w) * d.wx + j), k};
}

// The run of output pixel (n, oh, ow): the shared interior list rel, or its own list written
// to own (taps * wg pairs of room) when a tap lies outside the input.
PixelRun pixel_run(const ConvParams& p, const Direct& d, int64_t n, int64_t oh, int64_t ow, const Pair* rel,
                   Pair* own) {
  const int64_t ih0 = oh * p.stride_h - p.pad_h, iw0 = ow * p.stride_w - p.pad_w;
  const int64_t full = d.taps * d.wg;
  if (ih0 >= 0 && iw0 >= 0 && ih0 + (p.kernel_h - 1) * p.dil_h < p.in_h && iw0 + (p.kernel_w - 1) * p.dil_w < p.in_w)
    return PixelRun{2 * ((n * p.in_h + ih0) * p.in_w + iw0) * d.wx, rel, full, static_cast<int32_t>(d.taps * d.cg)};
  int64_t count = 0, taps = 0;
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const int64_t ih = ih0 + kh * p.dil_h;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t iw = iw0 + kw * p.dil_w;
      const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
      if (!inside && p.pad_value == 0) continue;
      const int64_t src = inside ? (n * p.in_h + ih) * p.in_w + iw : d.in_pixels;
      const int64_t t = kh * p.kernel_w + kw;
      for (int64_t j = 0; j < d.wg; ++j) own[count++] = Pair{2 * (src * d.wx + j), t * d.wg + j};
      ++taps;
    }
  }
  return PixelRun{0, own, count, static_cast<int32_t>(taps * d.cg)};
}

__attribute__((target("avx2"))) inline __m256i count_bytes(__m256i acc, __m256i lut, __m256i x, const uint32_t* w) {
  const __m256i v = _mm256_xor_si256(x, _mm256_load_si256(reinterpret_cast<const __m256i*>(w)));
  return _mm256_add_epi8(acc, _mm256_shuffle_epi8(lut, v));
}

// A range [lo, hi) of a chunk's weight words (t * wg + j): rows of many words are counted a
// segment at a time over a block's pixels, so that the segment's weights (kSegmentPairs * 256
// bytes) stay in L1 while every pixel of the block reads them.
struct Segment {
  int64_t lo, hi;
  bool whole;  // the segment covers every word (no search for each run's pairs)
  bool first;  // the first segment writes kvalid - 2 * count, the others subtract 2 * count
};

// sum[v] = popcount(x ^ w) over the pairs k0 <= k < k1 of a run, for channel register v < NV.
template <int NV>
__attribute__((target("avx2"))) inline void count_run(const uint32_t* x0, const Pair* pairs, int64_t k0, int64_t k1,
                                                      const uint32_t* wchunk, __m256i* sum) {
  const __m256i lut =
      _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int v = 0; v < NV; ++v) sum[v] = _mm256_setzero_si256();
  for (int64_t s = k0; s < k1; s += kPairsPerFold) {
    const int64_t e = std::min(k1, s + kPairsPerFold);
    __m256i bytes[NV];
    for (int v = 0; v < NV; ++v) bytes[v] = _mm256_setzero_si256();
    for (int64_t k = s; k < e; ++k) {
      const uint32_t* xp = x0 + pairs[k].x;
      const __m256i lo = _mm256_set1_epi32(static_cast<int>(xp[0]));
      const __m256i hi = _mm256_set1_epi32(static_cast<int>(xp[1]));
      const uint32_t* wp = wchunk + pairs[k].w * kRegs * 8;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        bytes[v] = count_bytes(bytes[v], lut, lo, wp + 16 * v);
        bytes[v] = count_bytes(bytes[v], lut, hi, wp + 16 * v + 8);
      }
    }
    for (int v = 0; v < NV; ++v)
      sum[v] = _mm256_add_epi32(sum[v], _mm256_madd_epi16(_mm256_maddubs_epi16(bytes[v], ones8), ones16));
  }
}

// For each of the npix runs r, over its pairs in segment seg: out[r * ld + 8v + lane] =
// kvalid - 2 * count (first segment) or -= 2 * count (later ones), for the first `valid`
// channels of the chunk (NV = ceil(valid / 8)).
template <int NV>
__attribute__((target("avx2"))) void count_pixels(const uint32_t* xs, const PixelRun* runs, int64_t npix,
                                                  const uint32_t* wchunk, int valid, const Segment& seg, int32_t* out,
                                                  int64_t ld) {
  const int tail = valid - 8 * (NV - 1);
  const __m256i tail_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const auto by_word = [](const Pair& a, int64_t w) { return a.w < w; };
  for (int64_t r = 0; r < npix; ++r) {
    const PixelRun& run = runs[r];
    int64_t k0 = 0, k1 = run.n;
    if (!seg.whole) {  // the run's pairs are in weight word order (a border run skips some)
      k0 = std::lower_bound(run.pairs, run.pairs + run.n, seg.lo, by_word) - run.pairs;
      k1 = std::lower_bound(run.pairs + k0, run.pairs + run.n, seg.hi, by_word) - run.pairs;
    }
    __m256i sum[NV];
    count_run<NV>(xs + run.base, run.pairs, k0, k1, wchunk, sum);
    int32_t* o = out + r * ld;
    for (int v = 0; v < NV; ++v) {
      const bool full = v < NV - 1 || tail == 8;
      __m256i* at = reinterpret_cast<__m256i*>(o + 8 * v);
      const __m256i base = seg.first ? _mm256_set1_epi32(run.kvalid)
                           : full    ? _mm256_loadu_si256(at)
                                     : _mm256_maskload_epi32(o + 8 * v, tail_mask);
      const __m256i res = _mm256_sub_epi32(base, _mm256_add_epi32(sum[v], sum[v]));
      if (full)
        _mm256_storeu_si256(at, res);
      else
        _mm256_maskstore_epi32(o + 8 * v, tail_mask, res);
    }
  }
}

using CountFn = void (*)(const uint32_t*, const PixelRun*, int64_t, const uint32_t*, int, const Segment&, int32_t*,
                         int64_t);
constexpr CountFn kCount[5] = {nullptr, count_pixels<1>, count_pixels<2>, count_pixels<3>, count_pixels<4>};

// Output pixels [r0, r0 + rn): their runs (own: room for rn lists of taps * wg pairs), then
// every group and chunk of channels over all of them into out (row stride out_channels).
void conv_block(const uint32_t* xs, const uint32_t* ws, const ConvParams& p, const Direct& d, const Pair* rel,
                int64_t r0, int64_t rn, PixelRun* runs, Pair* own, int32_t* out) {
  int64_t ow = r0 % p.out_w, oh = (r0 / p.out_w) % p.out_h, n = r0 / (p.out_w * p.out_h);
  for (int64_t r = 0; r < rn; ++r) {
    runs[r] = pixel_run(p, d, n, oh, ow, rel, own + r * d.taps * d.wg);
    if (++ow == p.out_w) {
      ow = 0;
      if (++oh == p.out_h) oh = 0, ++n;
    }
  }
  const int64_t words = d.taps * d.wg, chunk_words = words * kRegs * 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const uint32_t* xg = xs + 2 * g * d.wg;
    for (int64_t c = 0; c < d.chunks; ++c) {
      const int valid = static_cast<int>(std::min<int64_t>(kChunk, d.og - c * kChunk));
      for (int64_t lo = 0; lo < words; lo += kSegmentPairs) {
        const Segment seg{lo, std::min(words, lo + kSegmentPairs), words <= kSegmentPairs, lo == 0};
        kCount[(valid + 7) / 8](xg, runs, rn, ws + (g * d.chunks + c) * chunk_words, valid, seg,
                                out + g * d.og + c * kChunk, p.out_channels);
      }
    }
  }
}

}  // namespace

void direct_conv(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                 int num_threads) {
  Direct d{ConvSizes::of(p)};
  d.chunks = (d.og + kChunk - 1) / kChunk;
  d.in_pixels = p.batch * p.in_h * p.in_w;
  if (d.pixels == 0 || p.out_channels == 0) return;
  const int nt = sane_threads(num_threads);
  // Blocks of output pixels: an int32 block buffer of about 64 KiB, at least 4 blocks a thread.
  d.rows = std::clamp<int64_t>(16384 / p.out_channels, 1, 64);
  d.rows = std::clamp<int64_t>((d.pixels + 4 * nt - 1) / (4 * nt), 1, d.rows);
  const int64_t blocks = (d.pixels + d.rows - 1) / d.rows;

  static thread_local std::vector<uint32_t> xcache;
  const ScratchBuffer<uint32_t> xs(xcache, 2 * (d.in_pixels + 1) * d.wx);
  split_input(reinterpret_cast<const uint32_t*>(x), p, d, xs.get(), nt);
  // The split weights of the layer's last calls are kept (common/prepared_cache.h).
  static thread_local PreparedCache weights;
  const uint32_t* const ws =
      weights.get(reinterpret_cast<const uint32_t*>(w), static_cast<size_t>(p.out_channels * d.taps * d.wg),
                  {p.groups, d.cg, d.og, d.taps}, static_cast<size_t>(p.groups * d.chunks * d.taps * d.wg * kRegs * 8),
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

ConvPath select_conv_path(const ConvParams& p) {
  const char* v = std::getenv("BNN_KERNELS_CONV_PATH");
  if (v != nullptr && std::strcmp(v, "gemm") == 0) return ConvPath::Gemm;
  // The direct kernel is the AVX2 path: where the GEMM runs its AVX-512 VPOPCNTDQ kernel, or
  // the scalar one, the implicit GEMM stays; groups must start at whole words.
  if (std::strcmp(select_microkernel(BitOp::Xor).name, "avx2") != 0) return ConvPath::Gemm;
  if (p.groups != 1 && p.group_channels() % 32 != 0) return ConvPath::Gemm;
  return ConvPath::Direct;
}
#else
void direct_conv(const int32_t*, const int32_t*, const ConvParams&, int32_t*, const Epilogue*, int) {}
ConvPath select_conv_path(const ConvParams&) { return ConvPath::Gemm; }
#endif

const char* conv_path_name(const ConvParams& p) {
  return select_conv_path(p) == ConvPath::Direct ? "direct-avx2" : select_microkernel(BitOp::Xor).name;
}

}  // namespace bnn::cpu
