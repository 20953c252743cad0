// CPU driver. A and B are packed once into k-major tiles of the micro-kernel's MR and NR
// rows (64-bit words, tails masked); the product is then cache blocked GotoBLAS-style: a K
// block of kKc words keeps an A tile in L1 and a block of B tiles of about kBBlockBytes in
// L2. OpenMP hands out runs of (A tile, B tile) pairs dynamically (B block, then A tile, then
// B tile), so a thread that the OS preempts does not hold the other up. Counts of K blocks
// are summed in C and the affine epilogue alpha * count + beta is applied with the last one.
// The micro-kernel is picked at run time (microkernel_select.cpp: AVX-512 VPOPCNTDQ, AVX2,
// or scalar POPCNT).
#include "gemm/popcount_gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/bits.h"
#include "gemm/epilogue_cpu.h"
#include "gemm/microkernel.h"

namespace bnn::cpu {
namespace {

constexpr int64_t kGemvRows = 3;  // up to this many rows of A: row dot products

// Copies `valid` packed rows into tile layout p[kk * R + r] (64-bit word kk of row r),
// masking the last 32-bit word and zero-filling rows r >= valid and the odd half-word.
void pack_tile(const int32_t* src, int64_t ld, int R, int64_t valid, int64_t words, uint32_t last_mask, int64_t w64,
               uint64_t* p) {
  const int64_t full = (words - 1) / 2;  // 64-bit words holding neither the last word nor a gap
  for (int r = 0; r < R; ++r) {
    if (r >= valid) {
      for (int64_t kk = 0; kk < w64; ++kk) p[kk * R + r] = 0;
      continue;
    }
    const uint32_t* s = reinterpret_cast<const uint32_t*>(src + r * ld);
    for (int64_t kk = 0; kk < full; ++kk) {
      uint64_t v;
      std::memcpy(&v, s + 2 * kk, sizeof v);
      p[kk * R + r] = v;
    }
    for (int64_t kk = full; kk < w64; ++kk) {
      const int64_t w0 = 2 * kk, w1 = 2 * kk + 1;
      uint64_t lo = s[w0];
      uint64_t hi = w1 < words ? s[w1] : 0u;
      if (w0 == words - 1) lo &= last_mask;
      if (w1 == words - 1) hi &= last_mask;
      p[kk * R + r] = lo | (hi << 32);
    }
  }
}

// C tile (mv x nv of a micro-kernel's counts s, row stride ns) = counts of the first K
// block, + counts of later ones, and alpha * sum + beta after the last. Branch-free inner
// loops, so that they vectorize.
void store_tile(const int32_t* s, int64_t ns, int32_t* c, int64_t ldc, int64_t mv, int64_t nv, bool first, bool last,
                int32_t alpha, int32_t beta) {
  for (int64_t i = 0; i < mv; ++i, s += ns, c += ldc) {
    if (first && last) {
      for (int64_t j = 0; j < nv; ++j) c[j] = alpha * s[j] + beta;
    } else if (first) {
      for (int64_t j = 0; j < nv; ++j) c[j] = s[j];
    } else if (last) {
      for (int64_t j = 0; j < nv; ++j) c[j] = alpha * (c[j] + s[j]) + beta;
    } else {
      for (int64_t j = 0; j < nv; ++j) c[j] += s[j];
    }
  }
}

// A finished tile (mv x nv counts s, row stride ns, one K block) as alpha * s + beta through
// the epilogue e: output rows [m0, m0 + mv), channels [n0, n0 + nv).
void epilogue_tile(const Epilogue& e, ValuesFn values, int32_t* s, int64_t ns, int64_t m0, int64_t mv, int64_t n0,
                   int64_t nv, int32_t alpha, int32_t beta) {
  for (int64_t i = 0; i < mv; ++i)
    for (int64_t j = 0; j < nv; ++j) s[i * ns + j] = alpha * s[i * ns + j] + beta;
  epilogue_block(e, values, s, ns, m0, mv, n0, nv);
}

}  // namespace

void pack_tiles(const int32_t* src, int64_t ld, int64_t rows, int R, int64_t words, uint32_t last_mask, int64_t w64,
                uint64_t* out) {
  for (int64_t t = 0; t * R < rows; ++t)
    pack_tile(src + t * R * ld, ld, R, std::min<int64_t>(R, rows - t * R), words, last_mask, w64, out + t * R * w64);
}

void multiply_tiles(const MicroKernel& mk, const uint64_t* ap, int64_t M, const uint64_t* bp, int64_t N, int64_t w64,
                    int32_t alpha, int32_t beta, int32_t* C, int64_t ldc) {
  const int mr = mk.mr, nr = mk.nr;
  const int64_t m_tiles = (M + mr - 1) / mr, n_tiles = (N + nr - 1) / nr;
  const int64_t kc = std::min(w64, kKc);
  const int64_t block_tiles = std::max<int64_t>(1, kBBlockBytes / (kc * nr * 8));
  for (int64_t k0 = 0; k0 < w64; k0 += kc) {
    const int64_t kn = std::min(kc, w64 - k0);
    const bool first = k0 == 0, last = k0 + kn == w64;
    for (int64_t p0 = 0; p0 < n_tiles; p0 += block_tiles) {
      const int64_t p1 = std::min(n_tiles, p0 + block_tiles);
      for (int64_t t = 0; t < m_tiles; ++t) {
        for (int64_t p = p0; p < p1; ++p) {
          alignas(64) int32_t acc[kMaxMR * kMaxNR];
          mk.fn(ap + (t * w64 + k0) * mr, bp + (p * w64 + k0) * nr, kn, acc);
          const int64_t m0 = t * mr, n0 = p * nr;
          store_tile(acc, nr, C + m0 * ldc + n0, ldc, std::min<int64_t>(mr, M - m0), std::min<int64_t>(nr, N - n0),
                     first, last, alpha, beta);
        }
      }
    }
  }
}

const char* gemm_isa() { return select_microkernel(BitOp::Xor).name; }

namespace {

// popcount_gemm; with an epilogue e (tiled path, one K block only) each finished tile goes
// through e while in L1 instead of into C.
void popcount_gemm_impl(BitOp op, const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, int64_t M, int64_t N,
                        int64_t words, uint32_t last_mask, int32_t alpha, int32_t beta, int32_t* C, int64_t ldc,
                        int num_threads, const Epilogue* e) {
  if (M <= 0 || N <= 0) return;
  if (words <= 0) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = beta;
    return;
  }
  const MicroKernel mk = select_microkernel(op);
  if (M <= kGemvRows) {
    // A few rows of A: row dot products straight from B, no packing and no tile rows
    // wasted (M=1 through an 8-row tile costs as much as M=8).
    const int nt = N * words < 2 * kChunkWords ? 1 : sane_threads(num_threads);
    const uint32_t* a = reinterpret_cast<const uint32_t*>(A);
    const uint32_t* b = reinterpret_cast<const uint32_t*>(B);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m)
        C[m * ldc + n] = alpha * static_cast<int32_t>(mk.dot(a + m * lda, b + n * ldb, words, last_mask)) + beta;
    return;
  }
  const int mr = mk.mr, nr = mk.nr;
  const int64_t w64 = (words + 1) / 2;
  const int64_t m_tiles = (M + mr - 1) / mr, n_tiles = (N + nr - 1) / nr;
  const int64_t kc = std::min(w64, kKc);
  const int64_t block_tiles = std::max<int64_t>(1, kBBlockBytes / (kc * nr * 8));
  static thread_local std::vector<uint64_t> acache, bcache;
  const ScratchBuffer<uint64_t> apack(acache, static_cast<size_t>(m_tiles * mr * w64));
  const ScratchBuffer<uint64_t> bpack(bcache, static_cast<size_t>(n_tiles * nr * w64));
  uint64_t* ap = apack.get();
  uint64_t* bp = bpack.get();
  // Fewer than two hand-outs of work: one thread, no fork and join.
  const int nt = m_tiles * n_tiles * w64 < 2 * kChunkWords ? 1 : sane_threads(num_threads);
  const ValuesFn values = e ? select_epilogue_values() : nullptr;

#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(dynamic, 8) nowait
    for (int64_t t = 0; t < m_tiles; ++t)
      pack_tile(A + t * mr * lda, lda, mr, std::min<int64_t>(mr, M - t * mr), words, last_mask, w64, ap + t * mr * w64);
#pragma omp for schedule(dynamic, 8)
    for (int64_t t = 0; t < n_tiles; ++t)
      pack_tile(B + t * nr * ldb, ldb, nr, std::min<int64_t>(nr, N - t * nr), words, last_mask, w64, bp + t * nr * w64);

