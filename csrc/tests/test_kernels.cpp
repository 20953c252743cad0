// C++ unit tests of the torch-free kernels: each against a naive bit-by-bit implementation
// on randomized shapes (exact equality for the integer ops). Run by ctest.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bitserial/bitserial_gemm.h"
#include "common/bits.h"
#include "conv/binary_conv.h"
#include "gemm/popcount_gemm.h"
#include "linear/binary_weight_linear.h"
#include "pack/pack.h"
#include "tests/expect.h"
#include "wconv/binary_weight_conv.h"

namespace {

using bnn::test::checks;
using bnn::test::expect;
using bnn::test::failures;
std::mt19937 rng(12345);

int rand_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

// rows x k random bits, packed with clean tails.
std::vector<int32_t> random_bits(int64_t rows, int64_t k) {
  const int64_t w = bnn::words_for_bits(k);
  std::vector<int32_t> v(rows * w);
  for (auto& x : v) x = static_cast<int32_t>(rng());
  for (int64_t r = 0; r < rows; ++r) v[r * w + w - 1] &= static_cast<int32_t>(bnn::tail_mask(k));
  return v;
}

int bit(const int32_t* row, int64_t c) { return (static_cast<uint32_t>(row[c >> 5]) >> (c & 31)) & 1u; }
int sgn(const int32_t* row, int64_t c) { return bit(row, c) ? 1 : -1; }

void test_pack() {
  for (int t = 0; t < 20; ++t) {
    const int64_t rows = rand_int(1, 5), k = rand_int(1, 200);
    std::vector<float> x(rows * k), thr(k);
    for (auto& v : x) v = static_cast<float>(rand_int(-3, 3));
    for (auto& v : thr) v = static_cast<float>(rand_int(-2, 2)) * 0.5f;
    std::vector<int32_t> out(rows * bnn::words_for_bits(k));
    bnn::cpu::pack_bits(x.data(), rows, k, thr.data(), 1, out.data(), 2);
    bool ok = true;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < 32 * bnn::words_for_bits(k); ++c) {
        const int want = c < k ? (x[r * k + c] >= thr[c]) : 0;
        ok &= bit(out.data() + r * bnn::words_for_bits(k), c) == want;
      }
    expect(ok, "pack_bits rows=" + std::to_string(rows) + " k=" + std::to_string(k));
  }
}

void test_xnor_gemm() {
  for (int t = 0; t < 30; ++t) {
    const int64_t m = rand_int(1, 40), n = rand_int(1, 40), k = rand_int(1, 700);
    auto a = random_bits(m, k), b = random_bits(n, k);
    std::vector<int32_t> c(m * n);
    bnn::cpu::xnor_gemm(a.data(), bnn::words_for_bits(k), b.data(), bnn::words_for_bits(k), m, n, k, c.data(), n, 2);
    bool ok = true;
    const int64_t w = bnn::words_for_bits(k);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int s = 0;
        for (int64_t q = 0; q < k; ++q) s += sgn(&a[i * w], q) * sgn(&b[j * w], q);
        ok &= c[i * n + j] == s;
      }
    expect(ok, "xnor_gemm m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
  }
}

