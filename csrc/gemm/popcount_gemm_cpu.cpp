// CPU driver: cache-blocked over N, B packed into interleaved 64-bit panels that stay in L2,
// A packed per MR-row tile, OpenMP over (row tile, column panel) pairs, micro-kernel picked
// at run time (AVX2 when the CPU has it, scalar 64-bit POPCNT otherwise).
#include "gemm/popcount_gemm.h"

#include <algorithm>
#include <vector>

#include "common/bits.h"
#include "gemm/microkernel.h"

namespace bnn::cpu {
namespace {

// Copies `rows` packed rows into panel layout p[kk * R + r] (uint64 words kk, row r), masking
// the last 32-bit word and zero-filling rows past `valid` and the odd half-word.
template <int R>
void pack_panel(const int32_t* src, int64_t ld, int64_t valid, int64_t words, uint32_t last_mask,
                int64_t w64, uint64_t* p) {
  for (int r = 0; r < R; ++r) {
    if (r >= valid) {
      for (int64_t kk = 0; kk < w64; ++kk) p[kk * R + r] = 0;
      continue;
    }
    const uint32_t* s = reinterpret_cast<const uint32_t*>(src + r * ld);
    for (int64_t kk = 0; kk < w64; ++kk) {
      const int64_t w0 = 2 * kk, w1 = 2 * kk + 1;
      uint64_t lo = s[w0];
      uint64_t hi = w1 < words ? s[w1] : 0u;
      if (w0 == words - 1) lo &= last_mask;
      if (w1 == words - 1) hi &= last_mask;
      p[kk * R + r] = lo | (hi << 32);
    }
  }
}

}  // namespace

const char* popcount_gemm_isa() { return select_microkernel(BitOp::Xor).name; }

void popcount_gemm(BitOp op, const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb,
                   int64_t M, int64_t N, int64_t words, uint32_t last_mask, int32_t alpha,
                   int32_t beta, int32_t* C, int64_t ldc, int num_threads) {
  if (M <= 0 || N <= 0) return;
  if (words <= 0) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = beta;
    return;
  }
  const MicroKernel mk = select_microkernel(op);
  const int64_t w64 = (words + 1) / 2;
  // Column block: as many NR-row panels of B as fit in ~256 KiB (half of a Zen 3 L2).
  const int64_t panel_bytes = w64 * kNR * 8;
  const int64_t max_panels = std::max<int64_t>(1, (256 * 1024) / panel_bytes);
  const int64_t total_panels = (N + kNR - 1) / kNR;
  const int64_t block_panels = std::min(max_panels, total_panels);
  const int64_t m_tiles = (M + kMR - 1) / kMR;
  std::vector<uint64_t> bpack(static_cast<size_t>(block_panels * w64 * kNR));
  const int nt = sane_threads(num_threads);

  for (int64_t p0 = 0; p0 < total_panels; p0 += block_panels) {
    const int64_t np = std::min(block_panels, total_panels - p0);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
      for (int64_t p = 0; p < np; ++p) {
        const int64_t n0 = (p0 + p) * kNR;
        pack_panel<kNR>(B + n0 * ldb, ldb, std::min<int64_t>(kNR, N - n0), words, last_mask, w64,
                        bpack.data() + p * w64 * kNR);
      }
      std::vector<uint64_t> apack(static_cast<size_t>(w64 * kMR));
      int64_t packed_tile = -1;
#pragma omp for collapse(2) schedule(static)
      for (int64_t t = 0; t < m_tiles; ++t) {
        for (int64_t p = 0; p < np; ++p) {
          const int64_t m0 = t * kMR;
          if (packed_tile != t) {
            pack_panel<kMR>(A + m0 * lda, lda, std::min<int64_t>(kMR, M - m0), words, last_mask,
                            w64, apack.data());
            packed_tile = t;
          }
          int32_t acc[kMR][kNR];
          mk.fn(apack.data(), bpack.data() + p * w64 * kNR, w64, acc);
          const int64_t n0 = (p0 + p) * kNR;
          const int64_t mr = std::min<int64_t>(kMR, M - m0), nr = std::min<int64_t>(kNR, N - n0);
          for (int64_t i = 0; i < mr; ++i)
            for (int64_t j = 0; j < nr; ++j) C[(m0 + i) * ldc + n0 + j] = alpha * acc[i][j] + beta;
        }
      }
    }
  }
}

void xnor_gemm(const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, int64_t M,
               int64_t N, int64_t k, int32_t* C, int64_t ldc, int num_threads) {
  popcount_gemm(BitOp::Xor, A, lda, B, ldb, M, N, words_for_bits(k), tail_mask(k), -2,
                static_cast<int32_t>(k), C, ldc, num_threads);
}

}  // namespace bnn::cpu
