// Runs the real CUDA kernels of csrc/ (rewritten by rewrite.py, PTX of the mma path emulated by
// emu_ptx.h) under the CPU emulation of emu.h and compares them with the CPU kernels bit for
// bit. Usage: emu_test [all|quick|pack|gemm|conv|bitserial|linear]. Built and run by
// test_cuda_emu.py.
#include <cmath>
#include <random>
#include "bitserial/bitserial_gemm.h"
#include "bitserial/bitserial_gemm_cuda.h"
#include "common/bits.h"
#include "conv/binary_conv.h"
#include "conv/binary_conv_cuda.h"
#include "gemm/popcount_gemm.h"
#include "gemm/popcount_gemm_cuda.h"
#include "linear/binary_weight_linear.h"
#include "linear/binary_weight_linear_cuda.h"
#include "pack/pack.h"
#include "pack/pack_cuda.h"

extern "C" cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
extern "C" cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrComputeCapabilityMajor ? 8 : 0;  // sm_80: the mma path runs (emulated PTX)
  return cudaSuccess;
}
extern "C" cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void*) {
  *a = {}, a->ptxVersion = a->binaryVersion = 80;  // sm_80 code loaded: the mma path runs
  return cudaSuccess;
}

using namespace bnn;
static std::mt19937_64 rng(42);
static int failures = 0, checks = 0;
#define CHECK(cond, ...) do { ++checks; if (!(cond)) { ++failures; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } while (0)

std::vector<int32_t> rand_words(size_t n) { std::vector<int32_t> v(n); for (auto& x : v) x = (int32_t)rng(); return v; }
std::vector<int32_t> rand_bits(int64_t rows, int64_t k, bool dirty, int64_t ld = -1) {
  const int64_t w = words_for_bits(k); if (ld < 0) ld = w;
  auto v = rand_words(rows * ld);
  if (!dirty) for (int64_t r = 0; r < rows; ++r) v[r * ld + w - 1] &= (int32_t)tail_mask(k);
  return v;
}

