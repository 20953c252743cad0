// AND-popcount GEMM on CUDA cores (__popc), GemmPath::Popc: a shared-memory tiled kernel for
// small or odd shapes (too small for the tensor-core tile). Masks the last word of both
// operands. (Few rows: and_gemm_gemv_cuda.cu; the choice: and_gemm_dispatch_cuda.cu.)
#include "common/cuda_common.cuh"
#include "gemm/and_gemm_epilogue.cuh"

namespace bnn::cuda {
namespace {

// ---- tiled: 64x64 outputs per 256-thread block, 16-word k chunks, 4x4 outputs per thread.
constexpr int kT = 64, kTK = 16, kTThreads = 256;

__device__ __forceinline__ uint32_t load_word(const int32_t* base, int64_t ld, int64_t row, int64_t nrows, int64_t w,
                                              int64_t words, uint32_t last_mask) {
  if (row >= nrows || w >= words) return 0u;
  const uint32_t v = static_cast<uint32_t>(base[row * ld + w]);
  return w == words - 1 ? (v & last_mask) : v;
}

__global__ void __launch_bounds__(kTThreads) and_gemm_popc_kernel(const AndGemmArgs p) {
  __shared__ uint32_t As[kTK][kT + 1];
  __shared__ uint32_t Bs[kTK][kT + 1];
  const int b = blockIdx.z;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kT, n0 = static_cast<int64_t>(blockIdx.y) * kT;
  const int32_t* A = p.A + b * p.a_batch;
  const int32_t* B = p.B + b * p.b_batch;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  int32_t acc[4][4] = {};
  for (int64_t k0 = 0; k0 < p.words; k0 += kTK) {
#pragma unroll
    for (int i = 0; i < kT * kTK / kTThreads; ++i) {
      const int idx = i * kTThreads + threadIdx.x;
      const int r = idx / kTK, w = idx % kTK;
      As[w][r] = load_word(A, p.lda, m0 + r, p.M, k0 + w, p.words, p.last_mask);
      Bs[w][r] = load_word(B, p.ldb, n0 + r, p.N, k0 + w, p.words, p.last_mask);
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kTK; ++w) {
      uint32_t a[4], bb[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[w][ty + 16 * i], bb[i] = Bs[w][tx + 16 * i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += __popc(a[i] & bb[j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m < p.M && n < p.N) epilogue_store(p, b, m, n, acc[i][j]);
    }
}

}  // namespace

void launch_and_gemm_popc(const AndGemmArgs& p, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0 || p.batch <= 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(p.M, kT)), static_cast<unsigned>(ceil_div(p.N, kT)),
                  static_cast<unsigned>(p.batch));
  and_gemm_popc_kernel<<<grid, kTThreads, 0, stream>>>(p);
}

}  // namespace bnn::cuda
