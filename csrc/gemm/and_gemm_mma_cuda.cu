// AND-popcount GEMM on binary tensor cores: mma.sync.aligned.m16n8k256 .b1 AND.popc (native
// on sm_80 and sm_90). 128x128 block tile, 1024-bit k tiles, a 3-stage cp.async pipeline in
// XOR-swizzled shared memory read with ldmatrix, 8 warps of 64x32, integer epilogue.
//
// Tails: global words past `words` and rows past M/N are zero-filled by cp.async; the last
// word of A is masked in registers (one operand suffices for AND), so dirty tails of B or A
// are ignored.
#include <atomic>

#include "common/cuda_common.cuh"
#include "common/ptx.cuh"
#include "gemm/and_gemm_epilogue.cuh"

namespace bnn::cuda {
namespace {

constexpr int kBM = 128, kBN = 128;
constexpr int kBKWords = 32;  // 1024 bits: 128 bytes, 8 chunks of 16 bytes per row
constexpr int kChunks = kBKWords / 4;
constexpr int kStages = 3;
constexpr int kThreads = 256;  // 8 warps: 2 along M x 4 along N
constexpr int kWarpM = 64, kWarpN = 32;
constexpr int kMT = kWarpM / 16, kNT = kWarpN / 8;
constexpr int kTileBytes = (kBM + kBN) * kBKWords * 4;
constexpr int kSmemBytes = kStages * kTileBytes;  // 96 KiB

// Blocks per SM the launch bounds promise, per target: shared memory decides. sm_80 code also
// runs on sm_86/sm_89 (100 KiB per SM, 99 KiB per block) and A100 has 164 KiB per SM: one
// 96 KiB block fits, so registers are not capped (255). sm_90 has 228 KiB per SM: two blocks,
// which caps registers at 65536 / (2 * 256) = 128. Each block also reserves 1 KiB.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr int kMinBlocks = 2, kSmemPerSm = 228 * 1024, kSmemPerBlockMax = 227 * 1024;
#else
constexpr int kMinBlocks = 1, kSmemPerSm = 100 * 1024, kSmemPerBlockMax = 99 * 1024;
#endif
static_assert(kSmemBytes <= kSmemPerBlockMax, "MMA tile does not fit one block's shared memory");
static_assert(kMinBlocks * (kSmemBytes + 1024) <= kSmemPerSm, "__launch_bounds__ promises more blocks than fit");

// Byte offset of (row, 16-byte chunk) inside an operand tile: chunk XOR (row mod 8), so the
// 8 rows one ldmatrix phase reads sit in 8 different bank groups.
__device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return static_cast<uint32_t>(row * (kBKWords * 4) + ((chunk ^ (row & 7)) << 4));
}

// Copies the k tile starting at word k0 of `rows` rows (from row0) into a swizzled tile.
template <bool Vec16, int Rows>
__device__ __forceinline__ void load_operand(uint32_t tile, const int32_t* base, int64_t ld, int64_t row0,
                                             int64_t nrows, int64_t k0, int64_t words) {
  if constexpr (Vec16) {
#pragma unroll
    for (int i = 0; i < Rows * kChunks / kThreads; ++i) {
      const int idx = i * kThreads + threadIdx.x;
      const int r = idx / kChunks, c = idx % kChunks;
      const int64_t gr = row0 + r, gw = k0 + c * 4;
      int64_t left = words - gw;
      const int bytes = (gr < nrows && left > 0) ? static_cast<int>(left >= 4 ? 16 : left * 4) : 0;
      const int32_t* src = bytes ? base + gr * ld + gw : base;
      ptx::cp_async16(tile + swz(r, c), src, bytes);
    }
  } else {
#pragma unroll 4
    for (int i = 0; i < Rows * kBKWords / kThreads; ++i) {
      const int idx = i * kThreads + threadIdx.x;
      const int r = idx / kBKWords, w = idx % kBKWords;
      const int64_t gr = row0 + r, gw = k0 + w;
      const int bytes = (gr < nrows && gw < words) ? 4 : 0;
      const int32_t* src = bytes ? base + gr * ld + gw : base;
      ptx::cp_async4(tile + swz(r, w >> 2) + (w & 3) * 4, src, bytes);
    }
  }
}

template <bool Vec16>
__global__ void __launch_bounds__(kThreads, kMinBlocks) and_gemm_mma_kernel(const AndGemmArgs p) {
  BNN_DYNAMIC_SMEM(smem);
  const int b = blockIdx.z;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBM, n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int32_t* A = p.A + b * p.a_batch;
  const int32_t* B = p.B + b * p.b_batch;
  const uint32_t sbase = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int ktiles = static_cast<int>((p.words + kBKWords - 1) / kBKWords);

  auto load_stage = [&](int stage, int kt) {
    const uint32_t ta = sbase + stage * kTileBytes;
    const uint32_t tb = ta + kBM * kBKWords * 4;
    const int64_t k0 = static_cast<int64_t>(kt) * kBKWords;
    load_operand<Vec16, kBM>(ta, A, p.lda, m0, p.M, k0, p.words);
    load_operand<Vec16, kBN>(tb, B, p.ldb, n0, p.N, k0, p.words);
  };

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = (warp >> 2) * kWarpM, wn = (warp & 3) * kWarpN;
  const int g = lane >> 2, t = lane & 3;
  const int mi = lane >> 3, ri = lane & 7;  // ldmatrix: matrix this lane addresses, row in it

  int32_t acc[kMT][kNT][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) load_stage(s, s);
    ptx::cp_async_commit();
  }

