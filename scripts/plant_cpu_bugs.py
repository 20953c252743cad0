#!/usr/bin/env python3
"""Mutation check of the CPU kernels: plants one typical kernel bug at a time and reports
whether the CPU tests catch it.

Each mutant is (file, original snippet, replacement). The snippet is matched ignoring
whitespace (scripts/snippet_match.py: a reformat of the kernels keeps it anchored) and must
occur exactly once in the file, so a mutant whose code has moved fails loudly instead of
silently testing nothing; the matched span, from its first to its last non-blank character,
is replaced by the stripped replacement. The tree is copied to a scratch folder
(``--workdir``, kept between runs so the CPU-only build stays incremental); the working tree
itself is never modified. For each mutant the script applies the edit, rebuilds
(BNN_KERNELS_CUDA=0, MAX_JOBS=1; on a CPU without AVX-512 with the AVX-512 intrinsics emulated,
see common/avx512.h), runs the mutant's test files with ``pytest -x`` (the tests'
``cpu_isa`` fixture covers the AVX-512, AVX2 and scalar paths) and restores the file. A
mutant is caught when the tests fail (an assertion, an exception or a crash).

    python scripts/plant_cpu_bugs.py              # every mutant, then the score table
    python scripts/plant_cpu_bugs.py --list
    python scripts/plant_cpu_bugs.py --only gemm_avx512_dot_tail_lane

Slow (a rebuild and a test run per mutant): not part of CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from cpu_mutants_bitserial import BITSERIAL_MUTANTS  # noqa: E402
from cpu_mutants_conv import CONV_MUTANTS  # noqa: E402
from cpu_mutants_linear import LINEAR_MUTANTS  # noqa: E402
from cpu_mutants_wconv import WCONV_MUTANTS  # noqa: E402
from snippet_match import replace_once  # noqa: E402

PACK = ["tests/ops/test_pack_edges.py", "tests/ops/test_pack.py"]
GEMM = ["tests/ops/test_gemm_edges.py", "tests/ops/test_gemm.py"]
CONV = ["tests/ops/test_conv_edges.py", "tests/ops/test_conv.py"]
BITSERIAL = [
    "tests/ops/test_bitserial_edges.py",
    "tests/ops/test_bitserial_tiles.py",
    "tests/ops/test_bitserial.py",
    "tests/ops/test_bitserial_planes.py",
]
EPILOGUE = ["tests/ops/test_epilogue.py", "tests/ops/test_epilogue_dual.py"]
DUAL = ["tests/ops/test_epilogue_dual.py"]
WCONV = ["tests/ops/test_binary_weight_conv.py"]
# The GEMM engine also runs under the conv and bit-serial ops.
ENGINE = GEMM + CONV + BITSERIAL


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple
    # Why the mutant cannot change any result (it is then left out of the score), or "".
    equivalent: str = ""


def M(name, file, old, new, tests, equivalent=""):
    return Mutant(name, file, old, new, tuple(tests), equivalent)


PK, PS = "csrc/pack/pack_cpu.cpp", "csrc/pack/pack_simd.cpp"
MK512, MK2, MKS = (
    "csrc/gemm/microkernel_avx512.cpp",
    "csrc/gemm/microkernel_avx2.cpp",
    "csrc/gemm/microkernel_scalar.cpp",
)
GD, MKH = "csrc/gemm/popcount_gemm_cpu.cpp", "csrc/gemm/microkernel.h"
CV = "csrc/conv/binary_conv_cpu.cpp"
BS = "csrc/bitserial/bitserial_gemm_cpu.cpp"
CK, OPS, OO = "csrc/torch/checks.cpp", "csrc/torch/cpu_ops.cpp", "csrc/torch/op_outputs.h"
EH, EC, ES = "csrc/common/epilogue.h", "csrc/gemm/epilogue_cpu.cpp", "csrc/gemm/epilogue_simd.cpp"

# One mutant per entry, as a table (left out of the formatter).
# fmt: off
MUTANTS = [
    # ---- pack: scalar template (float with ISA=scalar, double, integer inputs) ----
    M("pack_scalar_tail_count", PK,
      "const int n = static_cast<int>(k - c0 < 32 ? k - c0 : 32);",
      "const int n = static_cast<int>(k - c0 < 32 ? k - c0 - 1 : 32);", PACK),
    M("pack_scalar_threshold_gt", PK,
      "word |= static_cast<uint32_t>(static_cast<Thr>(xr[c0 + j]) >= t) << j;",
      "word |= static_cast<uint32_t>(static_cast<Thr>(xr[c0 + j]) > t) << j;", PACK),
    M("pack_scalar_channel_threshold_offset", PK,
      ">= thr[c0 + j]) << j;", ">= thr[j]) << j;", PACK),
    M("pack_scalar_nan_plus_one", PK,
      "word |= static_cast<uint32_t>(static_cast<Thr>(xr[c0 + j]) >= t) << j;",
      "word |= static_cast<uint32_t>(!(static_cast<Thr>(xr[c0 + j]) < t)) << j;", PACK),
    M("unpack_bit_index", PK,
      "o[c] = ((b[c >> 5] >> (c & 31)) & 1u) ? plus : minus;",
      "o[c] = ((b[c >> 5] >> (c & 30)) & 1u) ? plus : minus;", PACK),
    M("unpack_row_words_floor", PK,
      "const int64_t words = words_for_bits(k);\n#pragma omp parallel for num_threads(sane_threads(num_threads)) schedule(static) if (rows * k > (1 << 20))\n  for (int64_t r = 0; r < rows; ++r) {\n    const uint32_t* b",
      "const int64_t words = k / 32;\n#pragma omp parallel for num_threads(sane_threads(num_threads)) schedule(static) if (rows * k > (1 << 20))\n  for (int64_t r = 0; r < rows; ++r) {\n    const uint32_t* b",
      PACK),
    M("bitplanes_range_off_by_one", PK,
      "const int64_t hi = is_signed ? (int64_t(1) << (nbits - 1)) - 1 : (int64_t(1) << nbits) - 1;",
      "const int64_t hi = is_signed ? (int64_t(1) << (nbits - 1)) : (int64_t(1) << nbits) - 1;", PACK),
    M("bitplanes_full_word_count", PK,
      "const int cnt = static_cast<int>(k - c0 < 32 ? k - c0 : 32);",
      "const int cnt = static_cast<int>(k - c0 < 32 ? k - c0 : 31);", PACK),
    # ---- pack: AVX-512 / AVX2 float32 ----
    M("pack_avx512_tail_count", PS,
      "o[w] = word_avx512(x + 32 * w, pc ? thr + 32 * w : thr, pc, tv);\n  if (32 * full < k) o[full] = tail_word(x + 32 * full, pc ? thr + 32 * full : thr, pc, static_cast<int>(k - 32 * full));",
      "o[w] = word_avx512(x + 32 * w, pc ? thr + 32 * w : thr, pc, tv);\n  if (32 * full < k) o[full] = tail_word(x + 32 * full, pc ? thr + 32 * full : thr, pc, static_cast<int>(k - 32 * full - 1));",
      PACK),
    M("pack_avx2_dropped_tail", PS,
      "o[w] = word_avx2(x + 32 * w, pc ? thr + 32 * w : thr, pc, tv);\n  if (32 * full < k)",
      "o[w] = word_avx2(x + 32 * w, pc ? thr + 32 * w : thr, pc, tv);\n  if (false)", PACK),
    M("pack_avx2_threshold_gt", PS,
      "_mm256_cmp_ps(_mm256_loadu_ps(x + 8 * q), th, _CMP_GE_OQ)",
      "_mm256_cmp_ps(_mm256_loadu_ps(x + 8 * q), th, _CMP_GT_OQ)", PACK),
    M("pack_avx512_nan_plus_one", PS,
      "_mm512_cmp_ps_mask(_mm512_loadu_ps(x), t0, _CMP_GE_OQ)",
      "_mm512_cmp_ps_mask(_mm512_loadu_ps(x), t0, _CMP_NLT_UQ)", PACK),
    M("pack_avx512_channel_threshold_hi", PS,
      "_mm512_loadu_ps(t + 16) : tv", "_mm512_loadu_ps(t) : tv", PACK),
    M("pack_avx2_channel_threshold_word", PS,
      "o[w] = word_avx2(x + 32 * w, pc ? thr + 32 * w : thr, pc, tv);",
      "o[w] = word_avx2(x + 32 * w, thr, pc, tv);", PACK),
    M("pack_tail_nan_plus_one", PS,
      "w |= static_cast<uint32_t>(x[j] >= (per_channel ? t[j] : t[0])) << j;",
      "w |= static_cast<uint32_t>(!(x[j] < (per_channel ? t[j] : t[0]))) << j;", PACK),
    # ---- GEMM micro-kernels: AVX-512 ----
    M("gemm_avx512_dot_last_vector_unmasked", MK512,
      "for (; j + 16 < words; j += 16)", "for (; j + 16 <= words; j += 16)", ENGINE),
    M("gemm_avx512_dot_tail_lane", MK512,
      "static_cast<__mmask16>(1u << (rem - 1))", "static_cast<__mmask16>(1u << rem)", ENGINE),
    M("gemm_avx512_dot_drops_last_word", MK512,
      "const __mmask16 k = static_cast<__mmask16>((1u << rem) - 1u);",
      "const __mmask16 k = static_cast<__mmask16>((1u << (rem - 1)) - 1u);", ENGINE),
    M("gemm_avx512_kernel_k_loop", MK512,
      "for (int64_t kk = 0; kk < w64; ++kk) {\n    __m512i bv[kNV];",
      "for (int64_t kk = 0; kk + 1 < w64; ++kk) {\n    __m512i bv[kNV];", ENGINE),
    M("gemm_avx512_store_lanes", MK512,
      "_mm512_mask_cvtepi64_epi32(_mm256_setzero_si256(), 0xff, sum[i][v])",
      "_mm512_mask_cvtepi64_epi32(_mm256_setzero_si256(), 0x7f, sum[i][v])", ENGINE),
    # ---- GEMM micro-kernels: AVX2 ----
    M("gemm_avx2_kernel_byte_overflow", MK2,
      "const int64_t end = kk + 31 < w64 ? kk + 31 : w64;",
      "const int64_t end = kk + 32 < w64 ? kk + 32 : w64;", ENGINE),
    M("gemm_avx2_dot_byte_overflow", MK2,
      "for (int step = 0; step < 31 && j + 8 < words; ++step, j += 8)",
      "for (int step = 0; step < 32 && j + 8 < words; ++step, j += 8)", ENGINE),
    M("gemm_avx2_scalar_columns", MK2,
      "for (int j = 0; j < kNS; ++j) acc[i * kNR + 4 * kNV + j] = static_cast<int32_t>(ss[i][j]);",
      "for (int j = 0; j + 1 < kNS; ++j) acc[i * kNR + 4 * kNV + j] = static_cast<int32_t>(ss[i][j]);", ENGINE),
    M("gemm_avx2_dot_unmasked_tail", MK2,
      "    if (j == words - 1) v &= last_mask;\n", "", ENGINE),
    M("gemm_avx2_dot_last_vector_unmasked", MK2,
      "for (int step = 0; step < 31 && j + 8 < words; ++step, j += 8)",
      "for (int step = 0; step < 31 && j + 8 <= words; ++step, j += 8)", ENGINE),
    # ---- GEMM micro-kernels: scalar ----
    M("gemm_scalar_dot_last_pair_unmasked", MKS,
      "for (; j + 2 < words; j += 2) {", "for (; j + 2 <= words; j += 2) {", ENGINE),
    M("gemm_scalar_dot_unmasked_tail", MKS,
      "    if (j == words - 1) v &= last_mask;\n", "", ENGINE),
    M("gemm_scalar_kernel_b_stride", MKS,
      "const uint64_t* bk = b + kk * kNR;", "const uint64_t* bk = b + kk * kMR;", ENGINE,
      equivalent="the scalar tile is square (kMR == kNR == 4): both strides are 4"),
    M("gemm_scalar_kernel_column", MKS,
      "(ak[i] ^ bk[j]) : (ak[i] & bk[j])", "(ak[i] ^ bk[j]) : (ak[i] & bk[i])", ENGINE),
    # ---- GEMM driver: small-M path, tiles, M/N/K blocking ----
    M("gemm_small_m_last_row", GD,
      "for (int64_t m = 0; m < M; ++m)\n        C[m * ldc + n]",
      "for (int64_t m = 0; m + 1 < M; ++m)\n        C[m * ldc + n]", ENGINE),
    M("gemm_small_m_row_stride", GD,
      "mk.dot(a + m * lda, b + n * ldb, words, last_mask)",
      "mk.dot(a + m * ldb, b + n * lda, words, last_mask)", ENGINE,
      equivalent="the op passes lda == ldb == words (A and B are made contiguous with the same word count)"),
    M("gemm_pack_tile_full_words", GD,
      "const int64_t full = (words - 1) / 2;", "const int64_t full = words / 2;", ENGINE),
    M("gemm_pack_tile_hi_unmasked", GD,
      "      if (w1 == words - 1) hi &= last_mask;\n", "", ENGINE),
    M("gemm_pack_tile_w64_floor", GD,
      "const int64_t w64 = (words + 1) / 2;\n  const int64_t m_tiles",
      "const int64_t w64 = words / 2 + (words > 2);\n  const int64_t m_tiles", ENGINE),
    M("gemm_n_tiles_floor", GD,
      "n_tiles = (N + nr - 1) / nr;\n  const int64_t kc = std::min(w64, kKc);\n  const int64_t block_tiles = std::max<int64_t>(1, kBBlockBytes / (kc * nr * 8));\n  static thread_local",
      "n_tiles = (N + nr - 2) / nr;\n  const int64_t kc = std::min(w64, kKc);\n  const int64_t block_tiles = std::max<int64_t>(1, kBBlockBytes / (kc * nr * 8));\n  static thread_local",
      ENGINE),
    M("gemm_last_n_block_width", MKH,
      "const int64_t np = block_tiles < n_tiles - p0 ? block_tiles : n_tiles - p0;",
      "const int64_t np = block_tiles < n_tiles - p0 + 1 ? block_tiles : n_tiles - p0 + 1;", ENGINE),
    M("gemm_k_block_accumulate_last", GD,
      "c[j] = alpha * (c[j] + s[j]) + beta;", "c[j] = alpha * s[j] + beta;", ENGINE),
    M("gemm_k_block_accumulate_middle", GD,
      "for (int64_t j = 0; j < nv; ++j) c[j] += s[j];", "for (int64_t j = 0; j < nv; ++j) c[j] = s[j];",
      ENGINE),
    M("gemm_k_block_last_flag", MKH,
      "const bool first = k0 == 0, last = k0 + kn == w64;",
      "const bool first = k0 == 0, last = k0 == 0 && kn == w64;", ENGINE),
    M("gemm_tile_pair_last_k_block_width", MKH,
      "const int64_t kn = kc < w64 - k0 ? kc : w64 - k0;", "const int64_t kn = kc;", ENGINE),
    M("gemm_tile_pair_a_tile_index", MKH,
      "f(r / np, p0 + r % np, k0, kn, first, last);", "f(r % np, p0 + r % np, k0, kn, first, last);", ENGINE),
    # ---- micro-kernels' axpy variants (the bit-serial GEMM's plane combination) ----
    M("axpy_avx512_coef_dropped", MK512,
      "tile[i] = _mm512_add_epi32(tile[i], _mm512_mullo_epi32(_mm512_permutex2var_epi32(sum[i][0], low, sum[i][1]), c));",
      "tile[i] = _mm512_add_epi32(tile[i], _mm512_permutex2var_epi32(sum[i][0], low, sum[i][1]));", BITSERIAL),
    M("axpy_avx512_overwrites", MK512,
      "for (int i = 0; i < kMR; ++i) tile[i] = _mm512_loadu_si512(acc + i * kNR);",
      "for (int i = 0; i < kMR; ++i) tile[i] = _mm512_setzero_si512();", BITSERIAL),
    M("plane_sum_avx512_count_halves", MK512,
      "_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)",
      "_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)", BITSERIAL),
    M("plane_sum_avx512_last_pair", MK512,
      "for (int64_t e = 0; e < count; ++e) {", "for (int64_t e = 0; e + 1 < count; ++e) {", BITSERIAL),
    M("axpy_avx2_overwrites", MK2,
      "t.tile[i] = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i * kNR)),\n"
      "to_tile);",
      "t.tile[i] = _mm256_setzero_si256();", BITSERIAL),
    M("axpy_avx2_coef_dropped", MK2,
      "tile[i] = _mm256_add_epi32(tile[i], _mm256_mullo_epi32(counts, coef));",
      "tile[i] = _mm256_add_epi32(tile[i], counts);", BITSERIAL),
    M("axpy_scalar_coef_dropped", MKS,
      "dst = AXPY ? dst + coef * static_cast<int32_t>(s[i][j]) : static_cast<int32_t>(s[i][j]);",
      "dst = AXPY ? dst + static_cast<int32_t>(s[i][j]) : static_cast<int32_t>(s[i][j]);", BITSERIAL),
    M("gemm_skip_last_b_tile_pack", GD,
      "for (int64_t t = 0; t < n_tiles; ++t)\n      pack_tile(B",
      "for (int64_t t = 0; t < n_tiles - (n_tiles > 1); ++t)\n      pack_tile(B", ENGINE),
    M("xnor_popcount_correction_kpad", GD,
      "-2,\n                static_cast<int32_t>(k), C",
      "-2,\n                static_cast<int32_t>(words_for_bits(k) * 32), C", ENGINE),
    M("multiply_tiles_m_tiles_floor", GD,
      "const int64_t m_tiles = (M + mr - 1) / mr, n_tiles = (N + nr - 1) / nr;\n  const int64_t kc = std::min(w64, kKc);\n  const int64_t block_tiles = std::max<int64_t>(1, kBBlockBytes / (kc * nr * 8));\n  for (int64_t k0",
      "const int64_t m_tiles = M / mr, n_tiles = (N + nr - 1) / nr;\n  const int64_t kc = std::min(w64, kKc);\n  const int64_t block_tiles = std::max<int64_t>(1, kBBlockBytes / (kc * nr * 8));\n  for (int64_t k0",
      CONV),
    M("multiply_tiles_k_block_last", GD,
      "const bool first = k0 == 0, last = k0 + kn == w64;\n    for (int64_t p0",
      "const bool first = k0 == 0, last = kn == w64;\n    for (int64_t p0", CONV),
    # ---- bit-serial ----
    M("bitserial_row_popcount_unmasked", BS,
      "out[r] = dot(b + r * words, b + r * words, words, last);",
      "out[r] = dot(b + r * words, b + r * words, words, 0xFFFFFFFFu);", BITSERIAL),
    M("bitserial_row_popcount_skips_word", BS,
      "out[r] = dot(b + r * words, b + r * words, words, last);",
      "out[r] = words > 1 ? dot(b + r * words + 1, b + r * words + 1, words - 1, last) : 0;", BITSERIAL),
    M("bitserial_weight_offset_kpad", BS,
      "int64_t s = w_offset * k;", "int64_t s = w_offset * pr.words * 32;", BITSERIAL),
    M("bitserial_row_term_plane", BS, "w_offset * c * pa[p * M + m]", "w_offset * c * pa[m]", BITSERIAL),
    M("bitserial_first_plane_coef", BS,
      "pr.coef[p * Q + q] = static_cast<int32_t>((pr.reduce ? a_coefs[p] : 1) * w_coefs[q]);",
      "pr.coef[p * Q + q] = p + q == 0 ? 1 : static_cast<int32_t>((pr.reduce ? a_coefs[p] : 1) * w_coefs[q]);",
      BITSERIAL),
    M("bitserial_last_weight_plane", BS,
      "for (int64_t q = 0; q < pr.Q; ++q) {\n      const int32_t c = pr.coef[p * pr.Q + q];",
      "for (int64_t q = 0; q + 1 < pr.Q; ++q) {\n      const int32_t c = pr.coef[p * pr.Q + q];", BITSERIAL),
    M("bitserial_gemv_last_weight_plane", BS,
      "for (int64_t q = 0; q < pr.Q; ++q)\n          if (const int32_t c",
      "for (int64_t q = 0; q + 1 < pr.Q; ++q)\n          if (const int32_t c", BITSERIAL),
    M("bitserial_panel_count_plane", BS,
      "std::copy(c, c + rows, pa + p * M + m0);", "std::copy(c, c + rows, pa + m0);", BITSERIAL),
    M("panel_count_avx512_last_word", MK512,
      "for (int64_t kk = 0; kk < w64; ++kk)\n    s = _mm512_add_epi64(s, _mm512_popcnt_epi64(",
      "for (int64_t kk = 0; kk + 1 < w64; ++kk)\n    s = _mm512_add_epi64(s, _mm512_popcnt_epi64(", BITSERIAL),
    M("bitserial_pair_chunk_dropped", BS,
      "if (used > 0) fused(chunk, used, kn, sum);", "if (used > 1) fused(chunk, used, kn, sum);", BITSERIAL),
    M("bitserial_pair_chunk_not_reset", BS,
      "fused(chunk, used, kn, sum);\n        used = 0;", "fused(chunk, used, kn, sum);\n        used = 1;", BITSERIAL),
    M("bitserial_gemv_row_term_plane", BS,
      "int32_t v = pr.row[g * M + m] + pr.col[n];", "int32_t v = pr.row[m] + pr.col[n];", BITSERIAL),
    M("bitserial_gemv_plane_offset", BS,
      "mk.dot(a + (p * M + m) * words, w + (q * N + n) * words,",
      "mk.dot(a + (p * M + m) * words, w + (q + n) * words,", BITSERIAL),
    M("bitserial_activation_coef", BS,
      "(pr.reduce ? a_coefs[p] : 1) * w_coefs[q]",
      "(pr.reduce ? (a_coefs[p] < 0 ? -a_coefs[p] : a_coefs[p]) : 1) * w_coefs[q]", BITSERIAL),
    M("bitserial_activation_offset", BS,
      "pr.col[n] = static_cast<int32_t>(a_offset * s);",
      "pr.col[n] = static_cast<int32_t>(a_offset * (s - w_offset * k));", BITSERIAL),
    M("bitserial_chunk_row_offset", BS,
      "pack_tiles(pr.a + (p * M + m0) * words,", "pack_tiles(pr.a + (p * M) * words,", BITSERIAL),
    M("bitserial_axpy_k_block_offset", BS,
      "return ap + ((p * m_tiles + t) * w64 + k0) * mr;", "return ap + ((p * m_tiles + t) * w64) * mr;", BITSERIAL),
    M("bitserial_weight_tile_offset", BS,
      "return bp + ((q * n_tiles + j) * w64 + k0) * nr;", "return bp + ((q + j) * w64 + k0) * nr;", BITSERIAL),
    M("bitserial_terms_dropped_multi_k_block", BS,
      "for (int64_t j = 0; j < nv; ++j) c[j] += s[j] + r + col[j];",
      "for (int64_t j = 0; j < nv; ++j) c[j] += s[j];", BITSERIAL),
    M("bitserial_unreduced_chunk_index", BS,
      "store_tile(sum, nr, out + (g * M + m0) * N + n0,", "store_tile(sum, nr, out + (g + m0) * N + n0,", BITSERIAL),
    M("bitserial_unreduced_row_term_plane", BS,
      "pr.row.data() + g * M + m0, pr.col.data() + n0);", "pr.row.data() + m0, pr.col.data() + n0);", BITSERIAL),
    M("bitserial_overflow_check_ignores_offset", CK,
      "int64_t s = std::llabs(offset);", "int64_t s = 0;", BITSERIAL),
    M("bitserial_overflow_check_unreduced", CK,
      "const double amax = reduce ? static_cast<double>(abs_sum(a_coefs, a_offset)) : 1.0;",
      "const double amax = static_cast<double>(abs_sum(a_coefs, a_offset));", BITSERIAL),
    # ---- binding: non-contiguous inputs ----
    M("binding_gemm_noncontiguous", OPS,
      "at::Tensor(), s.n);\n  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();\n  cpu::xnor_gemm",
      "at::Tensor(), s.n);\n  const at::Tensor a = a_in, b = b_in.contiguous();\n  cpu::xnor_gemm", GEMM),
    M("binding_conv_noncontiguous", OPS,
      "ep = bind_epilogue(args, spec, out, conv_residual_rows(residual), p.out_channels);\n"
      "  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();",
      "ep = bind_epilogue(args, spec, out, conv_residual_rows(residual), p.out_channels);\n"
      "  const at::Tensor x = x_in.contiguous(), w = w_in;", CONV),
    M("binding_bitserial_noncontiguous", OPS,
      "const at::Tensor a = a_in.contiguous(), w = w_in.contiguous();\n  cpu::bitserial_gemm",
      "const at::Tensor a = a_in, w = w_in.contiguous();\n  cpu::bitserial_gemm", BITSERIAL),
    # ---- fused epilogue (order, channel index, bits, rounding, vector paths, tiles, binding) ----
    M("epilogue_order_bias_first", EH,
      "if (e.multiplier) y = y * e.multiplier[n];\n  if (e.bias) y = y + e.bias[n];",
      "if (e.bias) y = y + e.bias[n];\n  if (e.multiplier) y = y * e.multiplier[n];", EPILOGUE),
    M("epilogue_simd_order_residual_first", ES,
      "if (e.bias) v = S::add(v, S::load(e.bias + n));\n    if (res) v = S::add(v, S::load(res + j));",
      "if (res) v = S::add(v, S::load(res + j));\n    if (e.bias) v = S::add(v, S::load(e.bias + n));", EPILOGUE),
    M("epilogue_simd_channel_index", ES,
      "v = S::mul(v, S::load(e.multiplier + n));", "v = S::mul(v, S::load(e.multiplier + j));", EPILOGUE),
    M("epilogue_simd_residual_index", ES,
      "if (res) v = S::add(v, S::load(res + j));", "if (res) v = S::add(v, S::load(res + n));", EPILOGUE),
    M("epilogue_simd_shifts_swapped", ES,
      "S::add(v, S::load(e.act_shift_in + n))", "S::add(v, S::load(e.act_shift_out + n))", EPILOGUE),
    M("epilogue_avx2_prelu_slope_lanes", ES,
      "return _mm256_blendv_ps(neg, t, _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GT_OQ));",
      "return _mm256_blendv_ps(t, neg, _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GT_OQ));", EPILOGUE),
    M("epilogue_avx512_prelu_slope_lanes", ES,
      "_CMP_GT_OQ), neg, t);", "_CMP_GT_OQ), t, neg);", EPILOGUE),
    M("epilogue_bits_tail", EC,
      "std::min<int64_t>(32, len - w * 32)", "std::min<int64_t>(32, len - w * 32 + 1)", EPILOGUE),
    M("epilogue_bits_greater", "csrc/gemm/epilogue_simd.h",
      "word |= static_cast<uint32_t>(y[b] >= thr[b]) << b;", "word |= static_cast<uint32_t>(y[b] > thr[b]) << b;",
      EPILOGUE),
    M("epilogue_bits_chunk_word", EC,
      "e.bits_out + m * e.bits_ld + (n0 + c) / 32", "e.bits_out + m * e.bits_ld", EPILOGUE),
    M("epilogue_avx2_bits_greater", ES,
      "_mm256_cmp_ps(load(y), load(t), _CMP_GE_OQ)", "_mm256_cmp_ps(load(y), load(t), _CMP_GT_OQ)", EPILOGUE),
    M("epilogue_avx512_bits_greater", ES,
      "_mm512_cmp_ps_mask(load(y), load(t), _CMP_GE_OQ)", "_mm512_cmp_ps_mask(load(y), load(t), _CMP_GT_OQ)",
      EPILOGUE),
    M("epilogue_avx2_bits_nan_unordered", ES,
      "_mm256_cmp_ps(load(y), load(t), _CMP_GE_OQ)", "_mm256_cmp_ps(load(y), load(t), _CMP_NLT_UQ)", EPILOGUE),
    M("epilogue_simd_bits_lane_shift", ES,
      "S::ge_mask(y + w * 32 + l, thr + w * 32 + l) << l;", "S::ge_mask(y + w * 32 + l, thr + w * 32 + l) << (l / 2);",
      EPILOGUE),
    M("epilogue_simd_bits_tail_word", ES,
      "if (w * 32 < len) o[w] =", "if (w * 32 + 32 < len) o[w] =", EPILOGUE),
    M("epilogue_simd_bits_word_threshold", ES,
      "S::ge_mask(y + w * 32 + l, thr + w * 32 + l)", "S::ge_mask(y + w * 32 + l, thr + l)", EPILOGUE),
    M("epilogue_half_subnormal", EC, "if (bias < 0x71000000u) bias = 0x71000000u;", "(void)0;", EPILOGUE),
    M("epilogue_bfloat16_truncates", EC,
      "return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);",
      "return static_cast<uint16_t>(u >> 16);", EPILOGUE),
    M("epilogue_gemm_tile_affine", GD,
      "s[i * ns + j] = alpha * s[i * ns + j] + beta;", "s[i * ns + j] = alpha * s[i * ns + j];", EPILOGUE),
    M("epilogue_gemm_tile_several_k_blocks", GD,
      "M > kGemvRows && (words + 1) / 2 <= kKc)", "M > kGemvRows)", EPILOGUE),
    M("epilogue_conv_block_channel_offset", CV,
      "epilogue_block(*e, values, o, g.og, r0, rn, grp * g.og, g.og);",
      "epilogue_block(*e, values, o, g.og, r0, rn, 0, g.og);", EPILOGUE),
    M("epilogue_conv_bits_split_words", CV,
      "if (!e.bits_out || p.groups == 1 || p.group_out() % 32 == 0)", "if (true)", EPILOGUE),
    M("epilogue_binding_conv_residual_nchw", OPS,
      "residual->permute({0, 2, 3, 1}).contiguous()", "residual->contiguous()", EPILOGUE),
    M("epilogue_check_threshold_shape", CK,
      "check_channel_vector(a.out_threshold, \"out_threshold\", like, n);\n  TORCH_CHECK_VALUE(a.act_slope",
      "TORCH_CHECK_VALUE(a.act_slope", EPILOGUE),
    # ---- the dual ops (float output and bits from one call) ----
    M("dual_check_threshold_shape", CK,
      "check_channel_vector(a.out_threshold, \"out_threshold\", like, n);\n  EpilogueArgs float_args",
      "EpilogueArgs float_args", DUAL),
    M("dual_check_default_dtype", CK,
      "if (s.output == EpilogueOutput::Int32) s = {EpilogueOutput::Float, at::kFloat};", "(void)0;", DUAL),
    M("dual_binding_bits_ld", OO, "b.e.bits_ld = words_for_bits(n);", "b.e.bits_ld = n / 32;", DUAL),
    M("dual_binding_threshold_noncontiguous", OO,
      "b.keep.push_back(a.out_threshold->contiguous());", "b.keep.push_back(*a.out_threshold);", DUAL),
    M("dual_binding_gemm_noncontiguous", OPS,
      "bits, res, s.n);\n  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();",
      "bits, res, s.n);\n  const at::Tensor a = a_in, b = b_in.contiguous();", DUAL),
    M("dual_binding_conv_residual_nchw", OPS,
      "bind_dual_epilogue(args, spec, out, bits, conv_residual_rows(residual), p.out_channels)",
      "bind_dual_epilogue(args, spec, out, bits, residual ? residual->contiguous() : at::Tensor(), p.out_channels)",
      DUAL),
]
# fmt: on
MUTANTS += [M(*m) for m in CONV_MUTANTS]
MUTANTS += [M(*m) for m in BITSERIAL_MUTANTS]
MUTANTS += [M(*m) for m in WCONV_MUTANTS]
MUTANTS += [M(*m) for m in LINEAR_MUTANTS]


def tree_files(root):
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True, capture_output=True
    ).stdout.decode()
    return [f for f in out.split("\0") if f and os.path.isfile(os.path.join(root, f))]


def sync(src, dst):
    """Copies the checkout's files into dst, touching only those whose bytes differ (so the
    incremental build recompiles only what changed)."""
    for rel in tree_files(src):
        a, b = os.path.join(src, rel), os.path.join(dst, rel)
        with open(a, "rb") as f:
            data = f.read()
        if os.path.exists(b):
            with open(b, "rb") as f:
                if f.read() == data:
                    continue
        os.makedirs(os.path.dirname(b), exist_ok=True)
        shutil.copy2(a, b)


def cpu_has_avx512():
    """The CPU runs the AVX-512 VPOPCNTDQ kernels natively (Linux spells the flag
    avx512_vpopcntdq in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
        return "avx512f" in flags and bool({"avx512_vpopcntdq", "avx512vpopcntdq"} & flags)
    except OSError:
        return False


# Where the CPU lacks AVX-512, the scratch tree is built with the AVX-512 intrinsics emulated
# (common/avx512.h), so the tests' "auto" runs take the AVX-512 kernels and their mutants count.
EMULATE_AVX512 = not cpu_has_avx512()


def build(work):
    env = dict(os.environ, BNN_KERNELS_CUDA="0", MAX_JOBS="1")
    if EMULATE_AVX512:
        env["BNN_KERNELS_EMULATE_AVX512"] = "1"
    r = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=work, env=env, capture_output=True, text=True
    )
    return r.returncode == 0, r.stdout + r.stderr


