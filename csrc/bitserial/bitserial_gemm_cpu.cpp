// All weight planes are stacked as the GEMM's columns (w is already [Q*N, words]), so one
// AND-popcount GEMM per activation plane and row chunk yields every plane pair; the
// coefficients, offsets and row/column popcounts are applied in one integer epilogue.
#include "bitserial/bitserial_gemm.h"

#include <algorithm>
#include <vector>

#include "common/bits.h"
#include "gemm/popcount_gemm.h"

namespace bnn::cpu {

void row_popcounts(const int32_t* bits, int64_t rows, int64_t k, int64_t* out, int num_threads) {
  const int64_t words = words_for_bits(k);
  const uint32_t last = tail_mask(k);
#pragma omp parallel for num_threads(sane_threads(num_threads)) schedule(static) if (rows * words > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t* b = reinterpret_cast<const uint32_t*>(bits) + r * words;
    int64_t s = 0;
    for (int64_t j = 0; j + 1 < words; ++j) s += popcount32(b[j]);
    s += popcount32(b[words - 1] & last);
    out[r] = s;
  }
}

void bitserial_gemm(const int32_t* a, int64_t P, const int32_t* w, int64_t Q, int64_t M,
                    int64_t N, int64_t k, const int64_t* a_coefs, const int64_t* w_coefs,
                    int64_t a_offset, int64_t w_offset, bool reduce, int32_t* out,
                    int num_threads) {
  if (M <= 0 || N <= 0) return;
  const int64_t words = words_for_bits(k);
  const int nt = sane_threads(num_threads);
  std::vector<int64_t> pa(static_cast<size_t>(P * M)), pw(static_cast<size_t>(Q * N));
  row_popcounts(a, P * M, k, pa.data(), nt);
  row_popcounts(w, Q * N, k, pw.data(), nt);
  // Column term of the reduced result: a_offset * sum_k w[n, k].
  std::vector<int64_t> wsum(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    int64_t s = w_offset * k;
    for (int64_t q = 0; q < Q; ++q) s += w_coefs[q] * pw[q * N + n];
    wsum[n] = s;
  }
  // Every partial sum below is bounded by k * max|a| * max|w|, which the caller guarantees
  // fits int32, so the epilogue runs in int32 (vectorizable loops over n).
  std::vector<int32_t> wc(w_coefs, w_coefs + Q);
  if (reduce) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) out[m * N + n] = static_cast<int32_t>(a_offset * wsum[n]);
  }
  const int64_t qn = Q * N;
  const int64_t chunk = std::max<int64_t>(16, std::min<int64_t>(M, (int64_t(4) << 20) / qn));
  std::vector<int32_t> s(static_cast<size_t>(std::min(chunk, M) * qn));
  for (int64_t p = 0; p < P; ++p) {
    const int32_t ac = static_cast<int32_t>(a_coefs[p]);
    for (int64_t m0 = 0; m0 < M; m0 += chunk) {
      const int64_t mn = std::min(chunk, M - m0);
      popcount_gemm(BitOp::And, a + (p * M + m0) * words, words, w, words, mn, qn, words,
                    tail_mask(k), 1, 0, s.data(), qn, nt);
#pragma omp parallel num_threads(nt)
      {
        std::vector<int32_t> tmp(reduce ? static_cast<size_t>(N) : 0);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < mn; ++i) {
          const int64_t m = m0 + i;
          // v[n] = w_offset * popcount(a_p[m]) + sum_q w_coefs[q] * popcount(a_p[m] & w_q[n])
          int32_t* v = reduce ? tmp.data() : out + (p * M + m) * N;
          const int32_t row_term = static_cast<int32_t>(w_offset * pa[p * M + m]);
          const int32_t* si = s.data() + i * qn;
          for (int64_t n = 0; n < N; ++n) v[n] = row_term + wc[0] * si[n];
          for (int64_t q = 1; q < Q; ++q) {
            const int32_t c = wc[q];
            const int32_t* sq = si + q * N;
            for (int64_t n = 0; n < N; ++n) v[n] += c * sq[n];
          }
          if (reduce) {
            int32_t* o = out + m * N;
            for (int64_t n = 0; n < N; ++n) o[n] += ac * v[n];
          }
        }
      }
    }
  }
}

}  // namespace bnn::cpu