void test_pack() {
  for (int64_t k : {1, 5, 31, 32, 33, 70, 100}) for (int64_t rows : {1, 3, 9}) for (int per : {0, 1}) {
    std::vector<float> xf(rows * k); std::vector<double> xd(rows * k); std::vector<__half> xh(rows * k);
    std::vector<__nv_bfloat16> xb(rows * k); std::vector<int16_t> xi(rows * k); std::vector<int64_t> xl(rows * k);
    std::normal_distribution<float> nd;
    for (int64_t i = 0; i < rows * k; ++i) {
      float v = nd(rng); if (i % 7 == 0) v = 0.f; if (i % 11 == 0) v = NAN;
      xf[i] = v; xd[i] = v; xh[i] = __float2half(v); xb[i] = __float2bfloat16(v);
      xi[i] = (int16_t)(rng() % 200) - 100; xl[i] = (int64_t)(rng() % 2000) - 1000;
    }
    std::vector<float> tf(k); std::vector<double> td(k);
    for (int64_t c = 0; c < k; ++c) { tf[c] = per ? nd(rng) * 0.5f : 0.25f; td[c] = per ? tf[c] * 37.0 : 3.0; }
    const int64_t words = words_for_bits(k);
    std::vector<int32_t> a(rows * words), b(rows * words);
    auto cmp = [&](const char* name) { CHECK(a == b, "pack %s k=%ld rows=%ld per=%d", name, (long)k, (long)rows, per); };
    cpu::pack_bits(xf.data(), rows, k, tf.data(), per, a.data(), 1);
    cuda::launch_pack_bits(cuda::PackType::F32, xf.data(), rows, k, tf.data(), per, b.data(), nullptr); cmp("f32");
    cpu::pack_bits(xd.data(), rows, k, td.data(), per, a.data(), 1);
    cuda::launch_pack_bits(cuda::PackType::F64, xd.data(), rows, k, td.data(), per, b.data(), nullptr); cmp("f64");
    std::vector<float> hf(rows * k), bf(rows * k);
    for (int64_t i = 0; i < rows * k; ++i) hf[i] = __half2float(xh[i]), bf[i] = __bfloat162float(xb[i]);
    cpu::pack_bits(hf.data(), rows, k, tf.data(), per, a.data(), 1);
    cuda::launch_pack_bits(cuda::PackType::F16, xh.data(), rows, k, tf.data(), per, b.data(), nullptr); cmp("f16");
    cpu::pack_bits(bf.data(), rows, k, tf.data(), per, a.data(), 1);
    cuda::launch_pack_bits(cuda::PackType::BF16, xb.data(), rows, k, tf.data(), per, b.data(), nullptr); cmp("bf16");
    cpu::pack_bits(xi.data(), rows, k, td.data(), per, a.data(), 1);
    cuda::launch_pack_bits(cuda::PackType::I16, xi.data(), rows, k, td.data(), per, b.data(), nullptr); cmp("i16");
    cpu::pack_bits(xl.data(), rows, k, td.data(), per, a.data(), 1);
    cuda::launch_pack_bits(cuda::PackType::I64, xl.data(), rows, k, td.data(), per, b.data(), nullptr); cmp("i64");
    // unpack (4- and 2-byte elements)
    auto bits = rand_bits(rows, k, true);
    std::vector<uint32_t> u1(rows * k), u2(rows * k);
    cpu::unpack_bits(bits.data(), rows, k, 4, 0x3f800000u, 0xbf800000u, u1.data(), 1);
    cuda::launch_unpack_bits(bits.data(), rows, k, 4, 0x3f800000u, 0xbf800000u, u2.data(), nullptr);
    CHECK(u1 == u2, "unpack4 k=%ld", (long)k);
    std::vector<uint16_t> h1(rows * k), h2(rows * k);
    cpu::unpack_bits(bits.data(), rows, k, 2, 0x3c00, 0xbc00, h1.data(), 1);
    cuda::launch_unpack_bits(bits.data(), rows, k, 2, 0x3c00, 0xbc00, h2.data(), nullptr);
    CHECK(h1 == h2, "unpack2 k=%ld", (long)k);
    // to_bitplanes
    for (int nbits : {1, 3, 8, 16}) for (bool sg : {false, true}) {
      std::vector<int64_t> q(rows * k);
      const int64_t lo = sg ? -(int64_t(1) << (nbits - 1)) : 0, span = int64_t(1) << nbits;
      for (auto& v : q) v = lo + (int64_t)(rng() % span);
      std::vector<int32_t> p1(nbits * rows * words), p2(nbits * rows * words);
      int64_t bad = INT64_MAX;
      const int64_t r1 = cpu::to_bitplanes(q.data(), rows, k, nbits, sg, p1.data(), 1);
      cuda::launch_to_bitplanes(q.data(), rows, k, nbits, sg, p2.data(), &bad, nullptr);
      CHECK(r1 == -1 && bad == INT64_MAX && p1 == p2, "bitplanes nbits=%d signed=%d k=%ld", nbits, sg, (long)k);
      if (rows * k > 3) {
        q[rows * k - 1] = lo + span; q[2] = lo - 1;
        bad = INT64_MAX;
        const int64_t r2 = cpu::to_bitplanes(q.data(), rows, k, nbits, sg, p1.data(), 1);
        cuda::launch_to_bitplanes(q.data(), rows, k, nbits, sg, p2.data(), &bad, nullptr);
        CHECK(r2 == bad, "bitplanes bad index cpu=%ld emu=%ld", (long)r2, (long)bad);
      }
    }
  }
}

void test_gemm(bool quick) {
  const cuda::GemmPath paths[] = {cuda::GemmPath::Auto, cuda::GemmPath::Popc, cuda::GemmPath::Gemv, cuda::GemmPath::Mma};
  struct S { int64_t m, n, k; };
  std::vector<S> shapes = {S{1, 1, 1}, S{5, 7, 33}, S{8, 40, 300}, S{9, 70, 100}, S{65, 66, 1000}, S{3, 130, 128}, S{70, 5, 4100}};
  if (!quick) shapes.insert(shapes.end(), {S{130, 140, 2080}, S{129, 257, 1056}});  // several mma blocks and k tiles
  for (S s : shapes) {
    for (bool dirty : {false, true}) {
      auto a = rand_bits(s.m, s.k, dirty), b = rand_bits(s.n, s.k, dirty);
      std::vector<int32_t> c1(s.m * s.n), c2(s.m * s.n);
      cpu::xnor_gemm(a.data(), words_for_bits(s.k), b.data(), words_for_bits(s.k), s.m, s.n, s.k, c1.data(), s.n, 1);
      std::vector<char> ws(cuda::xnor_gemm_workspace_bytes(s.m, s.n));
      for (auto p : paths) {
        std::fill(c2.begin(), c2.end(), 12345);
        cuda::launch_xnor_gemm(a.data(), b.data(), s.m, s.n, s.k, c2.data(), s.n, ws.data(), p, nullptr);
        CHECK(c1 == c2, "xnor m=%ld n=%ld k=%ld dirty=%d path=%s", (long)s.m, (long)s.n, (long)s.k, dirty, cuda::gemm_path_name(p));
      }
    }
  }
}

