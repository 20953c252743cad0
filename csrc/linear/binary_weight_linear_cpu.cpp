// Sign-flip dot products: bit 1 keeps x, bit 0 negates it. float32 on AVX-512, or on AVX2 with
// FMA, runs a panel kernel (linear/panel.h: FMAs with +-1.0f in the scalar order, weights
// transposed once and kept between calls); other types and CPUs use the scalar loop. Every
// path gives the same results, bit for bit.
#include "linear/binary_weight_linear.h"

#include <algorithm>

#include "common/bits.h"
#include "common/cpu_features.h"
#include "common/prepared_cache.h"
#include "linear/linear_kernels.h"
#include "linear/panel.h"

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

// Panel chunks of at most about this many bytes of panel bits, so a chunk stays in cache while
// every row tile passes over it.
constexpr int64_t kChunkBytes = int64_t(256) << 10;
constexpr int64_t kRowBlock = 16 * kPanelRows;

void linear_panels(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                   const float* bias, float* out, int nt) {
  const int64_t words = words_for_bits(K), panels = panels_for(N);
  static thread_local PreparedCache cache;
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(
      cache.get(reinterpret_cast<const uint32_t*>(w), size_t(N * words), {/*layout*/ 0x6c696e, N, K},
                size_t((panels * K + 1) / 2),
                [&](uint32_t* dst) { panel_bits(w, 1, N, K, words, reinterpret_cast<uint16_t*>(dst), nt); }));
  const int64_t row_blocks = (M + kRowBlock - 1) / kRowBlock;
  // panels per unit: as many as stay in cache, as few as leave about 4 units per thread
  const int64_t chunk =
      std::max<int64_t>(1, std::min(kChunkBytes / std::max<int64_t>(1, 2 * K), panels * row_blocks / (4 * nt)));
  const int64_t chunks = (panels + chunk - 1) / chunk;
  const PanelRowsFn panel_rows = select_panel_rows();
#pragma omp parallel for collapse(2) num_threads(nt) schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const int64_t c0 = c * chunk * kPanel, r0 = rb * kRowBlock;
      panel_rows(x + r0 * K, std::min(kRowBlock, M - r0), K, bits + c * chunk * K, std::min(chunk * kPanel, N - c0),
                 scale ? scale + c0 : nullptr, bias ? bias + c0 : nullptr, out + r0 * N + c0, N);
    }
  }
}

}  // namespace

template <>
void binary_weight_linear<float>(const float* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const float* scale,
                                 const float* bias, float* out, int num_threads) {
  if (use_panels()) return linear_panels(x, M, K, w, N, scale, bias, out, sane_threads(num_threads));
  linear_scalar(x, M, K, w, N, scale, bias, out, sane_threads(num_threads));
}

template <>
void binary_weight_linear<double>(const double* x, int64_t M, int64_t K, const int32_t* w, int64_t N,
                                  const double* scale, const double* bias, double* out, int num_threads) {
  linear_scalar(x, M, K, w, N, scale, bias, out, sane_threads(num_threads));
}

template <typename T>
void linear_rows(const T* x, int64_t M, int64_t K, const int32_t* w, int64_t N, const T* scale, const T* bias, T* out,
                 int64_t ldo) {
  const int64_t words = words_for_bits(K);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) scalar_one(x, K, w, words, scale, bias, out, ldo, m, n);
}

template void linear_rows<float>(const float*, int64_t, int64_t, const int32_t*, int64_t, const float*, const float*,
                                 float*, int64_t);
template void linear_rows<double>(const double*, int64_t, int64_t, const int32_t*, int64_t, const double*,
                                  const double*, double*, int64_t);

}  // namespace bnn::cpu
