"""Mutants of binary_weight_conv2d's CPU path, for plant_cpu_bugs.py: weight rows, patch rows,
blocks, the direct 1x1 path and the epilogue offsets (csrc/wconv/binary_weight_conv_cpu.cpp),
the float32 AVX2 panel kernel and its transposed weight bits (csrc/linear/panel_avx2.cpp), the
row kernels of the other paths (linear_rows in csrc/linear/) and the binding's layout copy.
Entries: (name, file, original snippet, replacement, test files)."""

WC, PA = "csrc/wconv/binary_weight_conv_cpu.cpp", "csrc/linear/panel_avx2.cpp"
LC, L512 = "csrc/linear/binary_weight_linear_cpu.cpp", "csrc/linear/binary_weight_linear_avx512.cpp"
OPS = "csrc/torch/cpu_ops.cpp"
WCONV = ["tests/ops/test_binary_weight_conv.py"]

# fmt: off
WCONV_MUTANTS = [
    # ---- binary_weight_conv2d: weight rows, patch rows, blocks, direct 1x1 path, epilogue offsets ----
    ("wconv_weight_bits_spill", WC,
      "if (s != 0 && s + nb > 32)", "if (s != 0 && s + nb > 33)", WCONV),
    ("wconv_weight_tail_unmasked", WC,
      "const uint32_t v = src[j] & (nb == 32 ? 0xFFFFFFFFu : ((1u << nb) - 1u));", "const uint32_t v = src[j];",
      WCONV),
    ("wconv_tap_offset", WC,
      "T* d = row + (kh * p.kernel_w + kw) * g.cg;", "T* d = row + (kh * p.kernel_h + kw) * g.cg;", WCONV),
    ("wconv_right_border", WC,
      "ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w", "ih >= 0 && ih < p.in_h && iw >= 0 && iw <= p.in_w", WCONV),
    ("wconv_dilation_h", WC,
      "const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dil_h;",
      "const int64_t ih = oh * p.stride_h - p.pad_h + kh;", WCONV),
    ("wconv_group_channels", WC,
      "p.in_channels + grp * g.cg, g.cg * sizeof(T)", "p.in_channels, g.cg * sizeof(T)", WCONV),
    ("wconv_direct_groups", WC,
      "g.direct = g.taps == 1 && p.groups == 1 &&", "g.direct = g.taps == 1 &&", WCONV),
    ("wconv_direct_stride", WC,
      "p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0", "p.stride_h == 1 && p.pad_h == 0", WCONV),
    ("wconv_block_last_row", WC,
      "rn = std::min(g.block_rows, g.pixels - r0);", "rn = std::min(g.block_rows, g.pixels - r0 - (blk > 0));", WCONV),
    ("wconv_group_out_offset", WC,
      "rows_fn(a, rn, grp, out + r0 * p.out_channels + grp * g.og);", "rows_fn(a, rn, grp, out + r0 * p.out_channels);",
      WCONV),
    ("wconv_rows_multiplier_offset", WC,
      "g.og, multiplier ? multiplier + o0 : nullptr,", "g.og, multiplier,", WCONV),
    ("wconv_rows_bias_offset", WC,
      "multiplier ? multiplier + o0 : nullptr,\n                   bias ? bias + o0 : nullptr",
      "multiplier ? multiplier + o0 : nullptr,\n                   bias", WCONV),
    # ---- the float32 AVX2 panel kernel (runs on AVX2 CPUs by default, on AVX-512 ones under the cap) ----
    ("wconv_multiplier_offset", WC, "mult ? mult + o0 : nullptr", "mult", WCONV),
    ("wconv_bias_offset", WC,
      "mult ? mult + o0 : nullptr,\n                           bias ? bias + o0 : nullptr",
      "mult ? mult + o0 : nullptr,\n                           bias", WCONV),
    ("wconv_out_row_stride", WC,
      "o, p.out_channels);\n  });\n}\n\n}  // namespace", "o, g.og);\n  });\n}\n\n}  // namespace", WCONV),
    ("wconv_panel_group_bits", WC, "bits + grp * panels * g.K", "bits + grp * g.K", WCONV),
    ("wconv_panel_bits_group", PA,
      "uint16_t* dst = bits + (g * panels + o / kPanel) * K;", "uint16_t* dst = bits + (g + o / kPanel) * K;", WCONV),
    ("wconv_panel_bits_lane", PA,
      "const uint16_t bit = uint16_t(1u << (o % kPanel));", "const uint16_t bit = uint16_t(1u << (o % 15));", WCONV),
    ("wconv_panel_high_byte", PA, "kSigns.v[b >> 8]", "kSigns.v[(b >> 8) & 127u]", WCONV),
    ("wconv_panel_row_stride", PA, "_mm256_broadcast_ss(a + i * K + k)", "_mm256_broadcast_ss(a + (i & 3) * K + k)",
      WCONV),
    ("wconv_panel_tile_rows", PA,
      "mr = std::min<int64_t>(kPanelRows, rn - r0)", "mr = std::min<int64_t>(kPanelRows - 1, rn - r0)", WCONV),
    ("wconv_panel_lane_mask", PA, "_mm256_set1_epi32(n - 8)", "_mm256_set1_epi32(n - 9)", WCONV),
    ("wconv_panel_mult_high", PA, "_mm256_maskload_ps(mult + 8, hi)", "_mm256_maskload_ps(mult, hi)", WCONV),
    ("wconv_panel_bias_high", PA, "_mm256_maskload_ps(bias + 8, hi)", "_mm256_maskload_ps(bias, hi)", WCONV),
    ("wconv_panel_zero_init", PA,
      "acc[i][j] = _mm256_setzero_ps();", "acc[i][j] = _mm256_set1_ps(-0.0f);", WCONV),
    ("wconv_panel_k_tail", PA, "for (int64_t k = 0; k < K; ++k) {", "for (int64_t k = 0; k + 1 < K; ++k) {", WCONV),
    ("wconv_panel_out_offset", PA, "out + r0 * ldo + c0", "out + r0 * ldo + p * 8", WCONV),
    ("wconv_linear_rows_scalar_ldo", LC,
      "for (int64_t n = 0; n < N; ++n) scalar_one(x, K, w, words, scale, bias, out, ldo, m, n);\n}\n\ntemplate <>\nvoid linear_rows<double>",
      "for (int64_t n = 0; n < N; ++n) scalar_one(x, K, w, words, scale, bias, out, N, m, n);\n}\n\ntemplate <>\nvoid linear_rows<double>",
      WCONV),
    ("wconv_linear_rows_avx512_ldo", L512,
      "n0 += kNB) tile(x, M, K, w, N, scale, bias, out, ldo, m0, n0);",
      "n0 += kNB) tile(x, M, K, w, N, scale, bias, out, N, m0, n0);", WCONV),
    ("binding_wconv_layout", OPS,
      "const at::Tensor x = x_in.to(affine.acc).contiguous(at::MemoryFormat::ChannelsLast), w = w_in.contiguous();\n  if",
      "const at::Tensor x = x_in.to(affine.acc).contiguous(), w = w_in.contiguous();\n  if", WCONV),
]
# fmt: on
