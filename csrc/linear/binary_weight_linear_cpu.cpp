// Sign-flip dot products: bit 1 keeps x, bit 0 negates it. The AVX2 path turns each weight
// byte into eight sign masks through a 256-entry table and XORs them into 8 floats of x,
// for 4 rows of x at a time; AVX-512 CPUs use binary_weight_linear_avx512.cpp; other types
// and CPUs use the scalar loop.
#include "linear/binary_weight_linear.h"

#include <algorithm>

#include "common/bits.h"
#include "common/cpu_features.h"
#include "linear/linear_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace bnn::cpu {
namespace {

template <typename T>
inline T dot_scalar(const T* x, const uint32_t* w, int64_t K, int64_t k0) {
  T s = 0;
  for (int64_t c = k0; c < K; ++c) s += ((w[c >> 5] >> (c & 31)) & 1u) ? x[c] : -x[c];
  return s;
}

template <typename T>
inline T finish(T dot, const T* scale, const T* bias, int64_t n) {
  if (scale) dot *= scale[n];
  if (bias) dot += bias[n];
  return dot;
}

// Output (m, n) of out (row stride ldo): one sequential sum over k = 0 .. K-1 from +0.
template <typename T>
inline void scalar_one(const T* x, int64_t K, const int32_t* w, int64_t words, const T* scale, const T* bias, T* out,
                       int64_t ldo, int64_t m, int64_t n) {
  const uint32_t* wn = reinterpret_cast<const uint32_t*>(w) + n * words;
  out[m * ldo + n] = finish(dot_scalar(x + m * K, wn, K, 0), scale, bias, n);
}

template <typename T>
void linear_scalar(const T* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const T* scale, const T* bias, T* out,
                   int nt) {
  const int64_t words = words_for_bits(K);
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) scalar_one(x, K, w, words, scale, bias, out, N, m, n);
}

#if defined(__x86_64__)
struct SignTable {
  alignas(32) uint32_t mask[256][8];
  SignTable() {
    for (int b = 0; b < 256; ++b)
      for (int j = 0; j < 8; ++j) mask[b][j] = ((b >> j) & 1) ? 0u : 0x80000000u;
  }
};

__attribute__((target("avx2"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

constexpr int kAvx2MB = 4;

// Rows m0 .. m0 + 3 (those below M) against weight row n, into out (row stride ldo).
__attribute__((target("avx2"))) void avx2_tile(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t n,
                                               const float* scale, const float* bias, float* out, int64_t ldo,
                                               int64_t m0) {
  static const SignTable table;
  constexpr int MB = kAvx2MB;
  const int64_t words = words_for_bits(K);
  const int64_t kfull = K & ~int64_t(7);  // columns covered by whole weight bytes
  const int64_t mb = std::min<int64_t>(MB, M - m0);
  const uint8_t* wb = reinterpret_cast<const uint8_t*>(w + n * words);
  const uint32_t* wn = reinterpret_cast<const uint32_t*>(w) + n * words;
  __m256 acc[MB];
  for (int i = 0; i < MB; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t c = 0; c < kfull; c += 8) {
    const __m256 sgn = _mm256_load_ps(reinterpret_cast<const float*>(table.mask[wb[c >> 3]]));
    for (int i = 0; i < MB; ++i)
      if (i < mb) acc[i] = _mm256_add_ps(acc[i], _mm256_xor_ps(_mm256_loadu_ps(x + (m0 + i) * K + c), sgn));
  }
  for (int i = 0; i < mb; ++i) {
    const float* xm = x + (m0 + i) * K;
    out[(m0 + i) * ldo + n] = finish(hsum(acc[i]) + dot_scalar(xm, wn, K, kfull), scale, bias, n);
  }
}

void linear_avx2(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                 const float* bias, float* out, int nt) {
  const int64_t m_tiles = (M + kAvx2MB - 1) / kAvx2MB;
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static)
  for (int64_t t = 0; t < m_tiles; ++t)
    for (int64_t n = 0; n < N; ++n) avx2_tile(x, M, K, w, n, scale, bias, out, N, t * kAvx2MB);
}
#endif

}  // namespace

template <>
void binary_weight_linear<float>(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                                 const float* bias, float* out, int num_threads) {
#if defined(__x86_64__)
  if (use_avx512()) return binary_weight_linear_avx512(x, M, K, w, N, scale, bias, out, sane_threads(num_threads));
  if (use_avx2()) return linear_avx2(x, M, K, w, N, scale, bias, out, sane_threads(num_threads));
#endif
  linear_scalar(x, M, K, w, N, scale, bias, out, sane_threads(num_threads));
}

template <>
void binary_weight_linear<double>(const double* x, int64_t M, int64_t K, const int32_t* w, int64_t N,
                                  const double* scale, const double* bias, double* out, int num_threads) {
  linear_scalar(x, M, K, w, N, scale, bias, out, sane_threads(num_threads));
}

template <>
void linear_rows<float>(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                        const float* bias, float* out, int64_t ldo) {
#if defined(__x86_64__)
  if (use_avx512()) return linear_rows_avx512(x, M, K, w, N, scale, bias, out, ldo);
#endif
  const int64_t words = words_for_bits(K);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) scalar_one(x, K, w, words, scale, bias, out, ldo, m, n);
}

template <>
void linear_rows<double>(const double* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const double* scale,
                         const double* bias, double* out, int64_t ldo) {
  const int64_t words = words_for_bits(K);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) scalar_one(x, K, w, words, scale, bias, out, ldo, m, n);
}

}  // namespace bnn::cpu
