// Emulated definitions of the PTX wrappers of csrc/common/ptx.cuh (the real ones are compiled out
// with BNN_CUDA_EMULATION). Implemented in emu_ptx.cpp, each after the PTX ISA section it names.
#pragma once
#include <cstdint>

namespace bnn::cuda::ptx {
void cp_async16(uint32_t dst, const void* src, int src_bytes);
void cp_async4(uint32_t dst, const void* src, int src_bytes);
void cp_async_commit();
void cp_async_wait_group(int n);
template <int N>
inline void cp_async_wait() {
  cp_async_wait_group(N);
}
void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3);
void mma_b1_and(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
}  // namespace bnn::cuda::ptx
