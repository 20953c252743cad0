// Direct binary conv2d without SIMD (conv/direct.h, layout in conv/direct_lanes16.h): the
// AVX-512 kernel's steps (direct_avx512.cpp) with each 16-lane register as a loop over its
// lanes, in a POPCNT-targeted copy (picked when the CPU has the instruction) and a generic one.
#include "conv/direct_lanes16.h"

#if defined(__x86_64__) || defined(_M_X64)
#define BNN_POPCNT_TARGET __attribute__((target("popcnt")))
#else
#define BNN_POPCNT_TARGET
#endif

namespace bnn::cpu {
namespace {

using direct::PixelRun;
using direct::Segment;

// The AVX-512 kernel's count_runs and store_runs for P runs, lane by lane.
template <int NV, int P, bool kShared>
__attribute__((always_inline)) inline void count_runs(const uint32_t* xs, const PixelRun* runs, int64_t k0, int64_t k1,
                                                      const uint32_t* wchunk, const Segment& seg, int valid,
                                                      int32_t* out, int64_t ld) {
  const direct::Pair* pairs = runs[0].pairs;
  int32_t sum[P][16 * NV] = {};
  for (int64_t k = k0; k < k1; ++k) {
    const uint32_t* wp = wchunk + (kShared ? k : pairs[k].w) * direct::kLanes16Chunk;
    for (int p = 0; p < P; ++p) {
      const uint32_t xv = xs[runs[p].base + pairs[k].x];
      for (int l = 0; l < 16 * NV; ++l) sum[p][l] += popcount32(xv ^ wp[l]);
    }
  }
  for (int p = 0; p < P; ++p) {
    int32_t* o = out + p * ld;
    for (int c = 0; c < valid; ++c) o[c] = (seg.first ? runs[p].kvalid : o[c]) - 2 * sum[p][c];
  }
}

template <int NV>
__attribute__((always_inline)) inline void count_body(const uint32_t* xs, const PixelRun* runs, int64_t npix,
                                                      const uint32_t* wchunk, int valid, const Segment& seg,
                                                      int32_t* out, int64_t ld) {
  constexpr int P = direct::kLanes16Group<NV>;
  for (int64_t r = 0; r < npix;) {
    int64_t k0, k1;
    direct::segment_pairs(runs[r], seg, k0, k1);
    if (r + P <= npix && direct::shared_full_runs(runs + r, P, seg)) {
      count_runs<NV, P, true>(xs, runs + r, k0, k1, wchunk, seg, valid, out + r * ld, ld);
      r += P;
    } else {
      count_runs<NV, 1, false>(xs, runs + r, k0, k1, wchunk, seg, valid, out + r * ld, ld);
      r += 1;
    }
  }
}

template <int NV>
struct CountPopcnt {
  BNN_POPCNT_TARGET static void run(const uint32_t* xs, const PixelRun* runs, int64_t npix, const uint32_t* wchunk,
                                    int valid, const Segment& seg, int32_t* out, int64_t ld) {
    count_body<NV>(xs, runs, npix, wchunk, valid, seg, out, ld);
  }
};

template <int NV>
struct CountGeneric {
  static void run(const uint32_t* xs, const PixelRun* runs, int64_t npix, const uint32_t* wchunk, int valid,
                  const Segment& seg, int32_t* out, int64_t ld) {
    count_body<NV>(xs, runs, npix, wchunk, valid, seg, out, ld);
  }
};

}  // namespace

void direct_conv_scalar(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                        int num_threads) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("popcnt"))
    return direct::Kernel<direct::Lanes16<CountPopcnt>>::run(x, w, p, out, e, num_threads);
#endif
  direct::Kernel<direct::Lanes16<CountGeneric>>::run(x, w, p, out, e, num_threads);
}

}  // namespace bnn::cpu
