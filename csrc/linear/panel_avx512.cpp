// The AVX-512 panel kernel (panel.h) of binary_weight_conv2d and binary_weight_linear: a panel's
// 16 weight bits of column k are one write mask, which blends sixteen +-1.0f into one register;
// each row of the tile broadcasts its x and issues one FMA per panel (16 MACs). A tile of
// 1 .. kPanelRows512 rows spans as many panels as keep at most 24 accumulators in the 32
// registers. Rows outside the tile, and channels past the last panel's, are never stored.
#include <algorithm>

#include "common/avx512.h"
#include "common/cpu_features.h"
#include "linear/panel.h"

#ifdef BNN_HAVE_AVX512_INTRINSICS

// GCC 12 warns about _mm*_undefined_* inside its own AVX-512 headers when they are inlined
// into target("avx512f") functions: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace bnn::cpu {

bool use_panel_avx512() { return use_avx512(); }

namespace {

// Applies multiplier and bias (where given) to a row's register and stores its lanes in m.
BNN_TARGET_AVX512F inline void store_row(__m512 s, const float* mult, const float* bias, float* out, __mmask16 m) {
  if (mult) s = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, mult));
  if (bias) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, bias));
  _mm512_mask_storeu_ps(out, m, s);
}

// MR rows of a (row stride K) times NP consecutive panels (panel q's bits at bits + q * K): the
// first n channels (1 .. NP * kPanel) stored at out (row stride ldo).
template <int MR, int NP>
BNN_TARGET_AVX512F void tile(const float* a, int64_t K, const uint16_t* bits, const float* mult, const float* bias,
                             float* out, int64_t ldo, int n) {
  __m512 acc[MR][NP];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) acc[i][q] = _mm512_setzero_ps();
  const __m512 plus = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
  for (int64_t k = 0; k < K; ++k) {
    __m512 w[NP];
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) w[q] = _mm512_mask_blend_ps(static_cast<__mmask16>(bits[q * K + k]), minus, plus);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 x = _mm512_set1_ps(a[i * K + k]);
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) acc[i][q] = _mm512_fmadd_ps(x, w[q], acc[i][q]);
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < NP; ++q) {
    const int nq = std::min(n - q * kPanel, kPanel), c0 = q * kPanel;  // >= 1: the tile's panels are all used
    const auto m = static_cast<__mmask16>((1u << nq) - 1u);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
      store_row(acc[i][q], mult ? mult + c0 : nullptr, bias ? bias + c0 : nullptr, out + i * ldo + c0, m);
  }
}

using Tile = PanelTile;
// By rows in the tile (1 .. kPanelRows512): one panel at a time, and kWide[r] panels at a time
// (at most 24 accumulators).
constexpr Tile kTiles[kPanelRows512] = {tile<1, 1>, tile<2, 1>, tile<3, 1>, tile<4, 1>,  tile<5, 1>,  tile<6, 1>,
                                        tile<7, 1>, tile<8, 1>, tile<9, 1>, tile<10, 1>, tile<11, 1>, tile<12, 1>};
constexpr int kWide[kPanelRows512] = {4, 4, 4, 4, 4, 4, 3, 3, 2, 2, 2, 2};
constexpr Tile kWideTiles[kPanelRows512] = {tile<1, 4>, tile<2, 4>, tile<3, 4>, tile<4, 4>,  tile<5, 4>,  tile<6, 4>,
                                            tile<7, 3>, tile<8, 3>, tile<9, 2>, tile<10, 2>, tile<11, 2>, tile<12, 2>};

}  // namespace

void panel_rows_avx512(const float* a, int64_t rn, int64_t K, const uint16_t* bits, int64_t og, const float* mult,
                       const float* bias, float* out, int64_t ldo) {
  drive_panel_tiles(kTiles, kWideTiles, kWide, kPanelRows512, a, rn, K, bits, og, mult, bias, out, ldo);
}

}  // namespace bnn::cpu

#else

namespace bnn::cpu {
bool use_panel_avx512() { return false; }
void panel_rows_avx512(const float*, int64_t, int64_t, const uint16_t*, int64_t, const float*, const float*, float*,
                       int64_t) {}
}  // namespace bnn::cpu

#endif
