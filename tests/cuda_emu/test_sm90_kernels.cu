// sm_90a kernels of the emulator's own tests, compiled like csrc's .cu files (rewritten,
// instrumented): a warp-specialized TMA + mbarrier + wgmma GEMM (with plantable defects), a
// one-shot wgmma probe, and one small kernel per mbarrier / TMA / setmaxnreg rule.
#include <cstring>
#include <string>

#include "common/cuda_common.cuh"
#include "test_sm90.h"

namespace emutest {
namespace {

using namespace bnn::cuda;
constexpr int kStages = 3, kKBytes = 128;  // a stage holds 1024 bits of K: one 128-byte swizzle row

// Defects the GEMM can carry (index = bug number).
const char* const kGemmBugs[] = {"",
                                 "no_fence",
                                 "wait_short",
                                 "early_release",
                                 "skip_full_wait",
                                 "tx_short",
                                 "tx_long",
                                 "no_flip",
                                 "no_final_wait",
                                 "tma_misaligned",
                                 "wrong_swizzle",
                                 "wrong_sbo",
                                 "wrong_kstep",
                                 "no_mbar_fence",
                                 "no_init_sync",
                                 "over_arrive",
                                 "desc_diverge",
                                 "maxnreg_diverge"};
enum GemmBug {
  kOk,
  kNoFence,
  kWaitShort,
  kEarlyRelease,
  kSkipFullWait,
  kTxShort,
  kTxLong,
  kNoFlip,
  kNoFinalWait,
  kTmaMisaligned,
  kWrongSwizzle,
  kWrongSbo,
  kWrongKstep,
  kNoMbarFence,
  kNoInitSync,
  kOverArrive,
  kDescDiverge,
  kMaxnregDiverge
};

// K-major operand with 128B swizzle: LBO unused (16), SBO = 1024 (8 rows of 128 bytes), base 0.
inline uint64_t desc128(uint32_t addr, int bug) {
  const uint64_t swz = bug == kWrongSwizzle ? 2 : 1, sbo = bug == kWrongSbo ? 512 : 1024;
  return uint64_t((addr & 0x3FFFF) >> 4) | uint64_t(1) << 16 | (sbo >> 4) << 32 | swz << 62;
}

template <int BN>
struct Ring {
  static constexpr uint32_t a_bytes = 64 * kKBytes, b_bytes = BN * kKBytes;
  static constexpr uint32_t stage = (a_bytes + b_bytes + 1023) / 1024 * 1024;
  static constexpr uint32_t smem = 1024 + kStages * stage + 2 * kStages * 8;
  uint32_t base;
  uint32_t a(int s) const { return base + s * stage; }
  uint32_t b(int s) const { return base + s * stage + a_bytes; }
  uint32_t full(int s) const { return base + kStages * stage + 8 * s; }
  uint32_t empty(int s) const { return base + kStages * stage + 8 * (kStages + s); }
};

void wait_phase(uint32_t bar, uint32_t parity) {
  while (!ptx::mbarrier_try_wait_parity(bar, parity)) {
  }
}

template <int BN>
void produce(const Ring<BN>& r, const CUtensorMap* ma, const CUtensorMap* mb, int tiles, int tiles_m, int k_tiles,
             int bug) {
  int it = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x)
    for (int kt = 0; kt < k_tiles; ++kt, ++it) {
      const int s = it % kStages;
      wait_phase(r.empty(s), ((it / kStages) & 1) ^ 1);
      const uint32_t tx = r.a_bytes + r.b_bytes;
      ptx::mbarrier_arrive_expect_tx(r.full(s), bug == kTxShort ? tx - 16 : bug == kTxLong ? tx + 16 : tx);
      ptx::tma_load_2d(r.a(s) + (bug == kTmaMisaligned ? 128 : 0), ma, r.full(s), kt * kKBytes, (tile % tiles_m) * 64);
      ptx::tma_load_2d(r.b(s), mb, r.full(s), kt * kKBytes, (tile / tiles_m) * BN);
    }
}

template <int BN>
void consume(const Ring<BN>& r, int32_t* c, int m, int n, int tiles, int tiles_m, int k_tiles, int bug) {
  int32_t acc[BN / 2];
  const int t = threadIdx.x;
  int it = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    for (int kt = 0; kt < k_tiles; ++kt, ++it) {
      const int s = it % kStages;
      if (bug != kSkipFullWait) wait_phase(r.full(s), bug == kNoFlip ? 0 : (it / kStages) & 1);
      if (bug != kNoFence) ptx::wgmma_fence();
      for (int k = 0; k < 4; ++k) {  // four k256 steps: start address + 32 bytes each
        const uint64_t step = bug == kWrongKstep ? 1 : 2;
        const uint64_t bd = desc128(r.b(s), bug) + step * k + (bug == kDescDiverge && t >= 96 ? 64 : 0);
        ptx::wgmma_b1_and<BN>(acc, desc128(r.a(s), bug) + step * k, bd, kt > 0 || k > 0);
      }
      ptx::wgmma_commit_group();
      if (bug == kEarlyRelease) ptx::mbarrier_arrive(r.empty(s));
      if (bug == kWaitShort)
        ptx::wgmma_wait_group<2>();
      else
        ptx::wgmma_wait_group<1>();
      if (kt > 0 && bug != kEarlyRelease) ptx::mbarrier_arrive(r.empty((it - 1) % kStages));
      if (bug == kOverArrive && t == 0) ptx::mbarrier_arrive(r.empty(s));
    }
    if (bug != kNoFinalWait) ptx::wgmma_wait_group<0>();
    if (bug != kEarlyRelease) ptx::mbarrier_arrive(r.empty((it - 1) % kStages));
    const int tm = tile % tiles_m, tn = tile / tiles_m;
    for (int i = 0; i < BN / 2; ++i) {
      const int w = t / 32, l = t % 32;
      const int row = tm * 64 + 16 * w + l / 4 + 8 * ((i >> 1) & 1),
                col = tn * BN + 8 * (i >> 2) + 2 * (l % 4) + (i & 1);
      if (row < m && col < n) c[int64_t(row) * n + col] = acc[i];
    }
  }
}

