// Direct binary conv2d on AVX-512 VPOPCNTDQ (conv/direct.h, layout in conv/direct_lanes16.h):
// 16 output channels per register, 64 per chunk; a count is XOR, VPOPCNTD and an add per 512
// bits, in 32-bit lanes (no byte counters to widen). direct_scalar.cpp runs the same steps lane
// by lane.
#include "common/avx512.h"
#include "conv/direct_lanes16.h"

namespace bnn::cpu {

#ifdef BNN_HAVE_AVX512_INTRINSICS
namespace {

using direct::PixelRun;
using direct::Segment;

// For each of the npix runs r, over its pairs in segment seg: out[r * ld + 16v + lane] =
// kvalid - 2 * count (first segment) or -= 2 * count (later ones), for the first `valid`
// channels of the chunk (NV = ceil(valid / 16)).
template <int NV>
struct CountAvx512 {
  BNN_TARGET_AVX512_VPOPCNT static void run(const uint32_t* xs, const PixelRun* runs, int64_t npix,
                                            const uint32_t* wchunk, int valid, const Segment& seg, int32_t* out,
                                            int64_t ld) {
    const int tail = valid - 16 * (NV - 1);
    const __mmask16 tail_mask = static_cast<__mmask16>((1u << tail) - 1u);
    for (int64_t r = 0; r < npix; ++r) {
      const PixelRun& run = runs[r];
      int64_t k0, k1;
      direct::segment_pairs(run, seg, k0, k1);
      __m512i sum[NV];
      for (int v = 0; v < NV; ++v) sum[v] = _mm512_setzero_si512();
      const uint32_t* x0 = xs + run.base;
      for (int64_t k = k0; k < k1; ++k) {
        const __m512i xv = _mm512_set1_epi32(static_cast<int>(x0[run.pairs[k].x]));
        const uint32_t* wp = wchunk + run.pairs[k].w * direct::kLanes16Chunk;
        for (int v = 0; v < NV; ++v)
          sum[v] = _mm512_add_epi32(sum[v], _mm512_popcnt_epi32(_mm512_xor_si512(xv, _mm512_loadu_si512(wp + 16 * v))));
      }
      int32_t* o = out + r * ld;
      for (int v = 0; v < NV; ++v) {
        const __mmask16 m = v < NV - 1 ? static_cast<__mmask16>(0xFFFF) : tail_mask;
        const __m512i base = seg.first ? _mm512_set1_epi32(run.kvalid) : _mm512_maskz_loadu_epi32(m, o + 16 * v);
        _mm512_mask_storeu_epi32(o + 16 * v, m, _mm512_sub_epi32(base, _mm512_add_epi32(sum[v], sum[v])));
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
