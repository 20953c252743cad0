// bitserial_gemm on the GPU: S[p][m][q*N + n] = popc(a_p[m] & w_q[n]) by the AND-popcount
// GEMM engine (tensor cores when the shape allows), then
//   reduce:  out[m, n] = a_offset * wsum[n] + sum_p a_coefs[p] * v_p[m, n]
//   !reduce: out[p, m, n] = v_p[m, n]
// with v_p[m, n] = w_offset * popc(a_p[m]) + sum_q w_coefs[q] * S[p][m][q*N + n] and
// wsum[n] = w_offset * k + sum_q w_coefs[q] * popc(w_q[n]), in int64, truncated to int32
// (the same value modulo 2^32 as the CPU kernel's int32 accumulation).
#include <algorithm>

#include "bitserial/bitserial_gemm_cuda.h"
#include "common/cuda_common.cuh"

namespace bnn::cuda {
namespace {

// Partial sums per chunk of rows, in words (the emulation build lowers it to test the chunk loop).
#ifndef BNN_BITSERIAL_CHUNK_WORDS
#define BNN_BITSERIAL_CHUNK_WORDS (int64_t(128) << 20 >> 2)  // 128 MiB
#endif
constexpr int64_t kBudgetWords = BNN_BITSERIAL_CHUNK_WORDS;

int64_t chunk_rows(int64_t P, int64_t Q, int64_t M, int64_t N) {
  const int64_t per_row = std::max<int64_t>(1, P * Q * N);
  return std::clamp<int64_t>(kBudgetWords / per_row, 1, std::max<int64_t>(M, 1));
}

__global__ void bitserial_epilogue_kernel(const int32_t* __restrict__ S, int64_t P, int64_t Q, int64_t M, int64_t N,
                                          int64_t k, int64_t m0, int64_t mn, const int32_t* __restrict__ pa,
                                          const int32_t* __restrict__ pw, const int64_t* __restrict__ a_coefs,
                                          const int64_t* __restrict__ w_coefs, int64_t a_offset, int64_t w_offset,
                                          bool reduce, int32_t* __restrict__ out) {
  const int64_t qn = Q * N;
  const int64_t n_items = mn * N;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t mi = i / N, n = i - mi * N;
    const int64_t m = m0 + mi;
    uint64_t total = 0;
    if (reduce && a_offset != 0) {
      int64_t wsum = w_offset * k;
      for (int64_t q = 0; q < Q; ++q) wsum += w_coefs[q] * pw[q * N + n];
      total = static_cast<uint64_t>(a_offset * wsum);
    }
    for (int64_t p = 0; p < P; ++p) {
      const int32_t* s = S + (p * mn + mi) * qn + n;
      int64_t v = w_offset * pa[p * M + m];
      for (int64_t q = 0; q < Q; ++q) v += w_coefs[q] * s[q * N];
      if (reduce)
        total += static_cast<uint64_t>(a_coefs[p] * v);
      else
        out[(p * M + m) * N + n] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(v)));
    }
    if (reduce) out[m * N + n] = static_cast<int32_t>(static_cast<uint32_t>(total));
  }
}

}  // namespace

int64_t bitserial_gemm_workspace_bytes(int64_t P, int64_t Q, int64_t M, int64_t N) {
  auto up4 = [](int64_t v) { return (v + 3) / 4 * 4; };
  return 4 * (up4(P * M) + up4(Q * N) + up4(P * chunk_rows(P, Q, M, N) * Q * N));
}

void launch_bitserial_gemm(const int32_t* a, int64_t P, const int32_t* w, int64_t Q, int64_t M, int64_t N, int64_t k,
                           const int64_t* a_coefs, const int64_t* w_coefs, int64_t a_offset, int64_t w_offset,
                           bool reduce, int32_t* out, void* workspace, GemmPath path, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  auto up4 = [](int64_t v) { return (v + 3) / 4 * 4; };
  const int64_t words = (k + 31) / 32;
  const uint32_t last = (k % 32) ? ((1u << (k % 32)) - 1u) : 0xFFFFFFFFu;
  const int64_t chunk = chunk_rows(P, Q, M, N);
  int32_t* pa = static_cast<int32_t*>(workspace);
  int32_t* pw = pa + up4(P * M);
  int32_t* S = pw + up4(Q * N);
  launch_row_popcounts(a, P * M, words, words, last, 1, 0, pa, stream);
  launch_row_popcounts(w, Q * N, words, words, last, 1, 0, pw, stream);
  constexpr int kThreads = 256;
  for (int64_t m0 = 0; m0 < M; m0 += chunk) {
    const int64_t mn = std::min(chunk, M - m0);
    AndGemmArgs g;
    g.A = a + m0 * words, g.lda = words, g.a_batch = M * words;
    g.B = w, g.ldb = words, g.b_batch = 0;
    g.M = mn, g.N = Q * N, g.words = words, g.last_mask = last;
    g.batch = static_cast<int>(P);
    g.alpha = 1, g.beta = 0;
    g.C = S, g.ldc = Q * N, g.c_batch = mn * Q * N;
    launch_and_gemm(g, path, stream);
    bitserial_epilogue_kernel<<<grid_for(mn * N, kThreads, 1 << 20), kThreads, 0, stream>>>(
        S, P, Q, M, N, k, m0, mn, pa, pw, a_coefs, w_coefs, a_offset, w_offset, reduce, out);
  }
}

}  // namespace bnn::cuda
