// Path selection for the AND-popcount GEMM engine, row popcounts, and xnor_gemm on top:
//   k - 2 popc(a ^ b) = k - 2 popc(a) - 2 popc(b) + 4 popc(a & b)
// with the row and column popcounts computed once (a light pre-pass) and folded into the
// GEMM epilogue.
#include <algorithm>
#include <cstring>

#include "common/cuda_common.cuh"
#include "gemm/popcount_gemm_cuda.h"

namespace bnn::cuda {

bool parse_gemm_path(const char* s, GemmPath* out) {
  if (s == nullptr || *s == '\0' || std::strcmp(s, "auto") == 0) return *out = GemmPath::Auto, true;
  if (std::strcmp(s, "mma") == 0) return *out = GemmPath::Mma, true;
  if (std::strcmp(s, "popc") == 0) return *out = GemmPath::Popc, true;
  if (std::strcmp(s, "gemv") == 0) return *out = GemmPath::Gemv, true;
  return false;
}

const char* gemm_path_name(GemmPath p) {
  switch (p) {
    case GemmPath::Mma: return "mma";
    case GemmPath::Popc: return "popc";
    case GemmPath::Gemv: return "gemv";
    default: return "auto";
  }
}

namespace {

// Which path runs for a shape: the tensor-core kernel once there is at least about one full
// 128x128 tile of work per row block, the GEMV kernel for a handful of rows, the tiled
// CUDA-core kernel for the rest (tiny products, where the MMA tile would be mostly padding).
GemmPath choose_path(const AndGemmArgs& p, GemmPath requested, bool mma_native) {
  GemmPath path = requested;
  if (path == GemmPath::Auto) {
    if (p.M <= 8)
      path = GemmPath::Gemv;
    else if (p.M < 32 || p.N < 32 || p.M * p.N * p.batch < 128 * 128)
      path = GemmPath::Popc;
    else
      path = GemmPath::Mma;
  }
  if (path == GemmPath::Mma && !mma_native) path = GemmPath::Popc;  // no b1 AND.popc m16n8k256
  return path;
}

__global__ void row_popcounts_kernel(const uint32_t* __restrict__ bits, int64_t rows, int64_t ld,
                                     int64_t words, uint32_t last_mask, int32_t mul, int32_t add,
                                     int32_t* __restrict__ out) {
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
    if (lane == 0) out[r] = static_cast<int32_t>(static_cast<uint32_t>(mul) * static_cast<uint32_t>(s) +
                                                 static_cast<uint32_t>(add));
  }
}

}  // namespace

GemmPath launch_and_gemm(const AndGemmArgs& args, GemmPath requested, cudaStream_t stream) {
  const GemmPath path = choose_path(args, requested, and_gemm_mma_native());
  // Slices keep every grid dimension inside CUDA's limits (kMaxGridYZ = 65535 for y and z): at
  // most 65535 * 8 rows (GEMV: 8 rows per block row), 2^21 columns (popc: 64 per block column,
  // MMA: 128) and 65535 batch entries per launch.
  constexpr int64_t kMaxM = kMaxGridYZ * 8, kMaxN = (kMaxGridYZ + 1) / 2 * 64, kMaxBatch = kMaxGridYZ;
  for (int64_t b0 = 0; b0 < args.batch; b0 += kMaxBatch)
    for (int64_t m0 = 0; m0 < args.M; m0 += kMaxM)
      for (int64_t n0 = 0; n0 < args.N; n0 += kMaxN) {
        AndGemmArgs p = args;
        p.batch = static_cast<int>(std::min<int64_t>(kMaxBatch, args.batch - b0));
        p.M = std::min(kMaxM, args.M - m0);
        p.N = std::min(kMaxN, args.N - n0);
        p.A = args.A + b0 * args.a_batch + m0 * args.lda;
        p.B = args.B + b0 * args.b_batch + n0 * args.ldb;
        if (p.row_add) p.row_add = args.row_add + b0 * args.row_batch + m0;
        if (p.col_add) p.col_add = args.col_add + b0 * args.col_batch + n0;
        p.C = args.C + b0 * args.c_batch + m0 * args.ldc + n0;
        switch (path) {
          case GemmPath::Mma: launch_and_gemm_mma(p, stream); break;
          case GemmPath::Gemv: launch_and_gemm_gemv(p, stream); break;
          default: launch_and_gemm_popc(p, stream); break;
        }
      }
  return path;
}

void launch_row_popcounts(const int32_t* bits, int64_t rows, int64_t ld, int64_t words,
                          uint32_t last_mask, int32_t mul, int32_t add, int32_t* out,
                          cudaStream_t stream) {
  if (rows <= 0) return;
  constexpr int kThreads = 256;
  row_popcounts_kernel<<<grid_for(rows * 32, kThreads, 1 << 16), kThreads, 0, stream>>>(
      reinterpret_cast<const uint32_t*>(bits), rows, ld, words, last_mask, mul, add, out);
}

int64_t xnor_gemm_workspace_bytes(int64_t M, int64_t N) { return 4 * (M + N); }

GemmPath launch_xnor_gemm(const int32_t* A, const int32_t* B, int64_t M, int64_t N, int64_t k,
                          int32_t* C, int64_t ldc, void* workspace, GemmPath path,
                          cudaStream_t stream) {
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