template <int BN>
__global__ void __launch_bounds__(256)
    wgmma_gemm(const __grid_constant__ CUtensorMap ma, const __grid_constant__ CUtensorMap mb, int32_t* c, int m, int n,
               int k_tiles, int bug) {
  BNN_DYNAMIC_SMEM(raw);
  const Ring<BN> r{(static_cast<uint32_t>(__cvta_generic_to_shared(raw)) + 1023u) & ~1023u};
  const int tiles_m = int(ceil_div(m, 64)), tiles = tiles_m * int(ceil_div(n, BN));
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(r.full(s), 1);
      ptx::mbarrier_init(r.empty(s), 128);
    }
    if (bug != kNoMbarFence) ptx::fence_mbarrier_init();
  }
  if (bug != kNoInitSync) __syncthreads();
  if (threadIdx.x >= 128) {  // producer warpgroup: one elected thread issues the TMA loads
    if (bug == kMaxnregDiverge && threadIdx.x >= 160)
      ptx::setmaxnreg_dec<48>();
    else
      ptx::setmaxnreg_dec<40>();
    if (threadIdx.x == 128) produce(r, &ma, &mb, tiles, tiles_m, k_tiles, bug);
    return;
  }
  ptx::setmaxnreg_inc<232>();
  consume(r, c, m, n, tiles, tiles_m, k_tiles, bug);
}

// Probe modes: kProbeNoProxyFence skips fence.proxy.async after the generic writes;
// kProbeEmptyGroup commits an extra, empty group and waits with N = 1 (covers the real one only
// when empty groups count); kProbeWaitOne waits with N = 1 without it (the result is not ready);
// kProbeWriteAcc / kProbeReadAcc write one accumulator register (constant index) / read them all
// (variable index) after the wait, then issue a second wgmma without wgmma.fence; kProbeFence
// puts the fence in (valid); kProbeNoZeroB leaves the B tile unwritten.
enum {
  kProbeNoProxyFence = 1,
  kProbeEmptyGroup = 2,
  kProbeWaitOne = 4,
  kProbeWriteAcc = 8,
  kProbeReadAcc = 16,
  kProbeFence = 32,
  kProbeNoZeroB = 64
};

