"""Mutants of the direct binary conv kernel (csrc/conv/direct_avx2.cpp), its weight cache and
the in-place float32 epilogue, for plant_cpu_bugs.py: (name, file, original snippet,
replacement, test files)."""

DC = "csrc/conv/direct_avx2.cpp"
PC = "csrc/common/prepared_cache.h"
EC = "csrc/gemm/epilogue_cpu.cpp"
CONV = ["tests/ops/test_conv_edges.py", "tests/ops/test_conv.py"]
EPILOGUE = ["tests/ops/test_epilogue.py"]

# fmt: off
DIRECT_MUTANTS = [
    ("direct_fold_too_late", DC,
     "constexpr int64_t kPairsPerFold = 31;", "constexpr int64_t kPairsPerFold = 32;", CONV),
    ("direct_input_tail_unmasked", DC, "if (j == d.wx - 1) v &= last;", "", CONV),
    ("direct_weight_tail_unmasked", DC, "if (k % d.wg == d.wg - 1) v &= last;", "", CONV),
    ("direct_pad_fill_sign", DC,
     "const uint32_t fill = p.pad_value == 1 ? 0xFFFFFFFFu : 0u;",
     "const uint32_t fill = p.pad_value == -1 ? 0xFFFFFFFFu : 0u;", CONV),
    ("direct_border_counts_every_tap", DC,
     "return PixelRun{0, own, count, static_cast<int32_t>(taps * d.cg)};",
     "return PixelRun{0, own, count, static_cast<int32_t>(d.taps * d.cg)};", CONV),
    ("direct_interior_bound_off_by_one", DC,
     "ih0 + (p.kernel_h - 1) * p.dil_h < p.in_h", "ih0 + (p.kernel_h - 1) * p.dil_h <= p.in_h", CONV),
    ("direct_interior_dilation_w_uses_h", DC,
     "rel[k] = Pair{2 * ((kh * p.dil_h * p.in_w + kw * p.dil_w) * d.wx + j), k};",
     "rel[k] = Pair{2 * ((kh * p.dil_h * p.in_w + kw * p.dil_h) * d.wx + j), k};", CONV),
    ("direct_border_stride_w_uses_h", DC,
     "iw0 = ow * p.stride_w - p.pad_w;", "iw0 = ow * p.stride_h - p.pad_w;", CONV),
    ("direct_group_word_offset", DC,
     "const uint32_t* xg = xs + 2 * g * d.wg;", "const uint32_t* xg = xs;", CONV),
    ("direct_group_weights", DC,
     "uint32_t v = o < d.og ? w[(g * d.og + o) * d.taps * d.wg + k] : 0u;",
     "uint32_t v = o < d.og ? w[o * d.taps * d.wg + k] : 0u;", CONV),
    ("direct_chunk_lane_count", DC,
     "kCount[(valid + 7) / 8](xg,", "kCount[valid / 8 + (valid % 8 > 1)](xg,", CONV),
    ("direct_pixel_batch_advance", DC,
     "if (++oh == p.out_h) oh = 0, ++n;", "if (++oh == p.out_h) oh = 0;", CONV),
    ("direct_hi_nibble_shift", DC,
     "return (v >> 4) & 0x0f0f0f0fu;", "return (v >> 3) & 0x0f0f0f0fu;", CONV),
    ("direct_weight_register_layout", DC,
     "const int64_t at = k * kRegs * 8 + (lane / 8) * 16 + lane % 8;",
     "const int64_t at = k * kRegs * 8 + (lane / 8) * 8 + lane % 8;", CONV),
    ("direct_last_block_dropped", DC,
     "const int64_t blocks = (d.pixels + d.rows - 1) / d.rows;",
     "const int64_t blocks = d.pixels / d.rows + (d.pixels < d.rows);", CONV),
    ("direct_groups_split_words", DC,
     "if (p.groups != 1 && p.group_channels() % 32 != 0) return ConvPath::Gemm;", "", CONV),
    ("direct_epilogue_row_offset", DC,
     "if (e) epilogue_block(*e, values, o, p.out_channels, r0, rn, 0, p.out_channels);",
     "if (e) epilogue_block(*e, values, o, p.out_channels, 0, rn, 0, p.out_channels);", EPILOGUE),
    ("direct_segment_always_first", DC,
     "words <= kSegmentPairs, lo == 0};", "words <= kSegmentPairs, true};", CONV),
    ("direct_segment_end_search", DC,
     "run.pairs + run.n, seg.hi, by_word)", "run.pairs + run.n, seg.hi + 1, by_word)", CONV),
    ("direct_segment_start_search", DC,
     "run.pairs + run.n, seg.lo, by_word)", "run.pairs + run.n, seg.lo + 1, by_word)", CONV),
    ("prepared_cache_skips_word_compare", PC,
     "if (n != 0 && std::memcmp(it->copy.data(), src, n * sizeof(uint32_t)) != 0) continue;", "", CONV),
    ("prepared_cache_ignores_key", PC,
     "if (it->src != src || it->key != key ||", "if (it->src != src ||", CONV),
    ("epilogue_in_place_column_offset", EC,
     "float* const y = out32 ? out32 + m * e.out_ld + n0 + c : buf;",
     "float* const y = out32 ? out32 + m * e.out_ld + c : buf;", EPILOGUE),
]
# fmt: on
