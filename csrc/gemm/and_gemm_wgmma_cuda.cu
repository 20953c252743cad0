// AND-popcount GEMM on Hopper's warpgroup tensor cores (sm_90a): wgmma.mma_async
// .m64nNk256.s32.b1.b1.and.popc (SASS BGMMA) with A and B K-major in shared memory, 128-byte
// swizzle, fed by TMA (cp.async.bulk.tensor) through an mbarrier ring. Opt-in
// (GemmPath::Wgmma) until a GPU has confirmed it; the heuristic never picks it.
//
// Block: 3 warpgroups. Warpgroup 2 is the producer (setmaxnreg 40): one thread waits for a free
// stage (its "empty" mbarrier), announces the stage's bytes on its "full" mbarrier and issues two
// TMA loads (A: 128 rows x 1024 bits, B: BN rows x 1024 bits). Warpgroups 0 and 1 are consumers
// (setmaxnreg 232), each owning 64 rows of the 128 x BN tile: wait for the full stage, 4 wgmma
// (k256 steps: descriptor start + 32 bytes), commit, wait_group 1, release the previous stage.
// Persistent: a grid of at most one block per SM walks the tiles (batch, N, M; M fastest), the
// ring running on across tiles. The epilogue stores from the accumulators (and_gemm_epilogue.cuh).
//
// Tails: TMA zero-fills rows past M / N and bytes past the row's `words`; the dirty bits of the
// last word (past last_mask) are subtracted in the epilogue, never trusted.
// Shared memory layout (aligned to 1024 bytes by the kernel itself: the swizzle pattern repeats
// every 1024 bytes of absolute address): stage s = [A 16 KiB | B BN*128 bytes], then the
// full[stages] and empty[stages] mbarriers.
#include <algorithm>
#include <atomic>

#include "common/cuda_common.cuh"
#include "common/ptx_sm90.cuh"
#include "common/tma.h"
#include "gemm/and_gemm_epilogue.cuh"

