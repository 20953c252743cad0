// AND-popcount GEMM on CUDA cores (__popc): a shared-memory tiled kernel for small or odd
// shapes, and a GEMV-style kernel (one warp per output column, lanes along k, up to 8 rows
// of A per warp) for few rows. Both mask the last word of both operands.
#include "common/cuda_common.cuh"
#include "gemm/and_gemm_epilogue.cuh"

namespace bnn::cuda {
namespace {

// ---- tiled: 64x64 outputs per 256-thread block, 16-word k chunks, 4x4 outputs per thread.
constexpr int kT = 64, kTK = 16, kTThreads = 256;

__device__ __forceinline__ uint32_t load_word(const int32_t* base, int64_t ld, int64_t row, int64_t nrows,
                                              int64_t w, int64_t words, uint32_t last_mask) {
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

// ---- GEMV: warp per column n, kMR rows of A per warp, lanes stride along the row's words
// (16-byte loads when rows are 16-byte aligned).
constexpr int kMR = 8, kGWarps = 8;

template <bool Vec16>
__global__ void __launch_bounds__(kGWarps * 32) and_gemm_gemv_kernel(const AndGemmArgs p) {
  const int b = blockIdx.z;
  const int lane = threadIdx.x & 31;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kGWarps + (threadIdx.x >> 5);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kMR;
  if (n >= p.N) return;
  const int rows = static_cast<int>(p.M - m0 < kMR ? p.M - m0 : kMR);
  const int32_t* A = p.A + b * p.a_batch + m0 * p.lda;
  const int32_t* Bn = p.B + b * p.b_batch + n * p.ldb;
  const int64_t last = p.words - 1;
  int32_t acc[kMR] = {};
  if constexpr (Vec16) {
    const int64_t chunks = (p.words + 3) / 4;
    for (int64_t c = lane; c < chunks; c += 32) {
      const int64_t w0 = c * 4;
      uint4 bv;
      if (w0 + 4 <= p.words) {
        bv = __ldg(reinterpret_cast<const uint4*>(Bn + w0));
      } else {
        bv.x = Bn[w0];
        bv.y = w0 + 1 <= last ? Bn[w0 + 1] : 0;
        bv.z = w0 + 2 <= last ? Bn[w0 + 2] : 0;
        bv.w = 0;
      }
      uint32_t bw[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (w0 + j == last) bw[j] &= p.last_mask;
        if (w0 + j > last) bw[j] = 0;
      }
#pragma unroll
      for (int r = 0; r < kMR; ++r) {
        if (r < rows) {
          const int32_t* Ar = A + r * p.lda + w0;
          uint4 av;
          if (w0 + 4 <= p.words) {
            av = __ldg(reinterpret_cast<const uint4*>(Ar));
          } else {
            av.x = Ar[0];
            av.y = w0 + 1 <= last ? Ar[1] : 0;
            av.z = w0 + 2 <= last ? Ar[2] : 0;
            av.w = 0;
          }
          acc[r] += __popc(av.x & bw[0]) + __popc(av.y & bw[1]) + __popc(av.z & bw[2]) + __popc(av.w & bw[3]);
        }
      }
    }
  } else {
    for (int64_t w = lane; w < p.words; w += 32) {
      uint32_t bw = static_cast<uint32_t>(Bn[w]);
      if (w == last) bw &= p.last_mask;
#pragma unroll
      for (int r = 0; r < kMR; ++r)
        if (r < rows) acc[r] += __popc(static_cast<uint32_t>(A[r * p.lda + w]) & bw);
    }
  }
#pragma unroll
  for (int r = 0; r < kMR; ++r)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xFFFFFFFFu, acc[r], off);
#pragma unroll
  for (int r = 0; r < kMR; ++r)
    if (lane == r && r < rows) epilogue_store(p, b, m0 + r, n, acc[r]);
}

}  // namespace

void launch_and_gemm_popc(const AndGemmArgs& p, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0 || p.batch <= 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(p.M, kT)), static_cast<unsigned>(ceil_div(p.N, kT)),
                  static_cast<unsigned>(p.batch));
  and_gemm_popc_kernel<<<grid, kTThreads, 0, stream>>>(p);
}

void launch_and_gemm_gemv(const AndGemmArgs& p, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0 || p.batch <= 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(p.N, kGWarps)), static_cast<unsigned>(ceil_div(p.M, kMR)),
                  static_cast<unsigned>(p.batch));
  const bool vec16 = aligned_to(p.A, 16) && aligned_to(p.B, 16) && p.lda % 4 == 0 && p.ldb % 4 == 0 &&
                     (p.batch == 1 || (p.a_batch % 4 == 0 && p.b_batch % 4 == 0));
  BOOL_SWITCH(vec16, Vec16, [&] { and_gemm_gemv_kernel<Vec16><<<grid, kGWarps * 32, 0, stream>>>(p); });
}

}  // namespace bnn::cuda
