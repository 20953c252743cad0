"""Mutants of binary_weight_linear's CPU paths, for plant_cpu_bugs.py: the scalar loop and its
epilogue, the float32 AVX2 panel driver (csrc/linear/binary_weight_linear_cpu.cpp), the panel
kernel's transposed bits and wide tiles (csrc/linear/panel_avx2.cpp), and the AVX-512 kernel.
Entries: (name, file, original snippet, replacement, test files[, why it is equivalent])."""

LC, L512 = "csrc/linear/binary_weight_linear_cpu.cpp", "csrc/linear/binary_weight_linear_avx512.cpp"
PA = "csrc/linear/panel_avx2.cpp"
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
    # ---- AVX-512 ----
    ("linear_avx512_rem_mask", L512,
      "const __mmask16 valid = static_cast<__mmask16>((1u << rem) - 1u);",
      "const __mmask16 valid = static_cast<__mmask16>((1u << (rem - 1)) - 1u);", LINEAR),
    ("linear_avx512_tail_bits_unmasked", L512,
      "const __mmask16 m = static_cast<__mmask16>(w16[j][chunks] & valid);",
      "const __mmask16 m = static_cast<__mmask16>(w16[j][chunks]);", LINEAR,
      "x is loaded with maskz past K, so a dirty weight bit adds +0.0 to a sum that "
      "starts at +0.0; bits of the word's other 16-bit half are never read"),
    ("linear_avx512_partial_n_tile", L512,
      "for (int64_t j = 0; j < nb; ++j) block<MB, 1>",
      "for (int64_t j = 0; j + 1 < nb; ++j) block<MB, 1>", LINEAR),
    ("linear_avx512_partial_m_tile", L512,
      "for (int64_t i = 0; i < mb; ++i) row_block<1>",
      "for (int64_t i = 0; i + 1 < mb || (mb == 1 && i == 0); ++i) row_block<1>", LINEAR),
    ("linear_avx512_tail_sum", L512,
      "xv[i] = _mm512_maskz_loadu_ps(valid, x + i * K + 16 * chunks);\n      sum[i] = _mm512_add_ps(sum[i], xv[i]);",
      "xv[i] = _mm512_maskz_loadu_ps(valid, x + i * K + 16 * chunks);", LINEAR),
    ("linear_avx512_dropped_bias", L512, "      if (bias) y += bias[n0 + j];\n", "", LINEAR),
    ("linear_avx512_scale_tile_offset", L512, "y *= scale[n0 + j];", "y *= scale[j];", LINEAR),
]
# fmt: on
