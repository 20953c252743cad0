// binary_weight_linear's float epilogue (dot * scale + bias) on inputs where one fused
// multiply-add and a rounded multiply then add give different results: the emulated CUDA
// kernels (every path, every input type) must equal the CPU kernel bit for bit. Built and run
// by test_linear_epilogue.py (with -ffp-contract=off, the project's CPU flags).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "common/bits.h"
#include "linear/binary_weight_linear.h"
#include "linear/binary_weight_linear_cuda.h"

using namespace bnn;

template <typename Acc>
static int run(std::mt19937_64& rng, int64_t m, int64_t n, int64_t k, int* exposed) {
  const int64_t words = words_for_bits(k);
  std::vector<int32_t> w(n * words);
  for (auto& v : w) v = static_cast<int32_t>(rng());
  for (int64_t r = 0; r < n; ++r) w[r * words + words - 1] &= static_cast<int32_t>(tail_mask(k));
  std::vector<Acc> x(m * k), scale(n), bias(n);
  for (auto& v : x) v = static_cast<Acc>(static_cast<int>(rng() % 17) - 8);  // exact dot products
  std::uniform_real_distribution<double> u(0.5, 1.5);
  for (auto& v : scale) v = static_cast<Acc>(u(rng));
  // bias cancels row 0's rounded product: 0 unfused, the product's rounding error fused
  for (int64_t j = 0; j < n; ++j) {
    Acc d = 0;
    for (int64_t c = 0; c < k; ++c) d += ((w[j * words + c / 32] >> (c % 32)) & 1) ? x[c] : -x[c];
    const Acc p = d * scale[j];
    bias[j] = j % 2 ? static_cast<Acc>(u(rng) - 1.0) : -p;
    if (j % 2 == 0) *exposed += std::fma(d, scale[j], bias[j]) != p + bias[j];
  }
  std::vector<Acc> want(m * n), got(m * n);
  cpu::binary_weight_linear<Acc>(x.data(), m, k, w.data(), n, scale.data(), bias.data(), want.data(), 1);
  int bad = 0;
  auto check = [&](cuda::LinearXType type, const void* xv, const char* name) {
    for (auto path : {cuda::LinearPath::Gemv, cuda::LinearPath::Tiled}) {
      std::fill(got.begin(), got.end(), Acc(-7));
      cuda::launch_binary_weight_linear(type, xv, m, k, w.data(), n, scale.data(), bias.data(), got.data(), path, nullptr);
      for (int64_t i = 0; i < m * n; ++i)
        if (std::memcmp(&got[i], &want[i], sizeof(Acc)) != 0) {
          if (bad++ < 5)
            fprintf(stderr, "FAIL %s path=%d m=%ld n=%ld: cuda %.9g cpu %.9g\n", name, static_cast<int>(path),
                    static_cast<long>(i / n), static_cast<long>(i % n), static_cast<double>(got[i]),
                    static_cast<double>(want[i]));
        }
    }
  };
  if constexpr (sizeof(Acc) == 8) {
    check(cuda::LinearXType::F64, x.data(), "f64");
  } else {
    check(cuda::LinearXType::F32, x.data(), "f32");
    std::vector<__half> xh(m * k);
    std::vector<__nv_bfloat16> xb(m * k);
    for (int64_t i = 0; i < m * k; ++i) xh[i] = __float2half(x[i]), xb[i] = __float2bfloat16(x[i]);
    check(cuda::LinearXType::F16, xh.data(), "f16");
    check(cuda::LinearXType::BF16, xb.data(), "bf16");
  }
  return bad;
}

int main() {
  std::mt19937_64 rng(2024);
  int bad = 0, exposed32 = 0, exposed64 = 0;
  for (int64_t k : {37, 300, 1100}) {
    bad += run<float>(rng, 9, 70, k, &exposed32);  // 9 rows: GEMV (8-row blocks) and tiled
    bad += run<double>(rng, 9, 70, k, &exposed64);
  }
  // 105 cancelled entries per type: most must tell fused from unfused, or nothing is tested
  printf("exposed f32 %d f64 %d of 105, %d mismatches\n", exposed32, exposed64, bad);
  return bad == 0 && exposed32 > 60 && exposed64 > 60 ? 0 : 1;
}
