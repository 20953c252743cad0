"""Mutants of binary_weight_linear's CPU paths, for plant_cpu_bugs.py: the scalar loop and its
epilogue, the float32 AVX2 panel driver (csrc/linear/binary_weight_linear_cpu.cpp), the panel
kernel's transposed bits and wide tiles (csrc/linear/panel_avx2.cpp), and the AVX-512 panel
kernel (csrc/linear/panel_avx512.cpp).
Entries: (name, file, original snippet, replacement, test files[, why it is equivalent])."""

LC = "csrc/linear/binary_weight_linear_cpu.cpp"
PA, PB = "csrc/linear/panel_avx2.cpp", "csrc/linear/panel_avx512.cpp"
LINEAR = ["tests/ops/test_linear_edges.py", "tests/ops/test_linear.py"]

# fmt: off
LINEAR_MUTANTS = [
    # ---- scalar ----
    ("linear_dropped_bias", LC, "  if (bias) dot += bias[n];\n", "", LINEAR),
    ("linear_dropped_scale", LC, "  if (scale) dot *= scale[n];\n", "", LINEAR),
    ("linear_scalar_last_column", LC,
      "for (int64_t c = k0; c < K; ++c)", "for (int64_t c = k0; c + 1 < K; ++c)", LINEAR),
    # ---- float32 AVX2: the panel driver and the panel kernel ----
    ("linear_panels_chunk_bits", LC, "bits + c * chunk * K,", "bits + c * K,", LINEAR),
    ("linear_panels_row_tail", LC,
      "std::min(kRowBlock, M - r0), K,", "std::min(kRowBlock, M - r0 - (rb > 0)), K,", LINEAR),
    ("linear_panels_scale_offset", LC, "scale ? scale + c0 : nullptr", "scale", LINEAR),
    ("linear_panels_bias_offset", LC, "bias ? bias + c0 : nullptr,\n", "bias,\n", LINEAR),
    ("linear_panels_out_offset", LC, "out + r0 * N + c0, N);", "out + r0 * N, N);", LINEAR),
    ("linear_panel_tail_shift", PA,
      "lo = _mm256_sll_epi32(lo, _mm_cvtsi32_si128(32 - nb));", "lo = _mm256_sll_epi32(lo, _mm_cvtsi32_si128(31 - nb));",
      LINEAR),
    ("linear_panel_first_column", PA, "for (int b = nb - 1; b >= 0; --b) {", "for (int b = nb - 1; b > 0; --b) {", LINEAR),
    ("linear_panel_word_offset", PA, "dst + 32 * i);", "dst + 31 * i);", LINEAR),
    ("linear_panel_wide_partial_store", PA,
      "const int nq = std::min(n - q * kPanel, kPanel)", "const int nq = q ? kPanel : std::min(n, kPanel)", LINEAR),
    ("linear_panel_wide_bits", PA, "const unsigned b = bits[q * K + k];", "const unsigned b = bits[q + k];", LINEAR),
    ("linear_panel_wide_last_lane", PA,
      "const int nq = std::min(n - q * kPanel, kPanel)", "const int nq = std::min(n - q * kPanel, kPanel - 1)",
      LINEAR),
    ("linear_panel_wide_scale_offset", PA,
      "mult ? mult + c0 : nullptr, bias ? bias + c0 : nullptr, out + i * ldo",
      "mult, bias ? bias + c0 : nullptr, out + i * ldo", LINEAR),
    # ---- float32 AVX-512: the 16-lane panel kernel ----
    ("linear_panel512_blend_swapped", PB,
      "static_cast<__mmask16>(bits[q * K + k]), minus, plus)", "static_cast<__mmask16>(bits[q * K + k]), plus, minus)",
      LINEAR),
    ("linear_panel512_wide_bits", PB, "static_cast<__mmask16>(bits[q * K + k])", "static_cast<__mmask16>(bits[q + k])",
      LINEAR),
    ("linear_panel512_wide_last_lane", PB,
      "const int nq = std::min(n - q * kPanel, kPanel)", "const int nq = std::min(n - q * kPanel, kPanel - 1)", LINEAR),
    ("linear_panel512_wide_partial_store", PB,
      "const int nq = std::min(n - q * kPanel, kPanel)", "const int nq = q ? kPanel : std::min(n, kPanel)", LINEAR),
    ("linear_panel512_wide_tile_narrow", PB, "tile<9, 2>, tile<10, 2>", "tile<9, 1>, tile<10, 2>", LINEAR),
    ("linear_panel512_wide_count", PB, "{4, 4, 4, 4, 4, 4, 3, 3, 2, 2, 2, 2}", "{4, 4, 4, 4, 4, 4, 3, 2, 2, 2, 2, 2}",
      LINEAR),
    ("linear_panel512_scale_offset", PB,
      "store_row(acc[i][q], mult ? mult + c0 : nullptr,", "store_row(acc[i][q], mult,", LINEAR),
    ("linear_panel512_dropped_bias", PB,
      "  if (bias) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, bias));\n", "", LINEAR),
]
# fmt: on
