// Family "fused": the fused epilogue kernel (csrc/gemm/epilogue_cuda.cu) compared bit for bit
// with the CPU epilogue (csrc/gemm/epilogue_cpu.h) on random shapes with tails (N not a
// multiple of 32, rows past one grid-stride pass), every combination of steps, float32 /
// float16 / bfloat16 / bit-packed output and float + bits together (float32, float16 or bfloat16
// beside the bits: the dual ops xnor_gemm_dual / binary_conv2d_dual), with and without NaN and
// inf among the inputs (NaN compares equal to NaN whatever its payload). Outputs start
// never-written and must be written in full.
#include <cmath>
#include <cstring>

#include "common/epilogue.h"
#include "gemm/epilogue_cpu.h"
#include "gemm/epilogue_cuda.h"
#include "test_util.h"

using namespace bnn;
using emu::DevBuf;

namespace emutest {
namespace {

enum Out { kF32, kF16, kBF16, kBits, kF32Bits, kF16Bits, kBF16Bits };
const char* const kOutNames[] = {"f32", "f16", "bf16", "bits", "f32+bits", "f16+bits", "bf16+bits"};

std::vector<float> rand_floats(size_t n, float scale, bool specials) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  if (specials && n > 2) {
    v[rng() % n] = NAN;
    v[rng() % n] = INFINITY;
    v[rng() % n] = -INFINITY;
  }
  return v;
}

// Same bits, or both NaN (the CUDA and CPU conversions may give different NaN payloads).
bool same_f32(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], 4) != 0 && !(std::isnan(a[i]) && std::isnan(b[i]))) return false;
  return true;
}
bool same_16(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b, int mant_bits) {
  const uint16_t exp = static_cast<uint16_t>(0x7FFF & ~((1u << mant_bits) - 1));
  const auto nan = [&](uint16_t h) { return (h & exp) == exp && (h & ((1u << mant_bits) - 1)) != 0; };
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i] && !(nan(a[i]) && nan(b[i]))) return false;
  return true;
}

// One launch: steps is a mask of multiplier (1), bias (2), residual (4), act_slope (8),
// act_shift_in (16), act_shift_out (32).
void fused_case(int64_t m, int64_t n, unsigned steps, Out out, bool specials) {
  const int64_t ld = n + 3, words = words_for_bits(n);  // accumulators with a leading dim past n
  std::vector<int32_t> acc(m * ld);
  for (auto& a : acc) a = static_cast<int32_t>(rng() % 601) - 300;  // ties with the thresholds
  if (m * n > 4) acc[0] = (1 << 24) + 1, acc[1] = -(1 << 30) - 3;   // int -> float rounds
  const std::vector<float> vec[5] = {rand_floats(n, 2, specials), rand_floats(n, 300, specials),
                                     rand_floats(n, 1, false), rand_floats(n, 50, specials),
                                     rand_floats(n, 50, specials)};
  const std::vector<float> res = rand_floats(m * n, 500, specials);
  std::vector<float> thr(n);
  for (auto& t : thr) t = static_cast<float>(static_cast<int>(rng() % 201) - 100);
  DevBuf<int32_t> dacc(acc);
  DevBuf<float> dvec0(vec[0]), dvec1(vec[1]), dvec2(vec[2]), dvec3(vec[3]), dvec4(vec[4]), dres(res), dthr(thr);
  const float* dv[5] = {dvec0.get(), dvec1.get(), dvec2.get(), dvec3.get(), dvec4.get()};
  Epilogue ce, ge;  // CPU and device
  const float** slots[5] = {&ce.multiplier, &ce.bias, &ce.act_slope, &ce.act_shift_in, &ce.act_shift_out};
  const float** gslots[5] = {&ge.multiplier, &ge.bias, &ge.act_slope, &ge.act_shift_in, &ge.act_shift_out};
  const unsigned bit_of[5] = {1, 2, 8, 16, 32};
  for (int i = 0; i < 5; ++i)
    if (steps & bit_of[i]) *slots[i] = vec[i].data(), *gslots[i] = dv[i];
  if (steps & 4) ce.residual = res.data(), ge.residual = dres.get(), ce.residual_ld = ge.residual_ld = n;
  const bool bits = out >= kBits, floats = out != kBits;
  const bool f16 = out == kF16 || out == kF16Bits, bf16 = out == kBF16 || out == kBF16Bits;
  ce.out_dtype = ge.out_dtype = f16 ? OutDtype::Float16 : bf16 ? OutDtype::BFloat16 : OutDtype::Float32;
  if (out == kBits) ce.out_dtype = ge.out_dtype = OutDtype::Int32;
  const size_t esize = f16 || bf16 ? 2 : 4;
  std::vector<unsigned char> cf(floats ? m * n * esize : 0);
  std::vector<int32_t> cb(bits ? m * words : 0);
  DevBuf<float> gf32(out == kF32 || out == kF32Bits ? m * n : 0);
  DevBuf<uint16_t> gf16(esize == 2 ? m * n : 0);
  DevBuf<int32_t> gb(bits ? m * words : 0);
  if (floats) {
    ce.out = cf.data(), ce.out_ld = ge.out_ld = n;
    ge.out = esize == 2 ? static_cast<void*>(gf16.get()) : static_cast<void*>(gf32.get());
  }
  if (bits) {
    ce.bits_out = cb.data(), ge.bits_out = gb.get(), ce.bits_ld = ge.bits_ld = words;
    ce.out_threshold = thr.data(), ge.out_threshold = dthr.get();
  }
  cpu::epilogue_rows(ce, acc.data(), ld, 0, m, n);
  cuda::launch_epilogue(ge, dacc.get(), ld, m, n, nullptr);
  bool ok = true;
  if (esize == 4 && floats) {
    std::vector<float> c(m * n);
    std::memcpy(c.data(), cf.data(), cf.size());
    ok = gf32.unwritten_bytes() == 0 && same_f32(gf32.host(), c);
  } else if (floats) {
    std::vector<uint16_t> c(m * n);
    std::memcpy(c.data(), cf.data(), cf.size());
    ok = gf16.unwritten_bytes() == 0 && same_16(gf16.host(), c, f16 ? 10 : 7);
  }
  if (bits) ok = ok && same(gb, cb);
  CHECK(ok, "fused epilogue m=%ld n=%ld steps=%u out=%s specials=%d", (long)m, (long)n, steps, kOutNames[out],
        specials);
}

}  // namespace

void test_fused_epilogue() {
  struct S {
    int64_t m, n;
  };
  int cases = 0;
  // 40 x 70: 3840 slots, more than one pass of the (lowered) grid-stride limit
  for (S s : {S{1, 1}, S{3, 31}, S{2, 32}, S{4, 33}, S{2, 100}, S{5, 257}, S{40, 70}})
    for (int out = kF32; out <= kBF16Bits; ++out)
      for (unsigned steps : {0u, 63u, 1u | 2u, 8u | 32u, static_cast<unsigned>(rng() % 64)})
        for (bool specials : {false, true}) {
          if (specials && steps == 0) continue;
          fused_case(s.m, s.n, steps, static_cast<Out>(out), specials);
          ++cases;
        }
  fprintf(stderr, "fused epilogue cases: %d\n", cases);
}

}  // namespace emutest