namespace bnn::cuda {
namespace {

constexpr int kBM = 128;                                // rows per tile: 2 consumer warpgroups x 64
constexpr int kKBytes = 128;                            // a stage's K: 1024 bits = one 128-byte swizzle row
constexpr int kThreads = 384;                           // 2 consumer warpgroups + 1 producer warpgroup
[[maybe_unused]] constexpr int kConsumerThreads = 256;  // arrivals per phase of an empty barrier
constexpr int kStubSmem = 8192;                         // static shared memory of the non-sm_90a stub
[[maybe_unused]] constexpr int kProducerRegs = 40, kConsumerRegs = 232;  // 2 * 128 * 232 + 128 * 40 <= 65536

template <int BN>
struct Ring {
  static constexpr int stages = BN == 256 ? 4 : 6;
  static constexpr uint32_t a_bytes = kBM * kKBytes, b_bytes = BN * kKBytes;
  static constexpr uint32_t stage = a_bytes + b_bytes;  // a multiple of 1024
  static constexpr uint32_t smem = 1024 + stages * stage + 2 * stages * 8;
  static_assert(stage % 1024 == 0, "each stage must start a swizzle pattern");
  uint32_t base;  // 1024-byte aligned shared address
  __device__ uint32_t a(int s) const { return base + s * stage; }
  __device__ uint32_t b(int s) const { return base + s * stage + a_bytes; }
  __device__ uint32_t full(int s) const { return base + stages * stage + 8 * s; }
  __device__ uint32_t empty(int s) const { return base + stages * stage + 8 * (stages + s); }
};

// Shared-memory matrix descriptor of a K-major operand with the 128-byte swizzle (PTX ISA
// asynchronous-warpgroup-level-matrix-shared-memory-layout-matrix-descriptor): start address
// >> 4, LBO 16 (unused with swizzle), SBO 1024 (8 rows of 128 bytes), base offset 0 (the tile
// starts a 1024-byte pattern), swizzle mode 1 (128B). Adding 2 to it advances 32 bytes = k256.
__device__ __forceinline__ uint64_t desc_128b(uint32_t addr) {
  return uint64_t((addr & 0x3FFFF) >> 4) | uint64_t(1) << 16 | uint64_t(1024 >> 4) << 32 | uint64_t(1) << 62;
}

__device__ __forceinline__ void wait_phase(uint32_t bar, uint32_t parity) {
  while (!ptx::mbarrier_try_wait_parity(bar, parity)) {
  }
}

// Where tile t lies: batch entry, first row, first column.
struct Tile {
  int b;
  int64_t m0, n0;
};
__device__ __forceinline__ Tile tile_at(int64_t t, int64_t tiles_m, int64_t tiles_n, int bn) {
  return {static_cast<int>(t / (tiles_m * tiles_n)), (t % tiles_m) * kBM, (t / tiles_m) % tiles_n * bn};
}

// Rows of the maps between batch entries (a_batch / lda, b_batch / ldb; 0 for one entry).
struct WgmmaGeom {
  int64_t a_rows_per_batch, b_rows_per_batch, tiles_m, tiles_n, tiles;
  int k_tiles;
};

template <int BN>
__device__ void produce(const Ring<BN>& r, const CUtensorMap* ma, const CUtensorMap* mb, const WgmmaGeom& g) {
  int it = 0;
  for (int64_t t = blockIdx.x; t < g.tiles; t += gridDim.x) {
    const Tile tl = tile_at(t, g.tiles_m, g.tiles_n, BN);
    const int32_t ra = static_cast<int32_t>(tl.b * g.a_rows_per_batch + tl.m0);
    const int32_t rb = static_cast<int32_t>(tl.b * g.b_rows_per_batch + tl.n0);
    for (int kt = 0; kt < g.k_tiles; ++kt, ++it) {
      const int s = it % Ring<BN>::stages;
      wait_phase(r.empty(s), ((it / Ring<BN>::stages) & 1) ^ 1);   // the first pass finds it free
      ptx::mbarrier_arrive_expect_tx(r.full(s), Ring<BN>::stage);  // full boxes, tails included
      ptx::tma_load_2d(r.a(s), ma, r.full(s), kt * kKBytes, ra);
      ptx::tma_load_2d(r.b(s), mb, r.full(s), kt * kKBytes, rb);
    }
  }
}

// Epilogue of one consumer warpgroup (rows m0 .. m0 + 63 of the tile): register i of thread t
// holds D(16 w + l/4 + 8 ((i >> 1) & 1), 8 (i >> 2) + 2 (l % 4) + (i & 1)), w = t / 32, l = t % 32.
template <int BN>
__device__ __forceinline__ void store_tile(const AndGemmArgs& p, const Tile& tl, int64_t m0,
                                           const int32_t (&acc)[BN / 2]) {
  const int t = threadIdx.x % 128, w = t / 32, l = t % 32;
  const bool dirty = p.last_mask != 0xFFFFFFFFu;
  const int32_t* A = p.A + tl.b * p.a_batch + (p.words - 1);
  const int32_t* B = p.B + tl.b * p.b_batch + (p.words - 1);
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) {
    const int64_t m = m0 + 16 * w + l / 4 + 8 * ((i >> 1) & 1);
    const int64_t n = tl.n0 + 8 * (i >> 2) + 2 * (l % 4) + (i & 1);
    if (m < p.M && n < p.N) {
      int32_t cnt = acc[i];
      if (dirty) cnt -= __popc(static_cast<uint32_t>(A[m * p.lda] & B[n * p.ldb]) & ~p.last_mask);
      epilogue_store(p, tl.b, m, n, cnt);
    }
  }
}

template <int BN>
__device__ void consume(const Ring<BN>& r, const AndGemmArgs& p, const WgmmaGeom& g) {
  const int wg = threadIdx.x / 128;  // 0 or 1: rows 64 wg .. 64 wg + 63 of each tile
  int32_t acc[BN / 2];
  int it = 0;
  for (int64_t t = blockIdx.x; t < g.tiles; t += gridDim.x) {
    const Tile tl = tile_at(t, g.tiles_m, g.tiles_n, BN);
    for (int kt = 0; kt < g.k_tiles; ++kt, ++it) {
      const int s = it % Ring<BN>::stages;
      wait_phase(r.full(s), (it / Ring<BN>::stages) & 1);
      ptx::wgmma_fence();  // the accumulators were read by the last tile's epilogue
      const uint64_t da = desc_128b(r.a(s) + wg * 64 * kKBytes), db = desc_128b(r.b(s));
#pragma unroll
      for (int k = 0; k < 4; ++k) ptx::wgmma_b1_and<BN>(acc, da + 2 * k, db + 2 * k, kt > 0 || k > 0);
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<1>();  // the previous stage's group is done: release its stage
      if (kt > 0) ptx::mbarrier_arrive(r.empty((it - 1) % Ring<BN>::stages));
    }
    ptx::wgmma_wait_group<0>();
    ptx::mbarrier_arrive(r.empty((it - 1) % Ring<BN>::stages));
    store_tile<BN>(p, tl, tl.m0 + 64 * wg, acc);
  }
}

template <int BN>
__global__ void __launch_bounds__(kThreads, 1)
    and_gemm_wgmma_kernel(const __grid_constant__ CUtensorMap ma, const __grid_constant__ CUtensorMap mb,
                          const AndGemmArgs p, const WgmmaGeom g) {
#if BNN_SM90A_CODE
  BNN_DYNAMIC_SMEM(raw);
  const Ring<BN> r{(static_cast<uint32_t>(__cvta_generic_to_shared(raw)) + 1023u) & ~1023u};
  if (threadIdx.x == 0) {
    for (int s = 0; s < Ring<BN>::stages; ++s) {
      ptx::mbarrier_init(r.full(s), 1);
      ptx::mbarrier_init(r.empty(s), kConsumerThreads);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if (threadIdx.x >= kConsumerThreads) {
    ptx::setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x == kConsumerThreads) produce<BN>(r, &ma, &mb, g);
    return;
  }
  ptx::setmaxnreg_inc<kConsumerRegs>();
  consume<BN>(r, p, g);
#else
  // Not sm_90a code: launch_and_gemm never runs it (and_gemm_wgmma_native()). The static shared
  // array marks such an image: cudaFuncGetAttributes reports at least kStubSmem bytes of static
  // shared memory for it (sm_90a code has none but the 1 KiB the system reserves).
  __shared__ int not_sm90a[kStubSmem / 4];
  static_cast<volatile int*>(not_sm90a)[threadIdx.x % (kStubSmem / 4)] = 0;  // kept: a volatile store
  __trap();
#endif
}

template <int BN>
void launch_bn(const AndGemmArgs& p, const WgmmaGeom& g, const CUtensorMap& ma, const CUtensorMap& mb,
               cudaStream_t stream) {
  auto kernel = and_gemm_wgmma_kernel<BN>;
  static std::atomic<uint64_t> configured{0};  // the shared-memory opt-in, once per device
  int dev = 0, sms = 1;
  cudaGetDevice(&dev);
  const uint64_t bit = dev < 64 ? (uint64_t(1) << dev) : 0;
  if (bit == 0 || !(configured.load(std::memory_order_relaxed) & bit)) {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Ring<BN>::smem) == cudaSuccess)
      configured.fetch_or(bit, std::memory_order_relaxed);
  }
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int64_t grid = std::min<int64_t>({g.tiles, std::max(sms, 1), BNN_CUDA_MAX_STRIDE_BLOCKS});
  and_gemm_wgmma_kernel<BN><<<static_cast<unsigned>(grid), kThreads, Ring<BN>::smem, stream>>>(ma, mb, p, g);
}

