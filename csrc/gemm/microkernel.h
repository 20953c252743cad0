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

// popcount(op(a, b)) over one pair of packed rows of `words` 32-bit words, bits of the last
// word outside last_mask ignored: the GEMV path, which reads B in place (no packing).
using RowDotFn = int64_t (*)(const uint32_t* a, const uint32_t* b, int64_t words,
                             uint32_t last_mask);

struct MicroKernel {
  MicroKernelFn fn;
  const char* name;
  int mr;  // rows of A per tile
  int nr;  // rows of B per tile
  RowDotFn dot;
};

// Best micro-kernel for this CPU (AVX-512 VPOPCNTDQ, then AVX2, then scalar POPCNT);
// BNN_KERNELS_CPU_ISA=scalar|avx2|avx512 caps the choice (tests force each path with it).
MicroKernel select_microkernel(BitOp op);

// Individual kernels, for tests and benchmarks that force each path.
MicroKernel scalar_microkernel(BitOp op);
MicroKernel avx2_microkernel(BitOp op);    // fn == nullptr where not compiled in
MicroKernel avx512_microkernel(BitOp op);  // fn == nullptr where not compiled in
bool cpu_has_avx512_vpopcnt();

// Building blocks of the driver, for callers that produce their own A tiles (the conv
// gathers its im2col rows straight into tile layout, a block of pixels at a time).
//
// Packs rows [0, rows) of src (leading dim ld, `words` 32-bit words, bits of the last word
// outside last_mask ignored) into ceil(rows / R) tiles of w64 = ceil(words / 2) words.
void pack_tiles(const int32_t* src, int64_t ld, int64_t rows, int R, int64_t words,
                uint32_t last_mask, int64_t w64, uint64_t* out);
// C[m, n] = alpha * popcount(op(A[m], B[n])) + beta for m < M, n < N, from packed tiles
// (mk.mr rows of A per tile, mk.nr rows of B), single-threaded, cache blocked like
// popcount_gemm.
void multiply_tiles(const MicroKernel& mk, const uint64_t* ap, int64_t M, const uint64_t* bp,
                    int64_t N, int64_t w64, int32_t alpha, int32_t beta, int32_t* C,
                    int64_t ldc);

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
