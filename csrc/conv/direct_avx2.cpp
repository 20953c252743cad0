// Direct binary conv2d on AVX2 (conv/direct.h, shared logic in conv/direct_impl.h): output
// channels along the lanes, 8 per register, operands split into their low and high nibbles once
// per call, so a count costs 2 XOR, 2 lookups and 2 byte adds per 256 bits (against 8
// operations when the nibbles are split in the inner loop). Bytes are counted for up to 31
// pairs (a byte gains at most 4 + 4 per pair) before they are widened into 32-bit lanes.
#include "conv/direct_impl.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNN_HAVE_DIRECT_AVX2 1
#endif

namespace bnn::cpu {

#ifdef BNN_HAVE_DIRECT_AVX2
namespace {

using direct::Pair;
using direct::PixelRun;
using direct::Segment;
using direct::segment_pairs;

constexpr int kRegs = 8;  // registers per weight word: lo and hi of 4 groups of 8 channels
constexpr int64_t kPairsPerFold = 31;

__attribute__((target("avx2"))) inline __m256i count_bytes(__m256i acc, __m256i lut, __m256i x, const uint32_t* w) {
  const __m256i v = _mm256_xor_si256(x, _mm256_load_si256(reinterpret_cast<const __m256i*>(w)));
  return _mm256_add_epi8(acc, _mm256_shuffle_epi8(lut, v));
}

// sum[v] = popcount(x ^ w) over the pairs k0 <= k < k1 of a run, for channel register v < NV.
// kFull: the run's pair k reads weight word k (direct::full_run), so the weights are read in
// order without loading each pair's word index.
template <int NV, bool kFull>
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
      const uint32_t* wp = wchunk + (kFull ? k : pairs[k].w) * kRegs * 8;
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
  for (int64_t r = 0; r < npix; ++r) {
    const PixelRun& run = runs[r];
    int64_t k0, k1;
    segment_pairs(run, seg, k0, k1);
    __m256i sum[NV];
    if (direct::full_run(run, seg))
      count_run<NV, true>(xs + run.base, run.pairs, k0, k1, wchunk, sum);
    else
      count_run<NV, false>(xs + run.base, run.pairs, k0, k1, wchunk, sum);
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

struct Avx2 {
  static constexpr int kSplit = 2, kLanes = 8, kChunk = 32;
  static void split(uint32_t v, uint32_t* out, int64_t stride) {
    out[0] = v & 0x0f0f0f0fu;
    out[stride] = (v >> 4) & 0x0f0f0f0fu;
  }
  static void count(const uint32_t* xs, const PixelRun* runs, int64_t npix, const uint32_t* wchunk, int valid,
                    const Segment& seg, int32_t* out, int64_t ld) {
    using Fn =
        void (*)(const uint32_t*, const PixelRun*, int64_t, const uint32_t*, int, const Segment&, int32_t*, int64_t);
    static constexpr Fn kCount[5] = {nullptr, count_pixels<1>, count_pixels<2>, count_pixels<3>, count_pixels<4>};
    kCount[(valid + 7) / 8](xs, runs, npix, wchunk, valid, seg, out, ld);
  }
};
static_assert(direct::Kernel<Avx2>::kRegs == kRegs);

}  // namespace

void direct_conv_avx2(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                      int num_threads) {
  direct::Kernel<Avx2>::run(x, w, p, out, e, num_threads);
}
#else
void direct_conv_avx2(const int32_t*, const int32_t*, const ConvParams&, int32_t*, const Epilogue*, int) {}
#endif

}  // namespace bnn::cpu