void test_conv() {
  std::uniform_int_distribution<int> pick(0, 1000);
  int cases = 0;
  for (int c : {3, 32, 40, 64, 100}) for (int groups : {1, 2, 4}) for (int kh : {1, 3}) for (int kw : {1, 2, 3}) {
    if (c % groups) continue;
    for (int variant = 0; variant < 2; ++variant) {
      ConvParams p{};
      p.batch = 2, p.in_h = 6, p.in_w = 5, p.in_channels = c, p.out_channels = 2 * groups, p.kernel_h = kh, p.kernel_w = kw;
      p.groups = groups;
      p.stride_h = 1 + pick(rng) % 2, p.stride_w = 1 + pick(rng) % 3, p.pad_h = pick(rng) % 3, p.pad_w = pick(rng) % 2;
      p.dil_h = 1 + pick(rng) % 2, p.dil_w = 1 + pick(rng) % 3; p.pad_value = (int)(pick(rng) % 3) - 1;
      p.out_h = conv_out_size(p.in_h, kh, p.stride_h, p.pad_h, p.dil_h);
      p.out_w = conv_out_size(p.in_w, kw, p.stride_w, p.pad_w, p.dil_w);
      if (p.out_h < 1 || p.out_w < 1) continue;
      auto x = rand_bits(p.batch * p.in_h * p.in_w, c, variant == 1);
      auto w = rand_bits(p.out_channels * kh * kw, c / groups, true);
      const int64_t n_out = p.batch * p.out_h * p.out_w * p.out_channels;
      std::vector<int32_t> o1(n_out), o2(n_out);
      cpu::binary_conv2d(x.data(), w.data(), p, o1.data(), 1);
      std::vector<char> ws(cuda::binary_conv2d_workspace_bytes(p));
      for (auto path : {cuda::GemmPath::Popc, cuda::GemmPath::Gemv, cuda::GemmPath::Auto, cuda::GemmPath::Mma}) {
        std::fill(o2.begin(), o2.end(), 777);
        cuda::launch_binary_conv2d(x.data(), w.data(), p, o2.data(), ws.data(), path, nullptr);
        CHECK(o1 == o2, "conv c=%d g=%d k=%dx%d s=%ld,%ld p=%ld,%ld d=%ld,%ld pv=%d path=%s", c, groups, kh, kw,
              (long)p.stride_h, (long)p.stride_w, (long)p.pad_h, (long)p.pad_w, (long)p.dil_h, (long)p.dil_w, p.pad_value,
              cuda::gemm_path_name(path));
      }
      ++cases;
    }
  }
  fprintf(stderr, "conv cases: %d\n", cases);
}

