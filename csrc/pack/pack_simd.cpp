// Vectorized float32 packing: compare 16 (AVX-512) or 8 (AVX2) values against their
// thresholds at once and take the comparison mask as bits. _CMP_GE_OQ is false for NaN,
// exactly like the scalar `x >= t`.
#include "pack/pack_simd.h"

#include "common/avx512.h"
#include "common/bits.h"

#ifdef BNN_HAVE_AVX512_INTRINSICS

namespace bnn::cpu {
namespace {

BNN_TARGET_AVX512F inline uint32_t word_avx512(const float* x, const float* t, bool per_channel, __m512 tv) {
  const __m512 t0 = per_channel ? _mm512_loadu_ps(t) : tv;
  const __m512 t1 = per_channel ? _mm512_loadu_ps(t + 16) : tv;
  const uint32_t lo = _mm512_cmp_ps_mask(_mm512_loadu_ps(x), t0, _CMP_GE_OQ);
  const uint32_t hi = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16), t1, _CMP_GE_OQ);
  return lo | (hi << 16);
}

__attribute__((target("avx2"))) inline uint32_t word_avx2(const float* x, const float* t, bool per_channel, __m256 tv) {
  uint32_t w = 0;
  for (int q = 0; q < 4; ++q) {
    const __m256 th = per_channel ? _mm256_loadu_ps(t + 8 * q) : tv;
    const int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + 8 * q), th, _CMP_GE_OQ));
    w |= static_cast<uint32_t>(m) << (8 * q);
  }
  return w;
}

inline uint32_t tail_word(const float* x, const float* t, bool per_channel, int n) {
  uint32_t w = 0;
  for (int j = 0; j < n; ++j) w |= static_cast<uint32_t>(x[j] >= (per_channel ? t[j] : t[0])) << j;
  return w;
}

using RowFn = void (*)(const float* x, int64_t k, const float* thr, bool per_channel, uint32_t* out);

BNN_TARGET_AVX512F void row_avx512(const float* x, int64_t k, const float* thr, bool pc, uint32_t* o) {
  const __m512 tv = _mm512_set1_ps(thr[0]);
  const int64_t full = k / 32;
  for (int64_t w = 0; w < full; ++w) o[w] = word_avx512(x + 32 * w, pc ? thr + 32 * w : thr, pc, tv);
  if (32 * full < k)
    o[full] = tail_word(x + 32 * full, pc ? thr + 32 * full : thr, pc, static_cast<int>(k - 32 * full));
}

__attribute__((target("avx2"))) void row_avx2(const float* x, int64_t k, const float* thr, bool pc, uint32_t* o) {
  const __m256 tv = _mm256_set1_ps(thr[0]);
  const int64_t full = k / 32;
  for (int64_t w = 0; w < full; ++w) o[w] = word_avx2(x + 32 * w, pc ? thr + 32 * w : thr, pc, tv);
  if (32 * full < k)
    o[full] = tail_word(x + 32 * full, pc ? thr + 32 * full : thr, pc, static_cast<int>(k - 32 * full));
}

void pack_rows(RowFn row, const float* x, int64_t rows, int64_t k, const float* thr, int64_t thr_stride, int32_t* out,
               int nt) {
  const int64_t words = words_for_bits(k);
#pragma omp parallel for num_threads(sane_threads(nt)) schedule(static) if (rows * k > (1 << 20))
  for (int64_t r = 0; r < rows; ++r)
    row(x + r * k, k, thr, thr_stride != 0, reinterpret_cast<uint32_t*>(out + r * words));
}

}  // namespace

bool pack_bits_f32_simd(const float* x, int64_t rows, int64_t k, const float* thr, int64_t thr_stride, int32_t* out,
                        int num_threads) {
  if (use_avx512()) {
    pack_rows(row_avx512, x, rows, k, thr, thr_stride, out, num_threads);
    return true;
  }
  if (use_avx2()) {
    pack_rows(row_avx2, x, rows, k, thr, thr_stride, out, num_threads);
    return true;
  }
  return false;
}

}  // namespace bnn::cpu
#else
namespace bnn::cpu {
bool pack_bits_f32_simd(const float*, int64_t, int64_t, const float*, int64_t, int32_t*, int) { return false; }
}  // namespace bnn::cpu
#endif
