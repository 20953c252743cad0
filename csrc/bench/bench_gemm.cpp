// C++ benchmark of the torch-free GEMM kernels, for users who embed the C++ library.
//   bnn_kernels_bench [M N K] [repeats]
// The C++ counterpart of the Python suite (bnn_kernels/bench, `python -m bnn_kernels bench`),
// with the same method: check the result first, warm up, report the median of timed runs;
// the default 2048^3 is the suite's CPU square case. CPU: the xnor_gemm time and binary GOPS
// (the float baselines and the other ops are in the Python suite).
// CUDA builds (-DBNN_WITH_CUDA=ON): launch_xnor_gemm against cublasGemmEx int8 (int32
// accumulate) and fp16 on the same M, N, K, timed with CUDA events, after checking the GPU
// result against the CPU kernel. Prints ratios measured in the same run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "common/bits.h"
#include "gemm/popcount_gemm.h"

#ifdef BNN_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gemm/and_gemm_cuda.h"

#define CUDA_OK(x)                                                                                    \
  do {                                                                                                \
    cudaError_t err_ = (x);                                                                           \
    if (err_ != cudaSuccess) {                                                                        \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(err_), __FILE__, __LINE__); \
      std::exit(1);                                                                                   \
    }                                                                                                 \
  } while (0)
#define CUBLAS_OK(x)                                                       \
  do {                                                                     \
    if ((x) != CUBLAS_STATUS_SUCCESS) {                                    \
      std::fprintf(stderr, "cuBLAS error at %s:%d\n", __FILE__, __LINE__); \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)
#endif

namespace {

template <typename F>
double median_ms_host(F&& f, int repeats) {
  f();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

#ifdef BNN_WITH_CUDA
template <typename F>
double median_ms_cuda(F&& f, int repeats) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<cudaEvent_t> ev(2 * repeats);
  for (auto& e : ev) CUDA_OK(cudaEventCreate(&e));
  for (int i = 0; i < repeats; ++i) {
    CUDA_OK(cudaEventRecord(ev[2 * i]));
    f();
    CUDA_OK(cudaEventRecord(ev[2 * i + 1]));
  }
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<double> t(repeats);
  for (int i = 0; i < repeats; ++i) {
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    t[i] = ms;
  }
  for (auto& e : ev) CUDA_OK(cudaEventDestroy(e));
  std::nth_element(t.begin(), t.begin() + repeats / 2, t.end());
  return t[repeats / 2];
}
#endif

struct Problem {
  int64_t M, N, K, W;
  std::vector<int32_t> a, b, c;  // packed A [M, W], packed B [N, W], the CPU result [M, N]
  double ops() const { return 2.0 * M * N * K; }
};

// A sample of the CPU result against a plain XOR-popcount: the kernel is checked before it is timed.
bool cpu_result_ok(const Problem& p) {
  for (int64_t m = 0; m < std::min<int64_t>(p.M, 4); ++m) {
    for (int64_t n = 0; n < std::min<int64_t>(p.N, 64); ++n) {
      int64_t diff = 0;
      for (int64_t w = 0; w < p.W; ++w) {
        const uint32_t mask = w == p.W - 1 ? bnn::tail_mask(p.K) : 0xFFFFFFFFu;
        const uint32_t x = static_cast<uint32_t>(p.a[m * p.W + w]) ^ static_cast<uint32_t>(p.b[n * p.W + w]);
        diff += __builtin_popcount(x & mask);
      }
      if (p.c[m * p.N + n] != p.K - 2 * diff) {
        std::fprintf(stderr, "xnor_gemm result differs at (%lld, %lld)\n", (long long)m, (long long)n);
        return false;
      }
    }
  }
  return true;
}

#ifdef BNN_WITH_CUDA
// cuBLAS baselines on the same M, N, K: int8 x int8 -> int32 and fp16 x fp16 -> fp16 (fp32
// accumulate). Column-major cuBLAS: C^T [N x M] = B [N x K] * A^T, i.e. row-major C = A B^T.
void bench_cublas(const Problem& p, int repeats, double& i8_ms, double& f16_ms) {
  const int64_t M = p.M, N = p.N, K = p.K;
  cublasHandle_t h;
  CUBLAS_OK(cublasCreate(&h));
  int8_t *ia, *ib;
  int32_t* ic;
  __half *ha, *hb, *hc;
  CUDA_OK(cudaMalloc(&ia, M * K));
  CUDA_OK(cudaMalloc(&ib, N * K));
  CUDA_OK(cudaMalloc(&ic, M * N * 4));
  CUDA_OK(cudaMalloc(&ha, M * K * 2));
  CUDA_OK(cudaMalloc(&hb, N * K * 2));
  CUDA_OK(cudaMalloc(&hc, M * N * 2));
  CUDA_OK(cudaMemset(ia, 1, M * K));
  CUDA_OK(cudaMemset(ib, 1, N * K));
  CUDA_OK(cudaMemset(ha, 0, M * K * 2));
  CUDA_OK(cudaMemset(hb, 0, N * K * 2));
  const int32_t i1 = 1, i0 = 0;
  const float f1 = 1.f, f0 = 0.f;
  i8_ms = median_ms_cuda(
      [&] {
        CUBLAS_OK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &i1, ib, CUDA_R_8I, K, ia, CUDA_R_8I, K, &i0, ic,
                               CUDA_R_32I, N, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT));
      },
      repeats);
  f16_ms = median_ms_cuda(
      [&] {
        CUBLAS_OK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &f1, hb, CUDA_R_16F, K, ha, CUDA_R_16F, K, &f0, hc,
                               CUDA_R_16F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      },
      repeats);
  cublasDestroy(h);
}

