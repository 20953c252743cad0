// xnor_gemm on the AND-popcount engine:
//   k - 2 popc(a ^ b) = k - 2 popc(a) - 2 popc(b) + 4 popc(a & b)
// with the row and column popcounts computed once (a light pre-pass) and folded into the
// GEMM epilogue (alpha = 4, beta = k, row_add / col_add = -2 popc). The row-popcount
// pre-pass also serves bitserial_gemm.
#include "common/cuda_common.cuh"
#include "gemm/and_gemm_cuda.h"

namespace bnn::cuda {
namespace {

__global__ void row_popcounts_kernel(const uint32_t* __restrict__ bits, int64_t rows, int64_t ld, int64_t words,
                                     uint32_t last_mask, int32_t mul, int32_t add, int32_t* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
    const uint32_t* row = bits + r * ld;
    int32_t s = 0;
    for (int64_t w = lane; w < words; w += 32) {
      const uint32_t v = row[w];
      s += __popc(w == words - 1 ? (v & last_mask) : v);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, off);
    if (lane == 0)
      out[r] = static_cast<int32_t>(static_cast<uint32_t>(mul) * static_cast<uint32_t>(s) + static_cast<uint32_t>(add));
  }
}

}  // namespace

void launch_row_popcounts(const int32_t* bits, int64_t rows, int64_t ld, int64_t words, uint32_t last_mask, int32_t mul,
                          int32_t add, int32_t* out, cudaStream_t stream) {
  if (rows <= 0) return;
  constexpr int kThreads = 256;
  row_popcounts_kernel<<<grid_for(rows * 32, kThreads, 1 << 16), kThreads, 0, stream>>>(
      reinterpret_cast<const uint32_t*>(bits), rows, ld, words, last_mask, mul, add, out);
}

int64_t xnor_gemm_workspace_bytes(int64_t M, int64_t N) { return 4 * (M + N); }

GemmPath launch_xnor_gemm(const int32_t* A, const int32_t* B, int64_t M, int64_t N, int64_t k, int32_t* C, int64_t ldc,
                          void* workspace, GemmPath path, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return path;
  const int64_t words = (k + 31) / 32;
  const uint32_t last = (k % 32) ? ((1u << (k % 32)) - 1u) : 0xFFFFFFFFu;
  int32_t* row_add = static_cast<int32_t*>(workspace);
  int32_t* col_add = row_add + M;
  launch_row_popcounts(A, M, words, words, last, -2, 0, row_add, stream);
  launch_row_popcounts(B, N, words, words, last, -2, 0, col_add, stream);
  AndGemmArgs p;
  p.A = A, p.lda = words;
  p.B = B, p.ldb = words;
  p.M = M, p.N = N, p.words = words, p.last_mask = last;
  p.alpha = 4, p.beta = static_cast<int32_t>(k);
  p.row_add = row_add, p.col_add = col_add;
  p.C = C, p.ldc = ldc;
  return launch_and_gemm(p, path, stream);
}

}  // namespace bnn::cuda
