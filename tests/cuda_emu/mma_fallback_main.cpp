// launch_and_gemm picks the tensor-core kernel only where the code loaded for the device is
// sm_80+ (cudaFuncGetAttributes), not by the device's compute capability: code compiled below
// sm_80 (e.g. compute_75 PTX JIT-compiled on an sm_90 GPU) has an MMA kernel that only traps.
// Usage: mma_fallback PTX_VERSION BINARY_VERSION|fail EXPECTED_PATH. Built by test_mma_fallback.py.
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "common/bits.h"
#include "gemm/popcount_gemm.h"
#include "gemm/popcount_gemm_cuda.h"

static int g_ptx = 0, g_bin = 0, g_queries = 0;
static bool g_fail = false;
extern "C" cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
extern "C" cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void*) {
  ++g_queries;
  if (g_fail) return cudaErrorNoKernelImageForDevice;
  *a = {}, a->ptxVersion = g_ptx, a->binaryVersion = g_bin;
  return cudaSuccess;
}

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  g_ptx = std::atoi(argv[1]);
  g_fail = std::strcmp(argv[2], "fail") == 0;
  g_bin = g_fail ? 0 : std::atoi(argv[2]);
  const char* want = argv[3];
  std::mt19937_64 rng(7);
  const int64_t m = 130, n = 140, k = 1000, words = bnn::words_for_bits(k);
  std::vector<int32_t> a(m * words), b(n * words), c1(m * n), c2(m * n);
  for (auto& v : a) v = static_cast<int32_t>(rng());
  for (auto& v : b) v = static_cast<int32_t>(rng());
  bnn::cpu::xnor_gemm(a.data(), words, b.data(), words, m, n, k, c1.data(), n, 1);
  std::vector<char> ws(bnn::cuda::xnor_gemm_workspace_bytes(m, n));
  int bad = 0;
  for (auto path : {bnn::cuda::GemmPath::Auto, bnn::cuda::GemmPath::Mma}) {
    std::fill(c2.begin(), c2.end(), 0);
    const auto ran = bnn::cuda::launch_xnor_gemm(a.data(), b.data(), m, n, k, c2.data(), n, ws.data(), path, nullptr);
    if (std::strcmp(bnn::cuda::gemm_path_name(ran), want) != 0 || c1 != c2) {
      fprintf(stderr, "requested %s: ran %s, want %s, result %s\n", bnn::cuda::gemm_path_name(path),
              bnn::cuda::gemm_path_name(ran), want, c1 == c2 ? "ok" : "WRONG");
      ++bad;
    }
  }
  if (g_queries != 1) fprintf(stderr, "%d attribute queries, want 1 (cached per device)\n", g_queries), ++bad;
  return bad ? 1 : 0;
}