void test_conv() {
  for (int t = 0; t < 30; ++t) {
    bnn::ConvParams p{};
    p.groups = rand_int(1, 3);
    const int64_t cg = rand_int(1, 70), og = rand_int(1, 5);
    p.batch = rand_int(1, 2);
    p.in_channels = cg * p.groups;
    p.out_channels = og * p.groups;
    p.kernel_h = rand_int(1, 3), p.kernel_w = rand_int(1, 3);
    p.stride_h = rand_int(1, 2), p.stride_w = rand_int(1, 3);
    p.pad_h = rand_int(0, 2), p.pad_w = rand_int(0, 2);
    p.dil_h = rand_int(1, 2), p.dil_w = rand_int(1, 2);
    p.in_h = rand_int(p.dil_h * (p.kernel_h - 1) + 1, 9), p.in_w = rand_int(p.dil_w * (p.kernel_w - 1) + 1, 9);
    p.out_h = bnn::conv_out_size(p.in_h, p.kernel_h, p.stride_h, p.pad_h, p.dil_h);
    p.out_w = bnn::conv_out_size(p.in_w, p.kernel_w, p.stride_w, p.pad_w, p.dil_w);
    p.pad_value = rand_int(-1, 1);
    const int64_t wx = bnn::words_for_bits(p.in_channels), wg = bnn::words_for_bits(cg);
    auto x = random_bits(p.batch * p.in_h * p.in_w, p.in_channels);
    auto w = random_bits(p.out_channels * p.kernel_h * p.kernel_w, cg);
    std::vector<int32_t> out(p.batch * p.out_h * p.out_w * p.out_channels);
    bnn::cpu::binary_conv2d(x.data(), w.data(), p, out.data(), 2);
    bool ok = true;
    for (int64_t n = 0; n < p.batch; ++n)
      for (int64_t oh = 0; oh < p.out_h; ++oh)
        for (int64_t ow = 0; ow < p.out_w; ++ow)
          for (int64_t o = 0; o < p.out_channels; ++o) {
            const int64_t g = o / og;
            int s = 0;
            for (int64_t kh = 0; kh < p.kernel_h; ++kh)
              for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
                const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dil_h;
                const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dil_w;
                const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
                const int32_t* wr = &w[((o * p.kernel_h + kh) * p.kernel_w + kw) * wg];
                for (int64_t c = 0; c < cg; ++c) {
                  const int xv = inside ? sgn(&x[((n * p.in_h + ih) * p.in_w + iw) * wx], g * cg + c) : p.pad_value;
                  s += xv * sgn(wr, c);
                }
              }
            ok &= out[((n * p.out_h + oh) * p.out_w + ow) * p.out_channels + o] == s;
          }
    expect(ok, "binary_conv2d case " + std::to_string(t) + " pad_value=" + std::to_string(p.pad_value));
  }
}

void test_bitserial() {
  for (int t = 0; t < 20; ++t) {
    const int64_t P = rand_int(1, 4), Q = rand_int(1, 3), m = rand_int(1, 20), n = rand_int(1, 20),
                  k = rand_int(1, 300);
    std::vector<int64_t> ac(P), wc(Q);
    for (auto& c : ac) c = rand_int(-4, 4);
    for (auto& c : wc) c = rand_int(-4, 4);
    const int64_t ao = rand_int(-2, 2), wo = rand_int(-2, 2);
    auto a = random_bits(P * m, k), w = random_bits(Q * n, k);
    const int64_t wd = bnn::words_for_bits(k);
    for (bool reduce : {true, false}) {
      std::vector<int32_t> out(reduce ? m * n : P * m * n);
      bnn::cpu::bitserial_gemm(a.data(), P, w.data(), Q, m, n, k, ac.data(), wc.data(), ao, wo, reduce, out.data(), 2);
      bool ok = true;
      for (int64_t p = 0; p < (reduce ? 1 : P); ++p)
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            int64_t s = 0;
            for (int64_t c = 0; c < k; ++c) {
              int64_t av = 0, wv = wo;
              if (reduce) {
                av = ao;
                for (int64_t pp = 0; pp < P; ++pp) av += ac[pp] * bit(&a[(pp * m + i) * wd], c);
              } else {
                av = bit(&a[(p * m + i) * wd], c);
              }
              for (int64_t q = 0; q < Q; ++q) wv += wc[q] * bit(&w[(q * n + j) * wd], c);
              s += av * wv;
            }
            ok &= out[(p * m + i) * n + j] == s;
          }
      expect(ok, std::string("bitserial_gemm reduce=") + (reduce ? "1" : "0"));
    }
  }
}

// The operands of a binary-weight layer (binary_weight_linear, binary_weight_conv2d): x of
// x_size values, small integers (every sum exact, on every ISA path) or standard normal; a
// multiplier in 1..4 and a bias in -4..4 per output channel; the packed sign bits of w
// (w_rows rows of k bits).
template <typename T>
struct WeightLayerOperands {
  std::vector<T> x, mult, bias;
  std::vector<int32_t> w;
};

template <typename T>
WeightLayerOperands<T> weight_layer_operands(int64_t x_size, int64_t channels, int64_t w_rows, int64_t k,
                                             bool small_ints) {
  WeightLayerOperands<T> o{std::vector<T>(x_size), std::vector<T>(channels), std::vector<T>(channels), {}};
  std::normal_distribution<double> nd;
  for (auto& v : o.x) v = small_ints ? static_cast<T>(rand_int(-8, 8)) : static_cast<T>(nd(rng));
  for (auto& v : o.mult) v = static_cast<T>(rand_int(1, 4));
  for (auto& v : o.bias) v = static_cast<T>(rand_int(-4, 4));
  o.w = random_bits(w_rows, k);
  return o;
}

