// Torch-free helpers shared by the CUDA kernels of every op family.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

// Turns a run-time flag into a compile-time one: BOOL_SWITCH(cond, Name, [&] { f<Name>(); }).
#define BOOL_SWITCH(COND, CONST_NAME, ...)      \
  [&] {                                         \
    if (COND) {                                 \
      constexpr static bool CONST_NAME = true;  \
      return __VA_ARGS__();                     \
    } else {                                    \
      constexpr static bool CONST_NAME = false; \
      return __VA_ARGS__();                     \
    }                                           \
  }()

// The block's dynamic shared memory as `unsigned char name[]`, 128-byte aligned (the emulation
// build in tests/cuda_emu defines its own).
#ifndef BNN_DYNAMIC_SMEM
#define BNN_DYNAMIC_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif

namespace bnn::cuda {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid limits the launchers slice and cap by: CUDA's gridDim.y / .z maximum, and the most blocks
// a grid-stride loop launches. The emulation build (tests/cuda_emu) lowers both, so that small
// test shapes take every slicing path and every grid-stride loop runs more than once.
#ifndef BNN_CUDA_MAX_GRID_YZ
#define BNN_CUDA_MAX_GRID_YZ 65535
#endif
#ifndef BNN_CUDA_MAX_STRIDE_BLOCKS
#define BNN_CUDA_MAX_STRIDE_BLOCKS (int64_t(1) << 20)
#endif
constexpr int64_t kMaxGridYZ = BNN_CUDA_MAX_GRID_YZ;

// Grid size for a grid-stride loop over n items: enough blocks to fill the device, capped.
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535) {
  int64_t b = ceil_div(n, threads);
  if (b < 1) b = 1;
  if (cap > BNN_CUDA_MAX_STRIDE_BLOCKS) cap = BNN_CUDA_MAX_STRIDE_BLOCKS;
  return static_cast<unsigned>(b < cap ? b : cap);
}

__device__ __forceinline__ uint32_t dev_tail_mask(int64_t k) {
  const int r = static_cast<int>(k & 31);
  return r == 0 ? 0xFFFFFFFFu : ((1u << r) - 1u);
}

// An element converted to the type arithmetic runs in: static_cast, except that half types go
// to float exactly (as the CPU side converts them).
template <typename To, typename T>
__device__ __forceinline__ To convert_to(T v) {
  return static_cast<To>(v);
}
template <>
__device__ __forceinline__ float convert_to<float, __half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float convert_to<float, __nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// True when p is aligned to `bytes`.
inline bool aligned_to(const void* p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes)) == 0;
}

}  // namespace bnn::cuda