    const auto tile = [&](int64_t t, int64_t p, int64_t k0, int64_t kn, bool first, bool last) {
      alignas(64) int32_t acc[kMaxMR * kMaxNR];
      mk.fn(ap + (t * w64 + k0) * mr, bp + (p * w64 + k0) * nr, kn, acc);
      const int64_t m0 = t * mr, n0 = p * nr;
      if (e)
        return epilogue_tile(*e, values, acc, nr, m0, std::min<int64_t>(mr, M - m0), n0, std::min<int64_t>(nr, N - n0),
                             alpha, beta);
      store_tile(acc, nr, C + m0 * ldc + n0, ldc, std::min<int64_t>(mr, M - m0), std::min<int64_t>(nr, N - n0), first,
                 last, alpha, beta);
    };
    for_each_tile_pair(m_tiles, n_tiles, w64, kc, block_tiles, 1, tile);
  }
}

}  // namespace

void popcount_gemm(BitOp op, const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, int64_t M, int64_t N,
                   int64_t words, uint32_t last_mask, int32_t alpha, int32_t beta, int32_t* C, int64_t ldc,
                   int num_threads) {
  popcount_gemm_impl(op, A, lda, B, ldb, M, N, words, last_mask, alpha, beta, C, ldc, num_threads, nullptr);
}

