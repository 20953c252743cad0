// AND-popcount GEMM for few rows (GemmPath::Gemv, chosen for M <= 8): one warp per output
// column, lanes along k, up to 8 rows of A per warp, 16-byte loads when the rows allow them.
// Masks the last word of both operands.
#include "common/cuda_common.cuh"
#include "gemm/and_gemm_epilogue.cuh"

namespace bnn::cuda {
namespace {

// Warp per column n, kMR rows of A per warp, lanes stride along the row's words
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

void launch_and_gemm_gemv(const AndGemmArgs& p, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0 || p.batch <= 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(p.N, kGWarps)), static_cast<unsigned>(ceil_div(p.M, kMR)),
                  static_cast<unsigned>(p.batch));
  const bool vec16 = aligned_to(p.A, 16) && aligned_to(p.B, 16) && p.lda % 4 == 0 && p.ldb % 4 == 0 &&
                     (p.batch == 1 || (p.a_batch % 4 == 0 && p.b_batch % 4 == 0));
  BOOL_SWITCH(vec16, Vec16, [&] { and_gemm_gemv_kernel<Vec16><<<grid, kGWarps * 32, 0, stream>>>(p); });
}

}  // namespace bnn::cuda
