"""Mutants of the AVX2 bit-serial plane-sum kernel (avx2_plane_sum and the K loop it shares
with the AVX2 GEMM tile, count_tile, in csrc/gemm/microkernel_avx2.cpp), for
plant_cpu_bugs.py. Entries: (name, file, original snippet, replacement, test files). Only the
bit-serial tests run, so each result says whether they alone reach the kernel on an AVX2
machine (the cpu_isa fixture's auto and avx2 parameters)."""

MK2 = "csrc/gemm/microkernel_avx2.cpp"
BITSERIAL = [
    "tests/ops/test_bitserial_planes.py",
    "tests/ops/test_bitserial_edges.py",
    "tests/ops/test_bitserial_tiles.py",
    "tests/ops/test_bitserial.py",
]

# fmt: off
BITSERIAL_MUTANTS = [
    # wrong coefficient use: every pair of a call scaled by the first pair's coefficient
    ("plane_sum_avx2_first_pair_coef", MK2,
     "t.coef = _mm256_set1_epi32(c);", "t.coef = _mm256_set1_epi32(pairs[0].coef);", BITSERIAL),
    # wrong coefficient use: the scalar POPCNT columns added unscaled
    ("plane_sum_avx2_scalar_columns_unscaled", MK2,
     "cols[i][j] += c * static_cast<int32_t>(ss[i][j]);", "cols[i][j] += static_cast<int32_t>(ss[i][j]);",
     BITSERIAL),
    # a pair skipped: the last pair of every call
    ("plane_sum_avx2_last_pair_skipped", MK2,
     "for (int64_t e = 0; e < count; ++e) {\n    const int32_t c = pairs[e].coef;",
     "for (int64_t e = 0; e + 1 < count; ++e) {\n    const int32_t c = pairs[e].coef;", BITSERIAL),
    # a lane off by one: column 7 stored from the lane of column 3
    ("plane_sum_avx2_store_lane", MK2,
     "_mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)", "_mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 6)", BITSERIAL),
    # lanes swapped: the high halves taken for B register 0's counts
    ("plane_sum_avx2_interleave_swapped", MK2,
     "_mm256_or_si256(_mm256_sad_epu8(bytes[i][0], zero),\n"
     "_mm256_slli_epi64(_mm256_sad_epu8(bytes[i][1], zero), 32))",
     "_mm256_or_si256(_mm256_sad_epu8(bytes[i][1], zero),\n"
     "_mm256_slli_epi64(_mm256_sad_epu8(bytes[i][0], zero), 32))", BITSERIAL),
    # overflow of a byte counter: 32 K steps per chunk (8 bits a step: 256 wraps to 0)
    ("plane_sum_avx2_byte_overflow", MK2,
     "const int64_t end = kk + 31 < w64 ? kk + 31 : w64;",
     "const int64_t end = kk + 32 < w64 ? kk + 32 : w64;", BITSERIAL),
    # a tail word counted: the last chunk runs one K step past the K block
    ("plane_sum_avx2_k_step_past_block", MK2,
     "const int64_t end = kk + 31 < w64 ? kk + 31 : w64;",
     "const int64_t end = kk + 31 < w64 ? kk + 31 : w64 + 1;", BITSERIAL),
]
# fmt: on
