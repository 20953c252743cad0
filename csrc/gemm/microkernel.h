// Register-blocked popcount micro-kernels over packed 64-bit panels (internal).
//
// Panel layout: a tile of R rows is stored k-major, p[kk * R + r] = 64-bit word kk of row r,
// so one K step of a tile is R consecutive words (one or more vector registers of B).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gemm/popcount_gemm.h"

namespace bnn::cpu {

// Largest tile any kernel uses (bounds for the driver's stack buffers).
constexpr int kMaxMR = 8;
constexpr int kMaxNR = 16;

// acc[i * nr + j] = sum_kk popcount(op(a[kk * mr + i], b[kk * nr + j])) for kk < w64,
// i < mr, j < nr (overwrites acc).
using MicroKernelFn = void (*)(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t* acc);
// acc[i * nr + j] += coef * sum_kk popcount(...), the same counts scaled and accumulated in
// the kernel's registers: plane pairs of bitserial_gemm summed with their coefficients.
using MicroKernelAxpyFn = void (*)(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t coef, int32_t* acc);

// Bit-serial tiles (bitserial_gemm): acc[i * nr + j] += sum over pairs e < count of
// pairs[e].coef * sum_kk popcount(a[e][kk * mr + i] & b[e][kk * nr + j]), kk < w64: every
// (activation plane, weight plane) pair of an (A tile, B tile) pair in one call, the
// coefficient-weighted sum kept in registers.
struct PlanePair {
  const uint64_t* a;  // A panel of the activation plane
  const uint64_t* b;  // B panel of the weight plane
  int32_t coef;
};
using PlaneSumFn = void (*)(const PlanePair* pairs, int64_t count, int64_t w64, int32_t* acc);

// popcount(op(a, b)) over one pair of packed rows of `words` 32-bit words, bits of the last
// word outside last_mask ignored: the GEMV path, which reads B in place (no packing).
using RowDotFn = int64_t (*)(const uint32_t* a, const uint32_t* b, int64_t words, uint32_t last_mask);

struct MicroKernel {
  MicroKernelFn fn;
  const char* name;
  int mr;  // rows of A per tile
  int nr;  // rows of B per tile
  RowDotFn dot;
  MicroKernelAxpyFn axpy;
  PlaneSumFn plane_sum = nullptr;  // AND kernels with a plane-sum kernel (AVX-512, AVX2), else nullptr
};

// Best micro-kernel for this CPU (AVX-512 VPOPCNTDQ, then AVX2, then scalar POPCNT);
// BNN_KERNELS_CPU_ISA=scalar|avx2|avx512 caps the choice (tests force each path with it).
MicroKernel select_microkernel(BitOp op);

// Individual kernels, for tests and benchmarks that force each path.
MicroKernel scalar_microkernel(BitOp op);
MicroKernel avx2_microkernel(BitOp op);    // fn == nullptr where not compiled in
MicroKernel avx512_microkernel(BitOp op);  // fn == nullptr where not compiled in
bool cpu_has_avx512_vpopcnt();

// The plane-sum kernel of the AND micro-kernel mk (same tile and panel layout; AVX-512 and
// AVX2), or nullptr where mk has none (scalar: the caller then runs mk.axpy per pair).
PlaneSumFn plane_sum_kernel(const MicroKernel& mk);
// counts[r] = sum_kk popcount(panel[kk * mr + r]) for r < mr, kk < w64: the bit count of
// each row of a packed A panel (padding rows count 0), while the panel is in L1.
using PanelCountFn = void (*)(const uint64_t* panel, int64_t w64, int64_t* counts);
// The panel counter of mk's A panels, or nullptr where mk has none.
PanelCountFn panel_count_kernel(const MicroKernel& mk);

// Building blocks of the driver, for callers that produce their own A tiles (the conv
// gathers its im2col rows straight into tile layout, a block of pixels at a time).
//
// Packs rows [0, rows) of src (leading dim ld, `words` 32-bit words, bits of the last word
// outside last_mask ignored) into ceil(rows / R) tiles of w64 = ceil(words / 2) words.
void pack_tiles(const int32_t* src, int64_t ld, int64_t rows, int R, int64_t words, uint32_t last_mask, int64_t w64,
                uint64_t* out);
// C[m, n] = alpha * popcount(op(A[m], B[n])) + beta for m < M, n < N, from packed tiles
// (mk.mr rows of A per tile, mk.nr rows of B), single-threaded, cache blocked like
// popcount_gemm.
void multiply_tiles(const MicroKernel& mk, const uint64_t* ap, int64_t M, const uint64_t* bp, int64_t N, int64_t w64,
                    int32_t alpha, int32_t beta, int32_t* C, int64_t ldc);

// Cache blocking of the threaded tile drivers (popcount_gemm, bitserial_gemm), GotoBLAS
// style: a K block of at most kKc words keeps A tiles in L1, a block of B tiles of about
// kBBlockBytes stays in L2, and a hand-out to a thread is about kChunkWords micro-kernel K
// steps (some 10-20 us), so a thread the OS preempts does not hold the others up.
constexpr int64_t kKc = 256;                  // K block in 64-bit words (16 Kbit)
constexpr int64_t kBBlockBytes = 256 * 1024;  // half of a Zen 3 L2
constexpr int64_t kChunkWords = 2048;         // scheduling grain, in micro-kernel K steps

// The drivers' work loop; every thread of an OpenMP parallel region calls it (or one thread
// outside any region). For each K block [k0, k0 + kn) of w64 in turn (kc words, a barrier
// between blocks), it hands out every (A tile t, B tile p) pair, ordered by B block of
// block_tiles tiles, then A tile, then B tile (N blocks need no barrier between them), and
// calls f(t, p, k0, kn, first, last). calls_per_pair: micro-kernel calls f makes per pair,
// which scales the hand-out size.
template <class F>
void for_each_tile_pair(int64_t m_tiles, int64_t n_tiles, int64_t w64, int64_t kc, int64_t block_tiles,
                        int64_t calls_per_pair, F&& f) {
  for (int64_t k0 = 0; k0 < w64; k0 += kc) {
    const int64_t kn = kc < w64 - k0 ? kc : w64 - k0;
    const bool first = k0 == 0, last = k0 + kn == w64;
    const int64_t grain = kChunkWords / (kn * calls_per_pair);
    const int64_t chunk = grain > 1 ? grain : 1;
#pragma omp for schedule(dynamic, chunk)
    for (int64_t u = 0; u < m_tiles * n_tiles; ++u) {
      const int64_t p0 = u / (m_tiles * block_tiles) * block_tiles;  // block's first B tile
      const int64_t np = block_tiles < n_tiles - p0 ? block_tiles : n_tiles - p0;
      const int64_t r = u - p0 * m_tiles;
      f(r / np, p0 + r % np, k0, kn, first, last);
    }
  }
}

// Work buffer of n elements taken from a per-thread cache that keeps its pages between
// calls (a fresh allocation of a few hundred KiB page-faults on every call, which cost
// ~15% of a small conv). Requests over kScratchKeepBytes get their own allocation instead,
// so the cache never pins more than that. Usage:
//   static thread_local std::vector<T> cache;  ScratchBuffer<T> buf(cache, n);
constexpr size_t kScratchKeepBytes = size_t(32) << 20;

template <typename T>
class ScratchBuffer {
 public:
  ScratchBuffer(std::vector<T>& cache, size_t n) {
    const size_t padded = n + kAlign / sizeof(T);  // room to align the start to 64 bytes
    T* base;
    if (n * sizeof(T) <= kScratchKeepBytes) {
      if (cache.size() < padded) cache.resize(padded);
      base = cache.data();
    } else {
      own_.reset(new T[padded]);
      base = own_.get();
    }
    const uintptr_t addr = reinterpret_cast<uintptr_t>(base);
    ptr_ = reinterpret_cast<T*>((addr + kAlign - 1) & ~uintptr_t(kAlign - 1));
  }
  T* get() const { return ptr_; }

 private:
  static constexpr size_t kAlign = 64;  // a cache line: whole-line vector loads of B tiles
  T* ptr_ = nullptr;
  std::unique_ptr<T[]> own_;
};

}  // namespace bnn::cpu