  const int64_t last_word = p.words - 1;
  for (int kt = 0; kt < ktiles; ++kt) {
    ptx::cp_async_wait<kStages - 2>();
    __syncthreads();
    {
      const int next = kt + kStages - 1;
      if (next < ktiles) load_stage(next % kStages, next);
      ptx::cp_async_commit();
    }
    const uint32_t ta = sbase + (kt % kStages) * kTileBytes;
    const uint32_t tb = ta + kBM * kBKWords * 4;
    const int64_t k0 = static_cast<int64_t>(kt) * kBKWords;
    const bool mask_tile = p.last_mask != 0xFFFFFFFFu && last_word >= k0 && last_word < k0 + kBKWords;
#pragma unroll
    for (int s = 0; s < kBKWords / 8; ++s) {  // one k256 step: words 8s .. 8s+7 of the tile
      uint32_t af[kMT][4], bf[kNT][2];
#pragma unroll
      for (int i = 0; i < kMT; ++i) {
        const int row = wm + i * 16 + ri + (mi & 1) * 8;
        ptx::ldmatrix_x4(ta + swz(row, 2 * s + (mi >> 1)), af[i][0], af[i][1], af[i][2], af[i][3]);
      }
#pragma unroll
      for (int j = 0; j < kNT; j += 2) {
        const int row = wn + j * 8 + ri + (mi >> 1) * 8;
        ptx::ldmatrix_x4(tb + swz(row, 2 * s + (mi & 1)), bf[j][0], bf[j][1], bf[j + 1][0], bf[j + 1][1]);
      }
      if (mask_tile) {
        // a0/a1 hold word 8s+t of the tile, a2/a3 word 8s+4+t.
        const int64_t w_lo = k0 + 8 * s + t, w_hi = w_lo + 4;
        const uint32_t m_lo = w_lo == last_word ? p.last_mask : 0xFFFFFFFFu;
        const uint32_t m_hi = w_hi == last_word ? p.last_mask : 0xFFFFFFFFu;
#pragma unroll
        for (int i = 0; i < kMT; ++i) {
          af[i][0] &= m_lo, af[i][1] &= m_lo, af[i][2] &= m_hi, af[i][3] &= m_hi;
        }
      }
#pragma unroll
      for (int i = 0; i < kMT; ++i)
#pragma unroll
        for (int j = 0; j < kNT; ++j) ptx::mma_b1_and(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
  }
  ptx::cp_async_wait<0>();

  // c0, c1: row g, cols 2t, 2t+1; c2, c3: row g+8.
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t m = m0 + wm + i * 16 + g + (r >> 1) * 8;
        const int64_t n = n0 + wn + j * 8 + 2 * t + (r & 1);
        if (m < p.M && n < p.N) epilogue_store(p, b, m, n, acc[i][j][r]);
      }
}

}  // namespace

bool and_gemm_mma_native() {
  // Per device: bit d of `known` says device d was queried, bit d of `native` holds the answer.
  static std::atomic<uint64_t> known{0}, native{0};
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return false;
  const uint64_t bit = dev < 64 ? (uint64_t(1) << dev) : 0;
  if (bit && (known.load(std::memory_order_acquire) & bit)) return (native.load(std::memory_order_relaxed) & bit) != 0;
  // The code the driver loaded for this device: its PTX version is the __CUDA_ARCH__ the
  // kernel body was compiled for (the mma instruction exists from 80 on; below it is
  // __trap()), whichever SASS or JIT-compiled PTX of the fat binary was picked.
  cudaFuncAttributes attr{};
  const auto kernel = and_gemm_mma_kernel<true>;
  bool ok = cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(kernel)) == cudaSuccess;
  // (A failure means no image for this device at all: the launch of any path reports it.)
  ok = ok && attr.ptxVersion >= 80 && attr.binaryVersion >= 80;
  if (bit) {
    if (ok) native.fetch_or(bit, std::memory_order_relaxed);
    known.fetch_or(bit, std::memory_order_release);
  }
  return ok;
}

void launch_and_gemm_mma(const AndGemmArgs& p, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0 || p.batch <= 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(p.M, kBM)), static_cast<unsigned>(ceil_div(p.N, kBN)),
                  static_cast<unsigned>(p.batch));
  // 16-byte copies need 16-byte aligned rows: base pointers and leading dims in whole chunks.
  const bool vec16 = aligned_to(p.A, 16) && aligned_to(p.B, 16) && p.lda % 4 == 0 && p.ldb % 4 == 0 &&
                     (p.batch == 1 || (p.a_batch % 4 == 0 && p.b_batch % 4 == 0));
  BOOL_SWITCH(vec16, Vec16, [&] {
    auto kernel = and_gemm_mma_kernel<Vec16>;
    // Raise the dynamic shared-memory limit once per device; a failure is left for the
    // launch error check (cudaGetLastError) to report.
    static std::atomic<uint64_t> configured{0};
    int dev = 0;
    cudaGetDevice(&dev);
    const uint64_t bit = dev < 64 ? (uint64_t(1) << dev) : 0;
    if (bit == 0 || !(configured.load(std::memory_order_relaxed) & bit)) {
      if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes) == cudaSuccess)
        configured.fetch_or(bit, std::memory_order_relaxed);
    }
    and_gemm_mma_kernel<Vec16><<<grid, kThreads, kSmemBytes, stream>>>(p);
  });
}

}  // namespace bnn::cuda