// launch_xnor_gemm, checked against the CPU result, then timed beside the cuBLAS baselines.
int bench_cuda(const Problem& p, int repeats) {
  const int64_t M = p.M, N = p.N, K = p.K;
  int32_t *da, *db, *dc;
  void* ws = nullptr;
  CUDA_OK(cudaMalloc(&da, p.a.size() * 4));
  CUDA_OK(cudaMalloc(&db, p.b.size() * 4));
  CUDA_OK(cudaMalloc(&dc, p.c.size() * 4));
  const int64_t ws_bytes = bnn::cuda::xnor_gemm_workspace_bytes(M, N);
  if (ws_bytes > 0) CUDA_OK(cudaMalloc(&ws, ws_bytes));
  CUDA_OK(cudaMemcpy(da, p.a.data(), p.a.size() * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(db, p.b.data(), p.b.size() * 4, cudaMemcpyHostToDevice));
  auto run = [&] { bnn::cuda::launch_xnor_gemm(da, db, M, N, K, dc, N, ws, bnn::cuda::GemmPath::Auto, 0); };
  run();
  std::vector<int32_t> g(p.c.size());
  CUDA_OK(cudaMemcpy(g.data(), dc, g.size() * 4, cudaMemcpyDeviceToHost));
  if (g != p.c) {
    std::fprintf(stderr, "GPU xnor_gemm differs from the CPU kernel: not timing it\n");
    return 1;
  }
  const double gpu_ms = median_ms_cuda(run, repeats);
  double i8_ms = 0, f16_ms = 0;
  bench_cublas(p, repeats, i8_ms, f16_ms);
  const double ops = p.ops();
  std::printf("cuda xnor_gemm                 %9.3f ms  %8.1f binary TOPS\n", gpu_ms, ops / gpu_ms * 1e-9);
  std::printf("cublasGemmEx int8 -> int32     %9.3f ms  %8.1f TOPS   xnor speed-up %.2fx\n", i8_ms, ops / i8_ms * 1e-9,
              i8_ms / gpu_ms);
  std::printf("cublasGemmEx fp16 (fp32 acc)   %9.3f ms  %8.1f TFLOP/s xnor speed-up %.2fx\n", f16_ms,
              ops / f16_ms * 1e-9, f16_ms / gpu_ms);
  return 0;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  Problem p;
  p.M = argc > 1 ? std::atoll(argv[1]) : 2048;
  p.N = argc > 2 ? std::atoll(argv[2]) : p.M;
  p.K = argc > 3 ? std::atoll(argv[3]) : p.M;
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 10;
  if (p.M < 1 || p.N < 1 || p.K < 1 || repeats < 1) {
    std::fprintf(stderr, "usage: %s [M N K] [repeats], all >= 1\n", argv[0]);
    return 2;
  }
  p.W = bnn::words_for_bits(p.K);
  std::mt19937 rng(1);
  p.a.resize(p.M * p.W), p.b.resize(p.N * p.W), p.c.resize(p.M * p.N);
  for (auto& v : p.a) v = static_cast<int32_t>(rng());
  for (auto& v : p.b) v = static_cast<int32_t>(rng());
  const int threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  bnn::cpu::xnor_gemm(p.a.data(), p.W, p.b.data(), p.W, p.M, p.N, p.K, p.c.data(), p.N, 1);
  if (!cpu_result_ok(p)) return 1;
  std::vector<int32_t> c(p.c.size());
  const double cpu_ms = median_ms_host(
      [&] { bnn::cpu::xnor_gemm(p.a.data(), p.W, p.b.data(), p.W, p.M, p.N, p.K, c.data(), p.N, threads); }, repeats);
  std::printf("M=%lld N=%lld K=%lld\n", (long long)p.M, (long long)p.N, (long long)p.K);
  std::printf("cpu  xnor_gemm (%s, %d threads)  %9.3f ms  %8.1f binary GOPS\n", bnn::cpu::gemm_isa(), threads, cpu_ms,
              p.ops() / cpu_ms * 1e-6);
#ifdef BNN_WITH_CUDA
  if (bench_cuda(p, repeats)) return 1;
#endif
  return 0;
}
