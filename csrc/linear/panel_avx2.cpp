// The AVX2 panel kernel (panel.h) of binary_weight_conv2d and binary_weight_linear: a tile of
// kPanelRows rows by kPanel output channels keeps 12 float accumulators; per column k it loads
// the panel's 16 weight bits, turns each byte into eight +-1.0f through a 256-entry table,
// broadcasts one x per row and issues 12 FMAs (8 MACs each). Tiles of fewer rows span several
// panels. Rows outside the tile, and channels past the last panel's, are never stored.
#include "linear/panel.h"

#include <algorithm>

#include "common/cpu_features.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace bnn::cpu {

#if defined(__x86_64__)

bool use_panel_avx2() { return use_avx2() && __builtin_cpu_supports("fma"); }

namespace {

// Eight +-1.0f per weight byte: lane j is +1 where bit j is set.
struct PlusMinusOne {
  alignas(32) float v[256][8] = {};
  constexpr PlusMinusOne() {
    for (int b = 0; b < 256; ++b)
      for (int j = 0; j < 8; ++j) v[b][j] = ((b >> j) & 1) ? 1.0f : -1.0f;
  }
};
constexpr PlusMinusOne kSigns;

// Columns 32 * i .. 32 * i + nb - 1 of the n <= kPanel rows r[j * words] into dst[0 .. nb): bit j
// of dst[b] is bit b of row j's word i. Each row's word sits in a lane and moves left one bit per
// step, so that bit b reaches the sign bit, which movemask collects.
__attribute__((target("avx2"))) void transpose_word(const uint32_t* r, int64_t words, int n, int64_t i, int nb,
                                                    uint16_t* dst) {
  alignas(32) uint32_t col[kPanel] = {};
  for (int j = 0; j < n; ++j) col[j] = r[j * words + i];
  __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(col));
  __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(col + 8));
  lo = _mm256_sll_epi32(lo, _mm_cvtsi32_si128(32 - nb));  // bit nb - 1 to the sign bit
  hi = _mm256_sll_epi32(hi, _mm_cvtsi32_si128(32 - nb));
  for (int b = nb - 1; b >= 0; --b) {
    const int m = _mm256_movemask_ps(_mm256_castsi256_ps(lo)) | (_mm256_movemask_ps(_mm256_castsi256_ps(hi)) << 8);
    dst[b] = static_cast<uint16_t>(m);
    lo = _mm256_slli_epi32(lo, 1);
    hi = _mm256_slli_epi32(hi, 1);
  }
}

// Lanes [0, n) of the 16 lanes of two registers.
__attribute__((target("avx2"))) inline void lane_masks(int n, __m256i& lo, __m256i& hi) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
  hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), idx);
}

// Applies multiplier and bias (where given) to a row's two registers and stores its n lanes.
__attribute__((target("avx2"))) inline void store_row(__m256 s0, __m256 s1, const float* mult, const float* bias,
                                                      float* out, int n, __m256i lo, __m256i hi) {
  if (mult) {
    s0 = _mm256_mul_ps(s0, _mm256_maskload_ps(mult, lo));
    s1 = _mm256_mul_ps(s1, _mm256_maskload_ps(mult + 8, hi));
  }
  if (bias) {
    s0 = _mm256_add_ps(s0, _mm256_maskload_ps(bias, lo));
    s1 = _mm256_add_ps(s1, _mm256_maskload_ps(bias + 8, hi));
  }
  if (n == kPanel) {
    _mm256_storeu_ps(out, s0);
    _mm256_storeu_ps(out + 8, s1);
  } else {
    _mm256_maskstore_ps(out, lo, s0);
    _mm256_maskstore_ps(out + 8, hi, s1);
  }
}

// MR rows of a (row stride K) times NP consecutive panels (panel q's bits at bits + q * K): the
// first n channels (1 .. NP * kPanel) stored at out (row stride ldo).
template <int MR, int NP>
__attribute__((target("avx2,fma"))) void tile(const float* a, int64_t K, const uint16_t* bits, const float* mult,
                                              const float* bias, float* out, int64_t ldo, int n) {
  __m256 acc[MR][2 * NP];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) {
      const unsigned b = bits[q * K + k];
      const __m256 w0 = _mm256_load_ps(kSigns.v[b & 255u]);
      const __m256 w1 = _mm256_load_ps(kSigns.v[b >> 8]);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 x = _mm256_broadcast_ss(a + i * K + k);
        acc[i][2 * q] = _mm256_fmadd_ps(x, w0, acc[i][2 * q]);
        acc[i][2 * q + 1] = _mm256_fmadd_ps(x, w1, acc[i][2 * q + 1]);
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < NP; ++q) {
    const int nq = std::min(n - q * kPanel, kPanel), c0 = q * kPanel;  // >= 1: the tile's panels are all used
    __m256i lo, hi;
    lane_masks(nq, lo, hi);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
      store_row(acc[i][2 * q], acc[i][2 * q + 1], mult ? mult + c0 : nullptr, bias ? bias + c0 : nullptr,
                out + i * ldo + c0, nq, lo, hi);
  }
}

using Tile = PanelTile;
// By rows in the tile (1 .. kPanelRows): one panel at a time, and kWide[r] panels at a time
// (fewer rows leave registers for more accumulator chains: at most 12 accumulators).
constexpr Tile kTiles[kPanelRows] = {tile<1, 1>, tile<2, 1>, tile<3, 1>, tile<4, 1>, tile<5, 1>, tile<6, 1>};
constexpr int kWide[kPanelRows] = {4, 3, 2, 1, 1, 1};
constexpr Tile kWideTiles[kPanelRows] = {tile<1, 4>, tile<2, 3>, tile<3, 2>, tile<4, 1>, tile<5, 1>, tile<6, 1>};

}  // namespace

void panel_bits(const int32_t* rows, int64_t groups, int64_t og, int64_t K, int64_t words, uint16_t* bits, int nt) {
  const int64_t panels = panels_for(og);
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if (groups * og * K > (int64_t(1) << 20))
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t p = 0; p < panels; ++p) {
      const uint32_t* r = reinterpret_cast<const uint32_t*>(rows) + (g * og + p * kPanel) * words;
      const int n = static_cast<int>(std::min<int64_t>(kPanel, og - p * kPanel));
      uint16_t* dst = bits + (g * panels + p) * K;
      for (int64_t i = 0; 32 * i < K; ++i)
        transpose_word(r, words, n, i, static_cast<int>(std::min<int64_t>(32, K - 32 * i)), dst + 32 * i);
    }
  }
}

void panel_rows_avx2(const float* a, int64_t rn, int64_t K, const uint16_t* bits, int64_t og, const float* mult,
                     const float* bias, float* out, int64_t ldo) {
  drive_panel_tiles(kTiles, kWideTiles, kWide, kPanelRows, a, rn, K, bits, og, mult, bias, out, ldo);
}

#else

bool use_panel_avx2() { return false; }
void panel_bits(const int32_t*, int64_t, int64_t, int64_t, int64_t, uint16_t*, int) {}
void panel_rows_avx2(const float*, int64_t, int64_t, const uint16_t*, int64_t, const float*, const float*, float*,
                     int64_t) {}

#endif

}  // namespace bnn::cpu