__global__ void wgmma_probe(const uint32_t* writes, int nwrites, uint64_t a_desc, uint64_t b_desc, int32_t* out,
                            int mode) {
  BNN_DYNAMIC_SMEM(raw);
  unsigned char* tile = raw + ((1024 - static_cast<uint32_t>(__cvta_generic_to_shared(raw)) % 1024) % 1024);
  const uint32_t ta = static_cast<uint32_t>(__cvta_generic_to_shared(tile)), tb = ta + 65536;
  const int t = threadIdx.x;
  for (int i = t; i < 8192; i += 128) tile[i] = 0;
  if (!(mode & kProbeNoZeroB))
    for (int i = t; i < 32768; i += 128) tile[65536 + i] = 0;
  __syncthreads();
  if (t == 0)
    for (int i = 0; i < nwrites; ++i) tile[writes[2 * i]] = static_cast<unsigned char>(writes[2 * i + 1]);
  if (!(mode & kProbeNoProxyFence)) ptx::fence_proxy_async_shared();
  __syncthreads();
  int32_t acc[128];
  ptx::wgmma_fence();
  ptx::wgmma_b1_and<256>(acc, a_desc + (ta >> 4), b_desc + (tb >> 4), 0);
  ptx::wgmma_commit_group();
  if (mode & kProbeEmptyGroup) ptx::wgmma_commit_group();
  if (mode & (kProbeEmptyGroup | kProbeWaitOne))
    ptx::wgmma_wait_group<1>();
  else
    ptx::wgmma_wait_group<0>();
  if (mode & (kProbeWriteAcc | kProbeReadAcc)) {
    int32_t sum = 0;
    if (mode & kProbeWriteAcc) acc[0] = 7;
    if (mode & kProbeReadAcc)
      for (int i = 0; i < 128; ++i) sum += acc[i];
    if (mode & kProbeFence) ptx::wgmma_fence();
    ptx::wgmma_b1_and<256>(acc, a_desc + (ta >> 4), b_desc + (tb >> 4), 1);
    ptx::wgmma_commit_group();
    ptx::wgmma_wait_group<0>();
    acc[1] += sum == -1;  // keeps the reads (the sum of non-negative counts is never -1)
  }
  for (int i = 0; i < 128; ++i) out[t * 128 + i] = acc[i];
}

// One TMA load of the map's box at (c0, c1) into a 1024-byte aligned tile; after the wait on its
// mbarrier (expecting the full box) the threads copy the tile's bytes out with plain loads.
__global__ void tma_probe(const __grid_constant__ CUtensorMap map, int c0, int c1, uint32_t bytes, uint8_t* out) {
  BNN_DYNAMIC_SMEM(raw);
  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(raw));
  const uint32_t base = (raw_addr + 1023u) & ~1023u, bar = base + 8192;
  const unsigned char* tile = raw + (base - raw_addr);
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(bar, 1);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    ptx::mbarrier_arrive_expect_tx(bar, bytes);
    ptx::tma_load_2d(base, &map, bar, c0, c1);
  }
  wait_phase(bar, 0);
  for (uint32_t i = threadIdx.x; i < bytes; i += blockDim.x) out[i] = tile[i];
}

// ---- one kernel per rule of mbarrier / TMA / wgmma shape and warpgroup / setmaxnreg ----
__global__ void mbar_misaligned(int32_t* buf, int64_t) {
  BNN_DYNAMIC_SMEM(raw);
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(raw));
  if (threadIdx.x == 0) ptx::mbarrier_init(a + 4, 1);
  buf[0] = 1;
}
__global__ void mbar_uninit(int32_t* buf, int64_t) {
  BNN_DYNAMIC_SMEM(raw);
  ptx::mbarrier_arrive(static_cast<uint32_t>(__cvta_generic_to_shared(raw)));
  buf[0] = 1;
}
__global__ void mbar_generic_store(int32_t* buf, int64_t) {
  BNN_DYNAMIC_SMEM(raw);
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(static_cast<uint32_t>(__cvta_generic_to_shared(raw)), 1);
    raw[3] = 0;  // a plain store into the barrier object
  }
  buf[0] = 1;
}
__global__ void mbar_deadlock(int32_t* buf, int64_t) {
  BNN_DYNAMIC_SMEM(raw);
  const uint32_t bar = static_cast<uint32_t>(__cvta_generic_to_shared(raw));
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(bar, 2);  // two arrivals expected, one comes
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) ptx::mbarrier_arrive(bar);
  wait_phase(bar, 0);
  buf[threadIdx.x % 64] = 1;
}
__global__ void mbar_reinit_busy(int32_t* buf, int64_t) {
  BNN_DYNAMIC_SMEM(raw);
  const uint32_t bar = static_cast<uint32_t>(__cvta_generic_to_shared(raw));
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(bar, 2);
    ptx::fence_mbarrier_init();
    ptx::mbarrier_arrive(bar);
    ptx::mbarrier_init(bar, 1);  // one arrival of the phase still pending
  }
  buf[0] = 1;
}
__global__ void mbar_tx_overflow(int32_t* buf, int64_t) {
  BNN_DYNAMIC_SMEM(raw);
  const uint32_t bar = static_cast<uint32_t>(__cvta_generic_to_shared(raw));
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(bar, 3);
    ptx::fence_mbarrier_init();
    ptx::mbarrier_arrive_expect_tx(bar, 1u << 19);
    ptx::mbarrier_arrive_expect_tx(bar, 1u << 19);  // tx-count 2^20: out of range
  }
  buf[0] = 1;
}
// Warp 0 writes shared memory and arrives; warp 1 waits for the phase and reads (valid), or
// reads without waiting (a race, `wait` false).
__global__ void mbar_handoff(int32_t* buf, int64_t, bool wait) {
  BNN_DYNAMIC_SMEM(raw);
  const uint32_t bar = static_cast<uint32_t>(__cvta_generic_to_shared(raw));
  int32_t* data = reinterpret_cast<int32_t*>(raw + 64);
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(bar, 32);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if (threadIdx.x < 32) {
    data[threadIdx.x] = static_cast<int32_t>(threadIdx.x) * 3;
    ptx::mbarrier_arrive(bar);
  } else {
    if (wait) wait_phase(bar, 0);
    buf[threadIdx.x - 32] = data[63 - threadIdx.x];
  }
}
__global__ void wgmma_bad_n(int32_t* buf, int64_t) {
  int32_t acc[20];
  ptx::wgmma_fence();
  ptx::wgmma_b1_and<40>(acc, 0, 0, 0);  // no m64n40k256 for .b1
  buf[0] = acc[0];
}
__global__ void wgmma_partial_warpgroup(int32_t* buf, int64_t) {
  int32_t acc[4];
  ptx::wgmma_fence();  // a block of 96 threads has no complete warpgroup
  ptx::wgmma_b1_and<8>(acc, 0, 0, 0);
  buf[0] = acc[0];
}
__global__ void maxnreg_bad(int32_t* buf, int64_t) {
  ptx::setmaxnreg_inc<100>();  // not a multiple of 8
  buf[0] = 1;
}

}  // namespace

