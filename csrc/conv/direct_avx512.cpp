// Direct binary conv2d on AVX-512 VPOPCNTDQ (conv/direct.h, layout in conv/direct_lanes16.h):
// 16 output channels per register, 64 per chunk; a count is XOR, VPOPCNTD and an add per 512
// bits, in 32-bit lanes (no byte counters to widen). Interior pixels are counted 2 or 4 at a time
// (kLanes16Group), each weight load serving all of them. direct_scalar.cpp runs the same steps
// lane by lane.
#include "common/avx512.h"
#include "conv/direct_lanes16.h"

namespace bnn::cpu {

#ifdef BNN_HAVE_AVX512_INTRINSICS
namespace {

using direct::PixelRun;
using direct::Segment;

// sum[p][v] = popcount(x ^ w) over the pairs [k0, k1) of runs[p], p < P, channel register
// v < NV. kShared: the P runs share one pair list and pair k reads weight word k
// (direct::shared_full_runs), so one weight load serves them all; otherwise P == 1 and the
// pair's weight word is read from the list.
template <int NV, int P, bool kShared>
BNN_TARGET_AVX512_VPOPCNT inline void count_runs(const uint32_t* xs, const PixelRun* runs, int64_t k0, int64_t k1,
                                                 const uint32_t* wchunk, __m512i (*sum)[NV]) {
  static_assert(kShared || P == 1, "only runs over one shared list are counted together");
  const direct::Pair* pairs = runs[0].pairs;
  const uint32_t* x0[P];
  for (int p = 0; p < P; ++p) x0[p] = xs + runs[p].base;
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < NV; ++v) sum[p][v] = _mm512_setzero_si512();
  for (int64_t k = k0; k < k1; ++k) {
    __m512i xv[P];
    for (int p = 0; p < P; ++p) xv[p] = _mm512_set1_epi32(static_cast<int>(x0[p][pairs[k].x]));
    const uint32_t* wp = wchunk + (kShared ? k : pairs[k].w) * direct::kLanes16Chunk;
    for (int v = 0; v < NV; ++v) {
      const __m512i wv = _mm512_loadu_si512(wp + 16 * v);
      for (int p = 0; p < P; ++p)
        sum[p][v] = _mm512_add_epi32(sum[p][v], _mm512_popcnt_epi32(_mm512_xor_si512(xv[p], wv)));
    }
  }
}

// out[p * ld + 16v + lane] = kvalid - 2 * sum (first segment) or -= 2 * sum (later ones), for
// the first `valid` channels of the chunk.
template <int NV, int P>
BNN_TARGET_AVX512_VPOPCNT inline void store_runs(const PixelRun* runs, __m512i (*sum)[NV], int valid,
                                                 const Segment& seg, int32_t* out, int64_t ld) {
  const int tail = valid - 16 * (NV - 1);
  const __mmask16 tail_mask = static_cast<__mmask16>((1u << tail) - 1u);
  for (int p = 0; p < P; ++p) {
    int32_t* o = out + p * ld;
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v < NV - 1 ? static_cast<__mmask16>(0xFFFF) : tail_mask;
      const __m512i base = seg.first ? _mm512_set1_epi32(runs[p].kvalid) : _mm512_maskz_loadu_epi32(m, o + 16 * v);
      _mm512_mask_storeu_epi32(o + 16 * v, m, _mm512_sub_epi32(base, _mm512_add_epi32(sum[p][v], sum[p][v])));
    }
  }
}

// For each of the npix runs r, over its pairs in segment seg: out[r * ld + 16v + lane] as in
// store_runs, NV = ceil(valid / 16). Groups of kLanes16Group<NV> runs over one shared list are
// counted together.
template <int NV>
struct CountAvx512 {
  BNN_TARGET_AVX512_VPOPCNT static void run(const uint32_t* xs, const PixelRun* runs, int64_t npix,
                                            const uint32_t* wchunk, int valid, const Segment& seg, int32_t* out,
                                            int64_t ld) {
    constexpr int P = direct::kLanes16Group<NV>;
    __m512i sum[P][NV];
    for (int64_t r = 0; r < npix;) {
      int64_t k0, k1;
      direct::segment_pairs(runs[r], seg, k0, k1);
      if (r + P <= npix && direct::shared_full_runs(runs + r, P, seg)) {
        count_runs<NV, P, true>(xs, runs + r, k0, k1, wchunk, sum);
        store_runs<NV, P>(runs + r, sum, valid, seg, out + r * ld, ld);
        r += P;
      } else {
        count_runs<NV, 1, false>(xs, runs + r, k0, k1, wchunk, sum);
        store_runs<NV, 1>(runs + r, sum, valid, seg, out + r * ld, ld);
        r += 1;
      }
    }
  }
};

}  // namespace

void direct_conv_avx512(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                        int num_threads) {
  direct::Kernel<direct::Lanes16<CountAvx512>>::run(x, w, p, out, e, num_threads);
}
#else
void direct_conv_avx512(const int32_t*, const int32_t*, const ConvParams&, int32_t*, const Epilogue*, int) {}
#endif

}  // namespace bnn::cpu