void test_bitserial() {
  struct S { int64_t P, Q, M, N, k; std::vector<int64_t> ac, wc; int64_t ao, wo; };
  for (const S& s : {S{1, 1, 4, 5, 33, {2}, {2}, -1, -1}, S{4, 2, 17, 9, 100, {1, 2, 4, -8}, {1, -1}, 0, 0},
                     S{3, 2, 10, 12, 513, {5, -3, 7}, {3, 1}, -2, 2}, S{2, 3, 1, 30, 64, {1, 2}, {1, 2, -4}, 0, 1}}) {
    auto a = rand_bits(s.P * s.M, s.k, true), w = rand_bits(s.Q * s.N, s.k, true);
    for (bool reduce : {true, false}) {
      const int64_t n_out = (reduce ? 1 : s.P) * s.M * s.N;
      std::vector<int32_t> o1(n_out), o2(n_out);
      cpu::bitserial_gemm(a.data(), s.P, w.data(), s.Q, s.M, s.N, s.k, s.ac.data(), s.wc.data(), s.ao, s.wo, reduce, o1.data(), 1);
      std::vector<char> ws(cuda::bitserial_gemm_workspace_bytes(s.P, s.Q, s.M, s.N));
      for (auto path : {cuda::GemmPath::Popc, cuda::GemmPath::Gemv, cuda::GemmPath::Auto, cuda::GemmPath::Mma}) {
        cuda::launch_bitserial_gemm(a.data(), s.P, w.data(), s.Q, s.M, s.N, s.k, s.ac.data(), s.wc.data(), s.ao, s.wo,
                                    reduce, o2.data(), ws.data(), path, nullptr);
        CHECK(o1 == o2, "bitserial P=%ld M=%ld reduce=%d path=%s", (long)s.P, (long)s.M, reduce, cuda::gemm_path_name(path));
      }
    }
  }
}

void test_linear() {
  struct S { int64_t m, n, k; };
  for (S s : {S{1, 1, 1}, S{1, 33, 31}, S{3, 9, 100}, S{8, 6, 128 * 32 + 64}, S{9, 5, 300}, S{2, 5, 4096 + 256}, S{70, 66, 70}}) {
    for (bool affine : {false, true}) {
      std::vector<float> x(s.m * s.k), sc(s.n), bi(s.n), o1(s.m * s.n), o2(s.m * s.n);
      std::vector<double> xd(s.m * s.k), scd(s.n), bid(s.n), d1(s.m * s.n), d2(s.m * s.n);
      std::vector<__half> xh(s.m * s.k);
      for (int64_t i = 0; i < s.m * s.k; ++i) { x[i] = (float)((int)(rng() % 9) - 4); xd[i] = x[i]; xh[i] = __float2half(x[i]); }
      for (int64_t i = 0; i < s.n; ++i) { sc[i] = 0.5f * (1 + rng() % 4); bi[i] = (float)((int)(rng() % 7) - 3); scd[i] = sc[i]; bid[i] = bi[i]; }
      auto w = rand_bits(s.n, s.k, true);
      const float* S_ = affine ? sc.data() : nullptr; const float* B_ = affine ? bi.data() : nullptr;
      cpu::binary_weight_linear<float>(x.data(), s.m, s.k, w.data(), s.n, S_, B_, o1.data(), 1);
      cpu::binary_weight_linear<double>(xd.data(), s.m, s.k, w.data(), s.n, affine ? scd.data() : nullptr,
                                        affine ? bid.data() : nullptr, d1.data(), 1);
      for (auto path : {cuda::LinearPath::Gemv, cuda::LinearPath::Tiled, cuda::LinearPath::Auto}) {
        cuda::launch_binary_weight_linear(cuda::LinearXType::F32, x.data(), s.m, s.k, w.data(), s.n, S_, B_, o2.data(), path, nullptr);
        CHECK(o1 == o2, "linear f32 m=%ld n=%ld k=%ld path=%d", (long)s.m, (long)s.n, (long)s.k, (int)path);
        cuda::launch_binary_weight_linear(cuda::LinearXType::F16, xh.data(), s.m, s.k, w.data(), s.n, S_, B_, o2.data(), path, nullptr);
        CHECK(o1 == o2, "linear f16 m=%ld n=%ld k=%ld path=%d", (long)s.m, (long)s.n, (long)s.k, (int)path);
        cuda::launch_binary_weight_linear(cuda::LinearXType::F64, xd.data(), s.m, s.k, w.data(), s.n, affine ? scd.data() : nullptr,
                                          affine ? bid.data() : nullptr, d2.data(), path, nullptr);
        CHECK(d1 == d2, "linear f64 m=%ld n=%ld k=%ld path=%d", (long)s.m, (long)s.n, (long)s.k, (int)path);
      }
    }
  }
}

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "all";
  const bool quick = which == "quick";
  if (which == "all" || quick || which == "pack") test_pack();
  if (which == "all" || quick || which == "gemm") test_gemm(quick);
  if (which == "all" || which == "conv") test_conv();
  if (which == "all" || quick || which == "bitserial") test_bitserial();
  if (which == "all" || quick || which == "linear") test_linear();
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
