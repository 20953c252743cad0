// Every CUDA launcher of csrc/ run under the emulator and compared bit for bit with the CPU
// kernels, on randomized shapes with tails, dirty tail bits, every path and element type.
// Inputs are read-only device buffers, outputs and workspaces start never-written.
#include <cmath>

#include "bitserial/bitserial_gemm.h"
#include "bitserial/bitserial_gemm_cuda.h"
#include "conv/binary_conv.h"
#include "conv/binary_conv_cuda.h"
#include "gemm/popcount_gemm.h"
#include "gemm/and_gemm_cuda.h"
#include "linear/binary_weight_linear.h"
#include "linear/binary_weight_linear_cuda.h"
#include "pack/pack.h"
#include "pack/pack_cuda.h"
#include "test_util.h"

using namespace bnn;
using emu::DevBuf;

namespace emutest {
namespace {

template <class T, class Thr, class Cpu>
void pack_case(cuda::PackType type, const std::vector<T>& x, const std::vector<Cpu>& xc, int64_t rows, int64_t k,
               const std::vector<Thr>& thr, int per, const char* name) {
  const int64_t words = words_for_bits(k);
  std::vector<int32_t> ref(rows * words);
  cpu::pack_bits(xc.data(), rows, k, thr.data(), per, ref.data(), 1);
  DevBuf<T> dx(x);
  DevBuf<Thr> dt(thr);
  DevBuf<int32_t> out(rows * words);
  cuda::launch_pack_bits(type, dx.get(), rows, k, dt.get(), per, out.get(), nullptr);
  CHECK(same(out, ref), "pack %s k=%ld rows=%ld per=%d", name, (long)k, (long)rows, per);
}

template <class E>
void unpack_case(const std::vector<int32_t>& bits, int64_t rows, int64_t k, uint64_t plus, uint64_t minus) {
  std::vector<E> ref(rows * k);
  cpu::unpack_bits(bits.data(), rows, k, sizeof(E), plus, minus, ref.data(), 1);
  DevBuf<int32_t> db(bits);
  DevBuf<E> out(rows * k);
  cuda::launch_unpack_bits(db.get(), rows, k, sizeof(E), plus, minus, out.get(), nullptr);
  CHECK(same(out, ref), "unpack%zu k=%ld rows=%ld", sizeof(E), (long)k, (long)rows);
}

void bitplanes_case(std::vector<int64_t> q, int64_t rows, int64_t k, int nbits, bool sg, bool make_bad) {
  const int64_t words = words_for_bits(k);
  const int64_t lo = sg ? -(int64_t(1) << (nbits - 1)) : 0, span = int64_t(1) << nbits;
  if (make_bad) q[rows * k - 1] = lo + span, q[rows * k / 2] = lo - 1;
  std::vector<int32_t> ref(nbits * rows * words);
  const int64_t r = cpu::to_bitplanes(q.data(), rows, k, nbits, sg, ref.data(), 1);
  DevBuf<int64_t> dq(q);
  DevBuf<int32_t> out(nbits * rows * words);
  DevBuf<int64_t> bad(std::vector<int64_t>{INT64_MAX}, false);
  cuda::launch_to_bitplanes(dq.get(), rows, k, nbits, sg, out.get(), bad.get(), nullptr);
  const int64_t got = bad.host()[0];
  if (make_bad)
    CHECK(r == got, "bitplanes bad index cpu=%ld emu=%ld", (long)r, (long)got);
  else
    CHECK(r == -1 && got == INT64_MAX && same(out, ref), "bitplanes nbits=%d signed=%d k=%ld", nbits, sg, (long)k);
}

}  // namespace

void test_pack() {
  std::normal_distribution<float> nd;
  for (int64_t k : {1, 5, 31, 32, 33, 70, 100})
    for (int64_t rows : {1, 3, 9})
      for (int per : {0, 1}) {
        const int64_t n = rows * k;
        std::vector<float> xf(n), hf(n), bf(n);
        std::vector<double> xd(n), di(n);
        std::vector<__half> xh(n);
        std::vector<__nv_bfloat16> xb(n);
        std::vector<int8_t> i8(n);
        std::vector<uint8_t> u8(n);
        std::vector<int16_t> i16(n);
        std::vector<int32_t> i32(n);
        std::vector<int64_t> i64(n);
        for (int64_t i = 0; i < n; ++i) {
          float v = nd(rng);
          if (i % 7 == 0) v = 0.f;
          if (i % 11 == 0) v = NAN;
          xf[i] = v;
          xd[i] = v;
          xh[i] = __float2half(v);
          xb[i] = __float2bfloat16(v);
          hf[i] = __half2float(xh[i]);
          bf[i] = __bfloat162float(xb[i]);
          i8[i] = int8_t(rng() % 256 - 128);
          u8[i] = uint8_t(rng());
          i16[i] = int16_t(rng() % 200 - 100);
          i32[i] = int32_t(rng() % 4000001) - 2000000;
          i64[i] = int64_t(rng() % 2000) - 1000;
        }
        std::vector<float> tf(k);
        std::vector<double> td(k);
        for (int64_t c = 0; c < k; ++c) {
          tf[c] = per ? nd(rng) * 0.5f : 0.25f;
          td[c] = per ? tf[c] * 37.0 : 3.0;
        }
        pack_case(cuda::PackType::F32, xf, xf, rows, k, tf, per, "f32");
        pack_case(cuda::PackType::F64, xd, xd, rows, k, td, per, "f64");
        pack_case(cuda::PackType::F16, xh, hf, rows, k, tf, per, "f16");
        pack_case(cuda::PackType::BF16, xb, bf, rows, k, tf, per, "bf16");
        pack_case(cuda::PackType::I8, i8, i8, rows, k, td, per, "i8");
        pack_case(cuda::PackType::U8, u8, u8, rows, k, td, per, "u8");
        pack_case(cuda::PackType::I16, i16, i16, rows, k, td, per, "i16");
        std::vector<double> t32(k);
        for (auto& t : t32) t = per ? double(int64_t(rng() % 4000001) - 2000000) : 1000.5;
        pack_case(cuda::PackType::I32, i32, i32, rows, k, t32, per, "i32");
        pack_case(cuda::PackType::I64, i64, i64, rows, k, td, per, "i64");
        const auto bits = rand_bits(rows, k, true);
        unpack_case<uint8_t>(bits, rows, k, 0x01, 0xFF);
        unpack_case<uint16_t>(bits, rows, k, 0x3c00, 0xbc00);
        unpack_case<uint32_t>(bits, rows, k, 0x3f800000u, 0xbf800000u);
        unpack_case<uint64_t>(bits, rows, k, 0x3ff0000000000000ull, 0xbff0000000000000ull);
        for (int nbits : {1, 3, 8, 16})
          for (bool sg : {false, true}) {
            std::vector<int64_t> q(n);
            const int64_t lo = sg ? -(int64_t(1) << (nbits - 1)) : 0, span = int64_t(1) << nbits;
            for (auto& v : q) v = lo + int64_t(rng() % span);
            bitplanes_case(q, rows, k, nbits, sg, false);
            if (n > 3) bitplanes_case(q, rows, k, nbits, sg, true);
          }
      }
}

void test_gemm(bool quick) {
  for (auto p : {cuda::GemmPath::Auto, cuda::GemmPath::Mma, cuda::GemmPath::Popc, cuda::GemmPath::Gemv}) {
    cuda::GemmPath q = cuda::GemmPath::Popc;
    CHECK(cuda::parse_gemm_path(cuda::gemm_path_name(p), &q) && q == p, "gemm path name round trip");
  }
  cuda::GemmPath q;
  CHECK(!cuda::parse_gemm_path("tensor", &q) && cuda::parse_gemm_path("", &q) && q == cuda::GemmPath::Auto,
        "parse_gemm_path");
  const cuda::GemmPath paths[] = {cuda::GemmPath::Auto, cuda::GemmPath::Popc, cuda::GemmPath::Gemv,
                                  cuda::GemmPath::Mma};
  struct S {
    int64_t m, n, k;
  };
  // tails everywhere; 129 x 257: blocks with m0, n0 > 0; k 4091 / 4000: four k tiles (the 3-stage
  // ring wraps) with 16-byte and 4-byte copies and a masked last word.
  std::vector<S> shapes = {S{1, 1, 1},      S{5, 7, 33},    S{8, 40, 300},  S{9, 70, 100},
                           S{65, 66, 1000}, S{3, 130, 128}, S{70, 5, 4100}, S{40, 36, 4091}};
  // 150 rows / 600 columns: more than one launch slice (the emulation build lowers the limits)
  if (!quick) shapes.insert(shapes.end(), {S{129, 257, 1056}, S{130, 140, 4000}, S{150, 20, 70}, S{3, 600, 64}});
  for (S s : shapes) {
    for (bool dirty : {false, true}) {
      const auto a = rand_bits(s.m, s.k, dirty), b = rand_bits(s.n, s.k, dirty);
      std::vector<int32_t> ref(s.m * s.n);
      cpu::xnor_gemm(a.data(), words_for_bits(s.k), b.data(), words_for_bits(s.k), s.m, s.n, s.k, ref.data(), s.n, 1);
      DevBuf<int32_t> da(a), db(b);
      for (auto p : paths) {
        DevBuf<int32_t> out(s.m * s.n);
        DevBuf<char> ws(cuda::xnor_gemm_workspace_bytes(s.m, s.n));
        cuda::launch_xnor_gemm(da.get(), db.get(), s.m, s.n, s.k, out.get(), s.n, ws.get(), p, nullptr);
        CHECK(same(out, ref), "xnor m=%ld n=%ld k=%ld dirty=%d path=%s", (long)s.m, (long)s.n, (long)s.k, dirty,
              cuda::gemm_path_name(p));
      }
    }
  }
}

void test_conv() {
  std::uniform_int_distribution<int> pick(0, 1000);
  int cases = 0;
  struct Extra {
    int c, groups, kh, kw, batch, h, w;
  };
  // 20 groups: more than one batch slice; 3 x 10 x 10 pixels: more than one pixel chunk
  const Extra extra[] = {{40, 20, 3, 3, 2, 6, 5}, {33, 1, 1, 1, 3, 10, 10}, {64, 2, 3, 1, 3, 10, 9}};
  for (int e = -1; e < 3; ++e)
    for (int c : {3, 32, 40, 64, 100})
      for (int groups : {1, 2, 4})
        for (int kh : {1, 3})
          for (int kw : {1, 2, 3}) {
            if (c % groups) continue;
            if (e >= 0 && (c != 3 || groups != 1 || kh != 1 || kw != 1)) continue;  // one pass per extra case
            for (int variant = 0; variant < 2; ++variant) {
              ConvParams p{};
              p.batch = 2, p.in_h = 6, p.in_w = 5, p.kernel_h = kh, p.kernel_w = kw, p.groups = groups;
              if (e >= 0) {
                const Extra& x = extra[e];
                c = x.c, p.groups = groups = x.groups, p.kernel_h = kh = x.kh, p.kernel_w = kw = x.kw;
                p.batch = x.batch, p.in_h = x.h, p.in_w = x.w;
              }
              p.in_channels = c, p.out_channels = (2 + variant) * groups;
              p.stride_h = 1 + pick(rng) % 2, p.stride_w = 1 + pick(rng) % 3, p.pad_h = pick(rng) % 3,
              p.pad_w = pick(rng) % 2;
              p.dil_h = 1 + pick(rng) % 2, p.dil_w = 1 + pick(rng) % 3;
              p.pad_value = (int)(pick(rng) % 3) - 1;
              if (e >= 0) p.stride_h = p.stride_w = p.dil_h = p.dil_w = 1;
              p.out_h = conv_out_size(p.in_h, kh, p.stride_h, p.pad_h, p.dil_h);
              p.out_w = conv_out_size(p.in_w, kw, p.stride_w, p.pad_w, p.dil_w);
              if (p.out_h < 1 || p.out_w < 1) continue;
              const auto x = rand_bits(p.batch * p.in_h * p.in_w, c, variant == 1);
              const auto w = rand_bits(p.out_channels * kh * kw, c / groups, true);
              const int64_t n_out = p.batch * p.out_h * p.out_w * p.out_channels;
              std::vector<int32_t> ref(n_out);
              cpu::binary_conv2d(x.data(), w.data(), p, ref.data(), 1);
              DevBuf<int32_t> dx(x), dw(w);
              for (auto path :
                   {cuda::GemmPath::Popc, cuda::GemmPath::Gemv, cuda::GemmPath::Auto, cuda::GemmPath::Mma}) {
                DevBuf<int32_t> out(n_out);
                DevBuf<char> ws(cuda::binary_conv2d_workspace_bytes(p));
                cuda::launch_binary_conv2d(dx.get(), dw.get(), p, out.get(), ws.get(), path, nullptr);
                CHECK(same(out, ref), "conv c=%d g=%d k=%dx%d s=%ld,%ld p=%ld,%ld d=%ld,%ld pv=%d path=%s", c, groups,
                      kh, kw, (long)p.stride_h, (long)p.stride_w, (long)p.pad_h, (long)p.pad_w, (long)p.dil_h,
                      (long)p.dil_w, p.pad_value, cuda::gemm_path_name(path));
              }
              ++cases;
            }
          }
  fprintf(stderr, "conv cases: %d\n", cases);
}

void test_bitserial() {
  struct S {
    int64_t P, Q, M, N, k;
    std::vector<int64_t> ac, wc;
    int64_t ao, wo;
  };
  // the last case is big enough for Auto to pick the tensor-core path
  for (const S& s : {S{1, 1, 4, 5, 33, {2}, {2}, -1, -1}, S{4, 2, 17, 9, 100, {1, 2, 4, -8}, {1, -1}, 0, 0},
                     S{3, 2, 10, 12, 513, {5, -3, 7}, {3, 1}, -2, 2}, S{2, 3, 1, 30, 64, {1, 2}, {1, 2, -4}, 0, 1},
                     S{2, 2, 64, 150, 200, {1, -2}, {1, 2}, 1, -1},                   // two row chunks
                     S{18, 1, 3, 5, 40, std::vector<int64_t>(18, 1), {2}, 0, -1}}) {  // batch slices
    const auto a = rand_bits(s.P * s.M, s.k, true), w = rand_bits(s.Q * s.N, s.k, true);
    DevBuf<int32_t> da(a), dw(w);
    DevBuf<int64_t> dac(s.ac), dwc(s.wc);
    for (bool reduce : {true, false}) {
      const int64_t n_out = (reduce ? 1 : s.P) * s.M * s.N;
      std::vector<int32_t> ref(n_out);
      cpu::bitserial_gemm(a.data(), s.P, w.data(), s.Q, s.M, s.N, s.k, s.ac.data(), s.wc.data(), s.ao, s.wo, reduce,
                          ref.data(), 1);
      for (auto path : {cuda::GemmPath::Popc, cuda::GemmPath::Gemv, cuda::GemmPath::Auto, cuda::GemmPath::Mma}) {
        DevBuf<int32_t> out(n_out);
        DevBuf<char> ws(cuda::bitserial_gemm_workspace_bytes(s.P, s.Q, s.M, s.N));
        cuda::launch_bitserial_gemm(da.get(), s.P, dw.get(), s.Q, s.M, s.N, s.k, dac.get(), dwc.get(), s.ao, s.wo,
                                    reduce, out.get(), ws.get(), path, nullptr);
        CHECK(same(out, ref), "bitserial P=%ld M=%ld N=%ld reduce=%d path=%s", (long)s.P, (long)s.M, (long)s.N, reduce,
              cuda::gemm_path_name(path));
      }
    }
  }
}

namespace {
template <class X, class Acc>
void linear_case(cuda::LinearXType type, const std::vector<X>& x, int64_t m, int64_t k, const DevBuf<int32_t>& w,
                 int64_t n, const std::vector<Acc>* sb, const std::vector<Acc>& ref, const char* name,
                 bool tiled_only) {
  DevBuf<X> dx(x);
  std::vector<Acc> s = sb ? sb[0] : std::vector<Acc>(1), b = sb ? sb[1] : std::vector<Acc>(1);
  DevBuf<Acc> ds(s), dbias(b);
  for (auto path : {cuda::LinearPath::Tiled, cuda::LinearPath::Gemv, cuda::LinearPath::Auto}) {
    if (tiled_only && path != cuda::LinearPath::Tiled) break;
    DevBuf<Acc> out(m * n);
    cuda::launch_binary_weight_linear(type, dx.get(), m, k, w.get(), n, sb ? ds.get() : nullptr,
                                      sb ? dbias.get() : nullptr, out.get(), path, nullptr);
    CHECK(same(out, ref), "linear %s m=%ld n=%ld k=%ld path=%d", name, (long)m, (long)n, (long)k, (int)path);
  }
}
}  // namespace

void test_linear() {
  cuda::LinearPath lp;
  CHECK(cuda::parse_linear_path("gemv", &lp) && lp == cuda::LinearPath::Gemv && cuda::parse_linear_path("tiled", &lp) &&
            lp == cuda::LinearPath::Tiled && cuda::parse_linear_path(nullptr, &lp) && lp == cuda::LinearPath::Auto &&
            !cuda::parse_linear_path("mma", &lp),
        "parse_linear_path");
  struct S {
    int64_t m, n, k;
  };
  for (S s : {S{1, 1, 1}, S{1, 33, 31}, S{3, 9, 100}, S{8, 6, 128 * 32 + 64}, S{9, 5, 300}, S{2, 5, 4096 + 256},
              S{70, 66, 70}, S{140, 5, 40}, S{3, 1100, 33}}) {  // the last two: more than one launch slice
    const bool wide = s.n > 1000;                               // only the tiled path slices along N
    for (bool affine : {false, true}) {
      // integer-valued x, scales in halves: every sum is exact, so all paths must agree exactly
      std::vector<float> x(s.m * s.k), o1(s.m * s.n);
      std::vector<double> xd(s.m * s.k), d1(s.m * s.n);
      std::vector<__half> xh(s.m * s.k);
      std::vector<__nv_bfloat16> xb(s.m * s.k);
      std::vector<float> sbf[2] = {std::vector<float>(s.n), std::vector<float>(s.n)};
      std::vector<double> sbd[2] = {std::vector<double>(s.n), std::vector<double>(s.n)};
      for (int64_t i = 0; i < s.m * s.k; ++i) {
        x[i] = (float)((int)(rng() % 9) - 4);
        xd[i] = x[i];
        xh[i] = __float2half(x[i]);
        xb[i] = __float2bfloat16(x[i]);
      }
      for (int64_t i = 0; i < s.n; ++i) {
        sbf[0][i] = 0.5f * (1 + rng() % 4);
        sbf[1][i] = (float)((int)(rng() % 7) - 3);
        sbd[0][i] = sbf[0][i];
        sbd[1][i] = sbf[1][i];
      }
      const auto w = rand_bits(s.n, s.k, true);
      DevBuf<int32_t> dw(w);
      cpu::binary_weight_linear<float>(x.data(), s.m, s.k, w.data(), s.n, affine ? sbf[0].data() : nullptr,
                                       affine ? sbf[1].data() : nullptr, o1.data(), 1);
      cpu::binary_weight_linear<double>(xd.data(), s.m, s.k, w.data(), s.n, affine ? sbd[0].data() : nullptr,
                                        affine ? sbd[1].data() : nullptr, d1.data(), 1);
      linear_case(cuda::LinearXType::F32, x, s.m, s.k, dw, s.n, affine ? sbf : nullptr, o1, "f32", wide);
      linear_case(cuda::LinearXType::F16, xh, s.m, s.k, dw, s.n, affine ? sbf : nullptr, o1, "f16", wide);
      linear_case(cuda::LinearXType::BF16, xb, s.m, s.k, dw, s.n, affine ? sbf : nullptr, o1, "bf16", wide);
      linear_case(cuda::LinearXType::F64, xd, s.m, s.k, dw, s.n, affine ? sbd : nullptr, d1, "f64", wide);
    }
  }
}

}  // namespace emutest
