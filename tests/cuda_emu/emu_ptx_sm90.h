// Emulated definitions of the sm_90a PTX wrappers (csrc/common/ptx_sm90.cuh; the real ones are
// compiled out with BNN_CUDA_EMULATION): mbarrier, TMA (cp.async.bulk.tensor), wgmma and
// setmaxnreg. Implemented in emu_mbarrier.cpp, emu_tma.cpp and emu_wgmma.cpp, each after the PTX
// ISA section it names; emu_sm90.h lists what they check.
#pragma once
#include <cuda.h>  // CUtensorMap

#include <cstdint>

namespace bnn::cuda::ptx {
// mbarrier (#parallel-synchronization-and-communication-instructions-mbarrier)
void mbarrier_init(uint32_t bar, uint32_t arrive_count);
void fence_mbarrier_init();
void mbarrier_arrive(uint32_t bar);
void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t tx_bytes);
bool mbarrier_try_wait_parity(uint32_t bar, uint32_t parity);

// TMA (#data-movement-and-conversion-instructions-cp-async-bulk-tensor)
void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int32_t c0, int32_t c1);
void fence_proxy_async_shared();

// wgmma (#asynchronous-warpgroup-level-matrix-instructions)
void wgmma_fence();
void wgmma_commit_group();
void wgmma_wait_group_n(int n);
void wgmma_b1_and_n(int32_t* d, int n, uint64_t a_desc, uint64_t b_desc, int scale_d);
template <int N>
inline void wgmma_wait_group() {
  static_assert(N >= 0, "wgmma.wait_group takes N >= 0");
  wgmma_wait_group_n(N);
}
template <int N>
inline void wgmma_b1_and(int32_t (&d)[N / 2], uint64_t a_desc, uint64_t b_desc, int scale_d) {
  wgmma_b1_and_n(d, N, a_desc, b_desc, scale_d);
}

// setmaxnreg (#miscellaneous-instructions-setmaxnreg)
void setmaxnreg_n(int r, bool inc);
template <int R>
inline void setmaxnreg_inc() {
  setmaxnreg_n(R, true);
}
template <int R>
inline void setmaxnreg_dec() {
  setmaxnreg_n(R, false);
}
}  // namespace bnn::cuda::ptx

// The driver call tensor maps come from (cuTensorMapEncodeTiled), emulated: validates its
// arguments as the CUDA Driver API documents and records them in the opaque CUtensorMap.
// cudaGetDriverEntryPoint("cuTensorMapEncodeTiled") returns it in the emulation build.
extern "C" CUresult bnn_emu_encode_tiled(CUtensorMap* map, CUtensorMapDataType dtype, cuuint32_t rank, void* base,
                                         const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                         const cuuint32_t* elem_strides, CUtensorMapInterleave interleave,
                                         CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2,
                                         CUtensorMapFloatOOBfill oob);