// Rows a map spans: every batch entry's first row plus M (or N) rows after the last one.
bool batch_rows(int64_t batch_stride, int64_t ld, int batch, int64_t rows, int64_t* per_batch, int64_t* total) {
  if (batch > 1 && batch_stride % ld != 0) return false;
  *per_batch = batch > 1 ? batch_stride / ld : 0;
  *total = (batch - 1) * *per_batch + rows;
  return *total < (int64_t(1) << 31) - 256;  // TMA coordinates are int32
}

}  // namespace

bool and_gemm_wgmma_fits(const AndGemmArgs& p) {
  int64_t per, total;
  return p.words > 0 && p.words * 4 <= (int64_t(1) << 31) && aligned_to(p.A, 16) && aligned_to(p.B, 16) &&
         p.lda % 4 == 0 && p.ldb % 4 == 0 && batch_rows(p.a_batch, p.lda, p.batch, p.M, &per, &total) &&
         batch_rows(p.b_batch, p.ldb, p.batch, p.N, &per, &total);
}

bool and_gemm_wgmma_native() {
  // Per device: bit d of `known` says device d was queried, bit d of `native` holds the answer.
  static std::atomic<uint64_t> known{0}, native{0};
  int dev = -1, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return false;
  const uint64_t bit = dev < 64 ? (uint64_t(1) << dev) : 0;
  if (bit && (known.load(std::memory_order_acquire) & bit)) return (native.load(std::memory_order_relaxed) & bit) != 0;
  // sm_90a code runs on compute capability 9.0 only; the loaded image must be SASS built for it
  // (PTX and binary version 90) and not the trap body of another target (static shared memory).
  cudaFuncAttributes attr{};
  const auto kernel = and_gemm_wgmma_kernel<256>;
  bool ok = cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(kernel)) == cudaSuccess;
  ok = ok && attr.ptxVersion == 90 && attr.binaryVersion == 90 && attr.sharedSizeBytes < kStubSmem;
  ok = ok && cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
       cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 &&
       minor == 0;
  if (bit) {
    if (ok) native.fetch_or(bit, std::memory_order_relaxed);
    known.fetch_or(bit, std::memory_order_release);
  }
  return ok;
}

