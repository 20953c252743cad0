// The panel kernel of binary_weight_linear and binary_weight_conv2d (internal, float32 AVX2):
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

constexpr int kPanel = 16;     // output channels per panel (two AVX2 registers)
constexpr int kPanelRows = 6;  // rows per register tile (12 accumulators)

inline int64_t panels_for(int64_t og) { return (og + kPanel - 1) / kPanel; }

// True when panel_bits and panel_rows_avx2 may run: AVX2 with FMA, allowed by the ISA cap.
bool use_panel_avx2();

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

}  // namespace bnn::cpu
