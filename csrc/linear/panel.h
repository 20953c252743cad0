// The panel kernel of binary_weight_linear and binary_weight_conv2d (internal, float32 AVX2 and
// AVX-512):
// outer products of rows of x (or patch rows) with panels of kPanel output channels whose
// weights are +-1.0f, read from transposed weight bits.
//
// Order: each output is one sequential sum over k = 0 .. K-1 from +0, as the scalar path:
// fma(x, +-1, s) rounds s +- x exactly as the scalar add does (x * +-1 is exact), signed
// zeros included. The multiplier and the bias are applied after the sum, each rounded once.
// So this path gives the scalar path's results bit for bit, for any blocking (a NaN output is
// NaN on both paths, its sign and payload may differ: the scalar path negates x, the FMA
// multiplies by -1).
#pragma once

#include <cstdint>

namespace bnn::cpu {

constexpr int kPanel = 16;         // output channels per panel (two AVX2 registers, one AVX-512)
constexpr int kPanelRows = 6;      // AVX2: rows per register tile (12 accumulators)
constexpr int kPanelRows512 = 12;  // AVX-512: rows per register tile (24 accumulators)

inline int64_t panels_for(int64_t og) { return (og + kPanel - 1) / kPanel; }

// True when panel_bits and panel_rows_avx2 may run: AVX2 with FMA, allowed by the ISA cap.
bool use_panel_avx2();
// True when panel_rows_avx512 may run (AVX-512F allowed by the ISA cap; panel_bits too).
bool use_panel_avx512();
// True when panel_bits and a panel kernel run (either kernel).
inline bool use_panels() { return use_panel_avx512() || use_panel_avx2(); }

// The panel bits of packed weight rows (groups * og rows of `words` = ceil(K / 32) words; bits
// past K are ignored): bit j of bits[(g * panels + p) * K + k] is the bit at column k of row
// g * og + p * kPanel + j, 0 for j past the group's channels. bits holds
// groups * panels_for(og) * K entries. AVX2 (a 16 x 32 bit transpose per word of a panel); up
// to nt threads.
void panel_bits(const int32_t* rows, int64_t groups, int64_t og, int64_t K, int64_t words, uint16_t* bits, int nt);

// out[r * ldo + j] for r < rn, j < og: the rows a (row stride K) times panels_for(og)
// consecutive panels (bits), then * mult[j] and + bias[j] where given. Single-threaded.
void panel_rows_avx2(const float* a, int64_t rn, int64_t K, const uint16_t* bits, int64_t og, const float* mult,
                     const float* bias, float* out, int64_t ldo);
// The same with 16-lane registers: the same results, bit for bit.
void panel_rows_avx512(const float* a, int64_t rn, int64_t K, const uint16_t* bits, int64_t og, const float* mult,
                       const float* bias, float* out, int64_t ldo);
// The panel kernel of the ISA in effect: panel_rows_avx512 where use_panel_avx512(), else
// panel_rows_avx2. Chosen once per op call (the ISA cap is read at each call), not per block.
using PanelRowsFn = void (*)(const float*, int64_t, int64_t, const uint16_t*, int64_t, const float*, const float*,
                             float*, int64_t);
inline PanelRowsFn select_panel_rows() { return use_panel_avx512() ? panel_rows_avx512 : panel_rows_avx2; }

// The driver both kernels share: row tiles of at most max_rows rows over the panels, each
// tile of mr rows running tiles[mr - 1] (one panel) or wide_tiles[mr - 1] (wide[mr - 1]
// panels at a time, while that many remain).
using PanelTile = void (*)(const float*, int64_t, const uint16_t*, const float*, const float*, float*, int64_t, int);
inline void drive_panel_tiles(const PanelTile* tiles, const PanelTile* wide_tiles, const int* wide, int max_rows,
                              const float* a, int64_t rn, int64_t K, const uint16_t* bits, int64_t og,
                              const float* mult, const float* bias, float* out, int64_t ldo) {
  const int64_t panels = panels_for(og);
  for (int64_t r0 = 0; r0 < rn; r0 += max_rows) {
    const int64_t mr = rn - r0 < max_rows ? rn - r0 : max_rows, w = wide[mr - 1];
    for (int64_t p = 0; p < panels;) {
      const int64_t np = p + w <= panels ? w : 1, c0 = p * kPanel;
      const PanelTile run = np == 1 ? tiles[mr - 1] : wide_tiles[mr - 1];
      const int64_t n = np * kPanel < og - c0 ? np * kPanel : og - c0;
      run(a + r0 * K, K, bits + p * K, mult ? mult + c0 : nullptr, bias ? bias + c0 : nullptr, out + r0 * ldo + c0, ldo,
          static_cast<int>(n));
      p += np;
    }
  }
}

}  // namespace bnn::cpu