void xnor_gemm(const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, int64_t M, int64_t N, int64_t k,
               int32_t* C, int64_t ldc, int num_threads) {
  popcount_gemm(BitOp::Xor, A, lda, B, ldb, M, N, words_for_bits(k), tail_mask(k), -2, static_cast<int32_t>(k), C, ldc,
                num_threads);
}

void xnor_gemm(const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, int64_t M, int64_t N, int64_t k,
               const Epilogue& e, int num_threads) {
  if (e.raw_int32()) return xnor_gemm(A, lda, B, ldb, M, N, k, static_cast<int32_t*>(e.out), e.out_ld, num_threads);
  if (M <= 0 || N <= 0) return;
  const int64_t words = words_for_bits(k);
  if (!e.bits_out && M > kGemvRows && (words + 1) / 2 <= kKc) {
    // Float output of the tiled path with one K block: each tile through the epilogue in L1.
    return popcount_gemm_impl(BitOp::Xor, A, lda, B, ldb, M, N, words, tail_mask(k), -2, static_cast<int32_t>(k),
                              nullptr, 0, num_threads, &e);
  }
  // Otherwise (bits, which need whole words of a row; few rows; K blocks summed in C) the
  // exact counts into a scratch matrix, then the epilogue over it.
  static thread_local std::vector<int32_t> ccache;
  const ScratchBuffer<int32_t> acc(ccache, static_cast<size_t>(M * N));
  xnor_gemm(A, lda, B, ldb, M, N, k, acc.get(), N, num_threads);
  apply_epilogue(e, acc.get(), N, M, N, num_threads);
}

}  // namespace bnn::cpu