int sm90_gemm_bug(const std::string& name) {
  for (int i = 1; i < int(sizeof kGemmBugs / sizeof kGemmBugs[0]); ++i)
    if (name == kGemmBugs[i]) return i;
  return 0;
}

template <int BN>
static void launch_gemm(const CUtensorMap& a, const CUtensorMap& b, int32_t* c, int m, int n, int k_tiles, int grid,
                        int bug) {
  cudaFuncSetAttribute(wgmma_gemm<BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Ring<BN>::smem));
  wgmma_gemm<BN><<<grid, 256, Ring<BN>::smem>>>(a, b, c, m, n, k_tiles, bug);
}

void sm90_gemm(int bn, const CUtensorMap& a, const CUtensorMap& b, int32_t* c, int m, int n, int k_tiles, int grid,
               int bug) {
  if (bn == 256)
    launch_gemm<256>(a, b, c, m, n, k_tiles, grid, bug);
  else if (bn == 48)
    launch_gemm<48>(a, b, c, m, n, k_tiles, grid, bug);
  else
    launch_gemm<24>(a, b, c, m, n, k_tiles, grid, bug);
}

void sm90_probe(const uint32_t* writes, int nwrites, uint64_t a_desc, uint64_t b_desc, int32_t* out, int mode) {
  cudaFuncSetAttribute(wgmma_probe, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536 + 32768 + 1024);
  wgmma_probe<<<1, 128, 65536 + 32768 + 1024>>>(writes, nwrites, a_desc, b_desc, out, mode);
}

void sm90_tma_probe(const CUtensorMap& map, int c0, int c1, uint32_t bytes, uint8_t* out) {
  tma_probe<<<1, 64, 8192 + 2048>>>(map, c0, c1, bytes, out);
}

bool run_sm90_bug_kernel(const std::string& name, int32_t* buf, int64_t n) {
  if (name == "mbar_misaligned")
    mbar_misaligned<<<1, 32, 64>>>(buf, n);
  else if (name == "mbar_uninit")
    mbar_uninit<<<1, 32, 64>>>(buf, n);
  else if (name == "mbar_generic_store")
    mbar_generic_store<<<1, 32, 64>>>(buf, n);
  else if (name == "mbar_deadlock")
    mbar_deadlock<<<1, 64, 64>>>(buf, n);
  else if (name == "mbar_reinit_busy")
    mbar_reinit_busy<<<1, 32, 64>>>(buf, n);
  else if (name == "mbar_tx_overflow")
    mbar_tx_overflow<<<1, 32, 64>>>(buf, n);
  else if (name == "mbar_handoff")
    mbar_handoff<<<1, 64, 256>>>(buf, n, true);
  else if (name == "mbar_handoff_no_wait")
    mbar_handoff<<<1, 64, 256>>>(buf, n, false);
  else if (name == "wgmma_bad_n")
    wgmma_bad_n<<<1, 128>>>(buf, n);
  else if (name == "wgmma_partial_warpgroup")
    wgmma_partial_warpgroup<<<1, 96>>>(buf, n);
  else if (name == "maxnreg_bad")
    maxnreg_bad<<<1, 128>>>(buf, n);
  else
    return false;
  return true;
}

}  // namespace emutest
