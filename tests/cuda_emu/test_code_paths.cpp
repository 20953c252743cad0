// Path choice and float rounding, the two properties the emulated device alone cannot vary:
//
// fallback:WANT (with --code PTX,BIN | --code none): launch_and_gemm takes the tensor-core path
//   only where the code the driver loaded for the MMA kernel is sm_80+ (cudaFuncGetAttributes),
//   not by the device's compute capability: compute_75 PTX JIT-compiled on an sm_90 GPU holds an
//   MMA kernel that only traps (the emulated mma.sync fails likewise). Auto and a forced Mma
//   must run WANT ("mma" or "popc"), give the CPU's result, and query the driver once.
// epilogue: binary_weight_linear's float epilogue (dot * scale + bias) on inputs where a fused
//   multiply-add and a rounded multiply then add differ: every CUDA path and input type must
//   equal the CPU kernel (compiled with -ffp-contract=off, as the project builds it) bit for bit.
#include <cmath>
#include <cstring>

#include "gemm/popcount_gemm.h"
#include "gemm/and_gemm_cuda.h"
#include "linear/binary_weight_linear.h"
#include "linear/binary_weight_linear_cuda.h"
#include "test_util.h"

using namespace bnn;
using emu::DevBuf;

namespace emutest {

void test_mma_fallback(const std::string& want) {
  const int64_t m = 130, n = 140, k = 1000, words = words_for_bits(k);  // big enough for Auto to pick mma
  const auto a = rand_bits(m, k, true), b = rand_bits(n, k, true);
  std::vector<int32_t> ref(m * n);
  cpu::xnor_gemm(a.data(), words, b.data(), words, m, n, k, ref.data(), n, 1);
  DevBuf<int32_t> da(a), db(b);
  const int queries0 = emu::func_attribute_queries();
  for (int rep = 0; rep < 2; ++rep)
    for (auto path : {cuda::GemmPath::Auto, cuda::GemmPath::Mma}) {
      DevBuf<int32_t> out(m * n);
      DevBuf<char> ws(cuda::xnor_gemm_workspace_bytes(m, n));
      const auto ran = cuda::launch_xnor_gemm(da.get(), db.get(), m, n, k, out.get(), n, ws.get(), path, nullptr);
      CHECK(want == cuda::gemm_path_name(ran) && same(out, ref), "requested %s: ran %s, want %s, result %s",
            cuda::gemm_path_name(path), cuda::gemm_path_name(ran), want.c_str(), same(out, ref) ? "ok" : "WRONG");
    }
  const int queries = emu::func_attribute_queries() - queries0;
  CHECK(queries == 1, "%d attribute queries, want 1 (cached per device)", queries);
}

namespace {

// Returns how many of the entries built to cancel tell a fused from an unfused epilogue.
template <typename Acc>
int epilogue_case(int64_t m, int64_t n, int64_t k) {
  const int64_t words = words_for_bits(k);
  const auto w = rand_bits(n, k, false);
  std::vector<Acc> x(m * k), scale(n), bias(n);
  for (auto& v : x) v = static_cast<Acc>(static_cast<int>(rng() % 17) - 8);  // exact dot products
  std::uniform_real_distribution<double> u(0.5, 1.5);
  for (auto& v : scale) v = static_cast<Acc>(u(rng));
  // even columns: the bias cancels row 0's rounded product (0 unfused, the rounding error fused)
  int exposed = 0;
  for (int64_t j = 0; j < n; ++j) {
    Acc d = 0;
    for (int64_t c = 0; c < k; ++c) d += ((w[j * words + c / 32] >> (c % 32)) & 1) ? x[c] : -x[c];
    const Acc p = d * scale[j];
    bias[j] = j % 2 ? static_cast<Acc>(u(rng) - 1.0) : -p;
    if (j % 2 == 0) exposed += std::fma(d, scale[j], bias[j]) != p + bias[j];
  }
  std::vector<Acc> want(m * n);
  cpu::binary_weight_linear<Acc>(x.data(), m, k, w.data(), n, scale.data(), bias.data(), want.data(), 1);
  DevBuf<int32_t> dw(w);
  DevBuf<Acc> ds(scale), dbias(bias);
  auto check = [&](cuda::LinearXType type, const auto& xv, const char* name) {
    DevBuf<typename std::decay_t<decltype(xv)>::value_type> dx(xv);
    for (auto path : {cuda::LinearPath::Gemv, cuda::LinearPath::Tiled, cuda::LinearPath::Auto}) {
      DevBuf<Acc> out(m * n);
      cuda::launch_binary_weight_linear(type, dx.get(), m, k, dw.get(), n, ds.get(), dbias.get(), out.get(), path,
                                        nullptr);
      const auto got = out.host();
      int64_t bad = 0, first = -1;
      for (int64_t i = 0; i < m * n; ++i)
        if (std::memcmp(&got[i], &want[i], sizeof(Acc)) != 0) bad += 1, first = first < 0 ? i : first;
      CHECK(bad == 0 && !out.unwritten_bytes(),
            "epilogue %s path=%d k=%ld: %ld entries differ, first (%ld, %ld): %.9g vs cpu %.9g", name,
            static_cast<int>(path), (long)k, (long)bad, (long)(first / n), (long)(first % n),
            first < 0 ? 0.0 : double(got[first]), first < 0 ? 0.0 : double(want[first]));
    }
  };
  if constexpr (sizeof(Acc) == 8) {
    check(cuda::LinearXType::F64, x, "f64");
  } else {
    check(cuda::LinearXType::F32, x, "f32");
    std::vector<__half> xh(m * k);
    std::vector<__nv_bfloat16> xb(m * k);
    for (int64_t i = 0; i < m * k; ++i) xh[i] = __float2half(x[i]), xb[i] = __float2bfloat16(x[i]);
    check(cuda::LinearXType::F16, xh, "f16");
    check(cuda::LinearXType::BF16, xb, "bf16");
  }
  return exposed;
}

}  // namespace

void test_epilogue() {
  int exposed32 = 0, exposed64 = 0, cancelled = 0;
  for (int64_t k : {37, 300, 1100}) {
    const int64_t n = 60 + static_cast<int64_t>(rng() % 21);
    exposed32 += epilogue_case<float>(9, n, k);  // 9 rows: GEMV (8-row blocks) and tiled
    exposed64 += epilogue_case<double>(9, n, k);
    cancelled += static_cast<int>((n + 1) / 2);
  }
  // most cancelled entries must tell fused from unfused, or the comparison above proves nothing
  CHECK(2 * exposed32 > cancelled && 2 * exposed64 > cancelled, "only %d (f32) / %d (f64) of %d entries expose an FMA",
        exposed32, exposed64, cancelled);
  fprintf(stderr, "epilogue: %d (f32) and %d (f64) of %d entries expose an FMA\n", exposed32, exposed64, cancelled);
}

}  // namespace emutest
