// AVX-512 binary-weight GEMM: x . sign(w) = 2 * sum_{bit=1} x - sum x. Each 16-bit slice of a
// weight row is used directly as an AVX-512 write mask, so every 16 multiply-adds cost one
// masked add (the same as one FMA), with a 4x4 block of (row, weight) accumulators in
// registers so each load of x serves four weight rows.
#include <algorithm>

#include "common/avx512.h"
#include "common/bits.h"
#include "linear/linear_kernels.h"

#ifdef BNN_HAVE_AVX512_INTRINSICS

// GCC 12 warns about _mm*_undefined_* inside its own AVX-512 headers when they are inlined
// into target("avx512f") functions: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace bnn::cpu {
namespace {

template <int MB, int NB>
BNN_TARGET_AVX512F void block(const float* x, int64_t K, const uint16_t* const* w16, const float* scale,
                              const float* bias, int64_t n0, float* out, int64_t ldo) {
  __m512 acc[MB][NB], sum[MB];
  for (int i = 0; i < MB; ++i) {
    sum[i] = _mm512_setzero_ps();
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  const int64_t chunks = K / 16;
  for (int64_t c = 0; c < chunks; ++c) {
    __m512 xv[MB];
    for (int i = 0; i < MB; ++i) {
      xv[i] = _mm512_loadu_ps(x + i * K + 16 * c);
      sum[i] = _mm512_add_ps(sum[i], xv[i]);
    }
    for (int j = 0; j < NB; ++j) {
      const __mmask16 m = w16[j][c];
      for (int i = 0; i < MB; ++i) acc[i][j] = _mm512_mask_add_ps(acc[i][j], m, acc[i][j], xv[i]);
    }
  }
  if (const int rem = static_cast<int>(K - 16 * chunks)) {  // last partial chunk, bits past K ignored
    const __mmask16 valid = static_cast<__mmask16>((1u << rem) - 1u);
    __m512 xv[MB];
    for (int i = 0; i < MB; ++i) {
      xv[i] = _mm512_maskz_loadu_ps(valid, x + i * K + 16 * chunks);
      sum[i] = _mm512_add_ps(sum[i], xv[i]);
    }
    for (int j = 0; j < NB; ++j) {
      const __mmask16 m = static_cast<__mmask16>(w16[j][chunks] & valid);
      for (int i = 0; i < MB; ++i) acc[i][j] = _mm512_mask_add_ps(acc[i][j], m, acc[i][j], xv[i]);
    }
  }
  for (int i = 0; i < MB; ++i) {
    const float total = _mm512_reduce_add_ps(sum[i]);
    for (int j = 0; j < NB; ++j) {
      float y = 2.0f * _mm512_reduce_add_ps(acc[i][j]) - total;
      if (scale) y *= scale[n0 + j];
      if (bias) y += bias[n0 + j];
      out[i * ldo + n0 + j] = y;
    }
  }
}

constexpr int kMB = 4, kNB = 4;

template <int MB>
void row_block(const float* x, int64_t K, const int32_t* w, int64_t words, int64_t n0, int64_t nb, const float* scale,
               const float* bias, float* out, int64_t ldo) {
  const uint16_t* w16[kNB];
  for (int j = 0; j < kNB; ++j)
    w16[j] = reinterpret_cast<const uint16_t*>(w + (n0 + std::min<int64_t>(j, nb - 1)) * words);
  if (nb == kNB) return block<MB, kNB>(x, K, w16, scale, bias, n0, out, ldo);
  for (int64_t j = 0; j < nb; ++j) block<MB, 1>(x, K, w16 + j, scale, bias, n0 + j, out, ldo);
}

// The kMB x kNB output tile at (m0, n0) of out (row stride ldo).
void tile(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale, const float* bias,
          float* out, int64_t ldo, int64_t m0, int64_t n0) {
  const int64_t words = words_for_bits(K);
  const int64_t mb = std::min<int64_t>(kMB, M - m0), nb = std::min<int64_t>(kNB, N - n0);
  const float* xm = x + m0 * K;
  float* om = out + m0 * ldo;
  if (mb == kMB) {
    row_block<kMB>(xm, K, w, words, n0, nb, scale, bias, om, ldo);
  } else {
    for (int64_t i = 0; i < mb; ++i) row_block<1>(xm + i * K, K, w, words, n0, nb, scale, bias, om + i * ldo, ldo);
  }
}

}  // namespace

void binary_weight_linear_avx512(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                                 const float* bias, float* out, int num_threads) {
  const int64_t m_tiles = (M + kMB - 1) / kMB, n_tiles = (N + kNB - 1) / kNB;
#pragma omp parallel for collapse(2) num_threads(sane_threads(num_threads)) schedule(static)
  for (int64_t t = 0; t < m_tiles; ++t)
    for (int64_t u = 0; u < n_tiles; ++u) tile(x, M, K, w, N, scale, bias, out, N, t * kMB, u * kNB);
}

void linear_rows_avx512(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                        const float* bias, float* out, int64_t ldo) {
  for (int64_t m0 = 0; m0 < M; m0 += kMB)
    for (int64_t n0 = 0; n0 < N; n0 += kNB) tile(x, M, K, w, N, scale, bias, out, ldo, m0, n0);
}

}  // namespace bnn::cpu
#else
namespace bnn::cpu {
void binary_weight_linear_avx512(const float*, int64_t, int64_t, const int32_t*, int64_t, const float*, const float*,
                                 float*, int) {}
void linear_rows_avx512(const float*, int64_t, int64_t, const int32_t*, int64_t, const float*, const float*, float*,
                        int64_t) {}
}  // namespace bnn::cpu
#endif
