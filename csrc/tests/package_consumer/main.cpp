// Packs two random +-1 matrices with the installed headers and library, multiplies them with
// xnor_gemm and checks every entry against a plain dot product of the signs.
#include <bnn_kernels/common/bits.h>
#include <bnn_kernels/gemm/popcount_gemm.h>
#include <bnn_kernels/pack/pack.h>

#include <cstdio>
#include <random>
#include <vector>

int main() {
  std::mt19937 gen(7);
  const int64_t m = 5, n = 9, k = 77, words = bnn::words_for_bits(k);
  std::normal_distribution<float> normal;
  std::vector<float> a(m * k), b(n * k);
  for (float& v : a) v = normal(gen);
  for (float& v : b) v = normal(gen);
  const float zero = 0.0f;
  std::vector<int32_t> a_bits(m * words), b_bits(n * words), c(m * n);
  bnn::cpu::pack_bits(a.data(), m, k, &zero, 0, a_bits.data(), 1);
  bnn::cpu::pack_bits(b.data(), n, k, &zero, 0, b_bits.data(), 1);
  bnn::cpu::xnor_gemm(a_bits.data(), words, b_bits.data(), words, m, n, k, c.data(), n, 1);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int32_t want = 0;
      for (int64_t t = 0; t < k; ++t) want += (a[i * k + t] >= 0) == (b[j * k + t] >= 0) ? 1 : -1;
      if (c[i * n + j] != want) {
        std::printf("mismatch at (%lld, %lld): %d != %d\n", (long long)i, (long long)j, c[i * n + j], want);
        return 1;
      }
    }
  std::printf("bnn_kernels package consumer: xnor_gemm %lldx%lldx%lld exact (%s)\n", (long long)m, (long long)n,
              (long long)k, bnn::cpu::gemm_isa());
  return 0;
}