def run_tests(work, tests, timeout):
    tests = [t for t in tests if os.path.exists(os.path.join(work, t))]
    env = dict(os.environ, PYTHONPATH=work)
    env.pop("BNN_KERNELS_CPU_ISA", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    failed = next((ln for ln in lines if ln.startswith("FAILED")), lines[-1] if lines else "")
    return r.returncode, failed


def mutated(root, m):
    """(the original text of m's file under root, the text with m planted, or None, the
    number of times m's snippet occurs)."""
    with open(os.path.join(root, m.file)) as f:
        text = f.read()
    new, count = replace_once(text, m.old, m.new)
    return text, new, count


def apply(work, m):
    """Plants m in the tree at work; returns the file's original text."""
    text, new, count = mutated(work, m)
    if new is None:
        raise SystemExit(
            f"mutant {m.name}: its snippet occurs {count} times in {m.file} (needs exactly 1); "
            "re-anchor it to the current code"
        )
    with open(os.path.join(work, m.file), "w") as f:
        f.write(new)
    return text


def tested_status(rc) -> str:
    """The status of a mutant from its test run's return code (None: the run hung)."""
    return "SURVIVED" if rc == 0 else "caught" if rc is not None else "caught (hang)"


def final_status(m, status, detail):
    """(status, detail) of m with its equivalence taken into account (no detail for survivors)."""
    if m.equivalent:
        status = "equivalent" if status == "SURVIVED" else status + " (equiv?)"
    return status, detail if status != "SURVIVED" else ""


def run_mutant(work, m, timeout):
    """Applies m in the scratch tree, rebuilds, runs its tests, restores the file: (status, detail)."""
    path = os.path.join(work, m.file)
    original = apply(work, m)
    try:
        ok, log = build(work)
        if not ok:
            status, detail = "BUILD-ERROR", log.strip().splitlines()[-1][:100]
        else:
            rc, detail = run_tests(work, m.tests, timeout)
            status = tested_status(rc)
    finally:
        with open(path, "w") as f:
            f.write(original)
    return final_status(m, status, detail)


def mutant_parser(doc, workdir_name, timeout):
    """The command line every mutation script takes: --list, --only, --workdir, --timeout."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this mutant (repeatable)")
    ap.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), workdir_name),
        help="scratch copy of the tree, kept between runs (default: %(default)s)",
    )
    ap.add_argument("--timeout", type=int, default=timeout, help="seconds per test run (a hang counts as caught)")
    return ap


def choose(mutants, args, refuse=None):
    """The mutants args picks, each checked to anchor exactly once (refuse(m): a reason not to
    plant m, or None), or None after printing the list for --list."""
    names = [m.name for m in mutants]
    assert len(set(names)) == len(names), "duplicate mutant names"
    if args.list:
        for m in mutants:
            print(f"{m.name:45s} {m.file}{'  (equivalent)' if m.equivalent else ''}")
        return None
    unknown = set(args.only) - set(names)
    if unknown:
        raise SystemExit(f"unknown mutant(s): {', '.join(sorted(unknown))} (see --list)")
    chosen = [m for m in mutants if not args.only or m.name in args.only]
    for m in chosen:  # every snippet must match before anything runs
        why = refuse(m) if refuse else None
        if why:
            raise SystemExit(f"mutant {m.name}: {why}")
        count = mutated(ROOT, m)[2]
        if count != 1:
            raise SystemExit(f"mutant {m.name}: its snippet occurs {count} times in {m.file} (needs exactly 1)")
    return chosen


def run_all(work, chosen, run_one, timeout):
    """Runs the chosen mutants' tests on the unmutated tree, then run_one(work, m, timeout) for
    each mutant, printing a line per mutant: the rows (mutant, status)."""
    base_tests = sorted({t for m in chosen for t in m.tests})
    rc, msg = run_tests(work, base_tests, timeout)
    if rc != 0:
        raise SystemExit(f"the unmutated tree fails its tests: {msg}")
    rows = []
    for m in chosen:
        t0 = time.time()
        status, detail = run_one(work, m, timeout)
        rows.append((m, status))
        print(f"{m.name:45s} {status:12s} {time.time() - t0:6.0f}s  {detail[:70]}", flush=True)
    return rows


def print_score(rows):
    """The result table and score of rows; the exit code (0 when every scored mutant was caught)."""
    scored = [r for r in rows if not r[0].equivalent]
    caught = sum(r[1].startswith("caught") for r in scored)
    print("\n| mutant | file | result |\n|---|---|---|")
    for m, status in rows:
        print(f"| {m.name} | {m.file} | {status} |")
    print(f"\nscore: {caught} / {len(scored)} mutants caught ({len(rows) - len(scored)} equivalent mutants left out)")
    return 0 if caught == len(scored) else 1


def main():
    ap = mutant_parser(__doc__, "bnn_kernels_mutants", 300)
    ap.add_argument(
        "--skip-tests",
        default=None,
        metavar="TEXT",
        help="leave out test files whose path contains TEXT (e.g. _edges: the score without the edge tests)",
    )
    args = ap.parse_args()
    chosen = choose(MUTANTS, args)
    if chosen is None:
        return 0
    if args.skip_tests:
        chosen = [dataclasses.replace(m, tests=tuple(t for t in m.tests if args.skip_tests not in t)) for m in chosen]

    work = args.workdir
    os.makedirs(work, exist_ok=True)
    if EMULATE_AVX512:
        print("no AVX-512 on this CPU: the AVX-512 kernels run emulated (common/avx512.h)")
    sync(ROOT, work)
    ok, log = build(work)
    if not ok:
        raise SystemExit("baseline build failed:\n" + log[-4000:])
    rows = run_all(work, chosen, run_mutant, args.timeout)
    build(work)  # leave the scratch tree built from the unmutated sources
    return print_score(rows)


if __name__ == "__main__":
    sys.exit(main())