bool launch_and_gemm_wgmma(const AndGemmArgs& p, cudaStream_t stream) {
  if (!and_gemm_wgmma_fits(p)) return false;
  if (p.M <= 0 || p.N <= 0 || p.batch <= 0) return true;
  const int bn = p.N <= 128 ? 128 : 256;
  WgmmaGeom g{};
  int64_t rows_a, rows_b;
  batch_rows(p.a_batch, p.lda, p.batch, p.M, &g.a_rows_per_batch, &rows_a);
  batch_rows(p.b_batch, p.ldb, p.batch, p.N, &g.b_rows_per_batch, &rows_b);
  g.tiles_m = ceil_div(p.M, kBM), g.tiles_n = ceil_div(p.N, bn), g.tiles = g.tiles_m * g.tiles_n * p.batch;
  g.k_tiles = static_cast<int>(ceil_div(p.words * 4, kKBytes));
  CUtensorMap ma, mb;  // the type carries the alignment TMA needs
  const uint64_t row_bytes = static_cast<uint64_t>(p.words) * 4;
  if (!encode_tma_2d_128b(&ma, p.A, row_bytes, rows_a, p.lda * 4, kKBytes, kBM) ||
      !encode_tma_2d_128b(&mb, p.B, row_bytes, rows_b, p.ldb * 4, kKBytes, bn))
    return false;
  if (bn == 128)
    launch_bn<128>(p, g, ma, mb, stream);
  else
    launch_bn<256>(p, g, ma, mb, stream);
  return true;
}

}  // namespace bnn::cuda