void test_linear() {
  for (int t = 0; t < 20; ++t) {
    const int64_t m = rand_int(1, 9), n = rand_int(1, 20), k = rand_int(1, 300);
    const auto [x, scale, bias, w] = weight_layer_operands<float>(m * k, n, n, k, true);
    std::vector<float> out(m * n);
    bnn::cpu::binary_weight_linear<float>(x.data(), m, k, w.data(), n, scale.data(), bias.data(), out.data(), 2);
    bool ok = true;
    const int64_t wd = bnn::words_for_bits(k);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t c = 0; c < k; ++c) s += x[i * k + c] * sgn(&w[j * wd], c);
        ok &= out[i * n + j] == static_cast<float>(s * scale[j] + bias[j]);
      }
    expect(ok, "binary_weight_linear m=" + std::to_string(m) + " k=" + std::to_string(k));
  }
}

// binary_weight_conv2d: float32 with small-integer x and float64 with random x (one sequential
// sum over k = tap * Cg + c from +0: bit for bit).
template <typename T>
void wconv_case(int t) {
  bnn::ConvParams p{};
  p.groups = rand_int(1, 3);
  const int64_t cg = rand_int(1, 70), og = rand_int(1, 5);
  p.batch = rand_int(1, 2), p.in_channels = cg * p.groups, p.out_channels = og * p.groups;
  p.kernel_h = rand_int(1, 3), p.kernel_w = rand_int(1, 3);
  p.stride_h = rand_int(1, 2), p.stride_w = rand_int(1, 3), p.pad_h = rand_int(0, 2), p.pad_w = rand_int(0, 2);
  p.dil_h = rand_int(1, 2), p.dil_w = rand_int(1, 2);
  p.in_h = rand_int(p.dil_h * (p.kernel_h - 1) + 1, 9), p.in_w = rand_int(p.dil_w * (p.kernel_w - 1) + 1, 9);
  p.out_h = bnn::conv_out_size(p.in_h, p.kernel_h, p.stride_h, p.pad_h, p.dil_h);
  p.out_w = bnn::conv_out_size(p.in_w, p.kernel_w, p.stride_w, p.pad_w, p.dil_w);
  const bool exact_ints = sizeof(T) == 4;
  const auto [x, mult, bias, w] = weight_layer_operands<T>(p.batch * p.in_h * p.in_w * p.in_channels, p.out_channels,
                                                           p.out_channels * p.kernel_h * p.kernel_w, cg, exact_ints);
  std::vector<T> out(p.batch * p.out_h * p.out_w * p.out_channels);
  bnn::cpu::binary_weight_conv2d<T>(x.data(), w.data(), p, mult.data(), bias.data(), out.data(), 2);
  const int64_t wg = bnn::words_for_bits(cg);
  bool ok = true;
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t oh = 0; oh < p.out_h; ++oh)
      for (int64_t ow = 0; ow < p.out_w; ++ow)
        for (int64_t o = 0; o < p.out_channels; ++o) {
          T s = 0;
          for (int64_t kh = 0; kh < p.kernel_h; ++kh)
            for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
              const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dil_h;
              const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dil_w;
              const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
              const int32_t* wr = &w[((o * p.kernel_h + kh) * p.kernel_w + kw) * wg];
              for (int64_t c = 0; c < cg; ++c) {
                const T xv = inside ? x[((n * p.in_h + ih) * p.in_w + iw) * p.in_channels + (o / og) * cg + c] : T(0);
                s += bit(wr, c) ? xv : -xv;
              }
            }
          const T want = s * mult[o] + bias[o];
          ok &= out[((n * p.out_h + oh) * p.out_w + ow) * p.out_channels + o] == want;
        }
  expect(ok, "binary_weight_conv2d<" + std::string(exact_ints ? "float" : "double") + "> case " + std::to_string(t));
}

void test_binary_weight_conv() {
  for (int t = 0; t < 15; ++t) wconv_case<float>(t);
  for (int t = 0; t < 15; ++t) wconv_case<double>(t);
}

}  // namespace

int main() {
  test_pack();
  test_xnor_gemm();
  test_conv();
  test_bitserial();
  test_linear();
  test_binary_weight_conv();
  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
