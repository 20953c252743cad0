// CPU emulation of the CUDA execution model, force-included (-include) into every csrc/**/*_cuda.cu
// compiled as host C++ with BNN_CUDA_EMULATION defined (tests/cuda_emu/build.py does it).
//
// What it models (runtime in emu_sched.cpp, emu_memory.cpp, emu_ptx.cpp):
//  - threads of a block are fibers; warps run in an order drawn from a seed, each thread runs
//    ahead to its next barrier or warp-synchronous op; __syncthreads, shuffles, ballots,
//    ldmatrix and mma.sync are collective and check their mask (a lane outside the mask
//    calling, a lane of the mask that never arrives, divergent warp ops: errors);
//  - every load and store of the kernels goes through a checker: the .cu files are compiled
//    with -fsanitize=kernel-address and call-only instrumentation, whose __asan_load/store
//    hooks are implemented by emu_memory.cpp (global buffers with guard zones and a shadow
//    map: bounds, read-only inputs, never-written reads; shared memory, static and dynamic,
//    poisoned per block, with a per-byte race detector over barrier epochs);
//  - cp.async is queued per thread and lands at the covering cp.async.wait_group;
//  - sm_90a: mbarrier, TMA loads, wgmma and setmaxnreg (emu_ptx_sm90.h; rules in emu_sm90.h);
//  - launch limits per emulated architecture (sm_75, sm_80, sm_90).
// Any violation prints "EMU ERROR" with the kernel's name and aborts.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <math.h>  // nvcc makes the math functions (fma, fmaf, float overloads) visible to device code
#include <cstdint>
#include <cstring>
#include <utility>
#undef __global__
#undef __device__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)
#undef __grid_constant__
#define __grid_constant__

namespace emu {
// ---- runtime (emu_sched.cpp) ----
uint3 thread_idx();
uint3 block_idx();
dim3 block_dim();
dim3 grid_dim();
struct LaunchCfg {
  const void* fn;
  const char* name;
  dim3 grid, block;
  size_t smem;
  int max_threads;
};
// Checks the launch configuration, then runs every block of it (body runs one thread).
void launch(const LaunchCfg& cfg, void (*thunk)(void*), void* ctx);
void syncthreads();
void syncwarp(unsigned mask);
// Warp collective: every lane of `mask` deposits n values; returns a pointer to 32 x 8
// values (lane-major) valid until this lane's next warp op.
const uint64_t* warp_collective(int kind, unsigned mask, const uint64_t* mine, int n);
int lane_id();
[[noreturn]] void fail(const char* fmt, ...);
unsigned char* dynamic_smem();
uint32_t shared_address(const void* p);  // __cvta_generic_to_shared

template <class F, class... A>
struct Launch {
  LaunchCfg cfg;
  F fn;
  Launch& bounds(int max_threads) {
    cfg.max_threads = max_threads;
    return *this;
  }
  void operator()(A... a) {
    auto body = [&] { fn(a...); };
    launch(cfg, [](void* c) { (*static_cast<decltype(body)*>(c))(); }, &body);
  }
};
template <class... A>
Launch<void (*)(A...), A...> make_launch(void (*fn)(A...), const char* name, dim3 g, dim3 b, size_t smem = 0,
                                         cudaStream_t = nullptr) {
  return {LaunchCfg{reinterpret_cast<const void*>(fn), name, g, b, smem, 0}, fn};
}

enum WarpOp {
  kShfl = 1,
  kBallot,
  kSyncwarp,
  kLdmatrix,
  kMma,
  kWgmma,
  kWgmmaFence,
  kWgmmaCommit,
  kWgmmaWait,
  kSetmaxnreg
};
template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8);
  uint64_t b = 0;
  memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof(T));
  return v;
}
// Reads value of lane `src` (PTX shfl.sync: a source lane outside the mask is an error).
template <class T>
T shfl(unsigned mask, T v, int src) {
  uint64_t mine = to_bits(v);
  const uint64_t* all = warp_collective(kShfl, mask, &mine, 1);
  src &= 31;
  if (!((mask >> src) & 1u)) fail("__shfl_sync reads lane %d outside mask 0x%08x", src, mask);
  return from_bits<T>(all[src * 8]);
}
}  // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::block_idx())
#define blockDim (::emu::block_dim())
#define gridDim (::emu::grid_dim())
inline size_t __cvta_generic_to_shared(const void* p) { return ::emu::shared_address(p); }
inline void __syncthreads() { ::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) { ::emu::syncwarp(mask); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline unsigned __ballot_sync(unsigned mask, int pred) {
  uint64_t mine = pred ? 1 : 0;
  const uint64_t* all = ::emu::warp_collective(::emu::kBallot, mask, &mine, 1);
  unsigned r = 0;
  for (int l = 0; l < 32; ++l) r |= unsigned((mask >> l) & all[l * 8] & 1u) << l;
  return r;
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src, int = 32) {
  return ::emu::shfl(mask, v, src);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int m, int = 32) {
  return ::emu::shfl(mask, v, ::emu::lane_id() ^ m);
}
template <class T>
T __ldg(const T* p) {
  return *p;
}
// Single-threaded fibers: an atomic read-modify-write needs no lock.
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  auto o = *p;
  if (v < o) *p = v;
  return o;
}
inline int atomicAdd(int* p, int v) {
  int o = *p;
  *p = o + v;
  return o;
}
inline float __int_as_float(int v) {
  float f;
  memcpy(&f, &v, 4);
  return f;
}
inline int __float_as_int(float v) {
  int i;
  memcpy(&i, &v, 4);
  return i;
}
inline double __longlong_as_double(long long v) {
  double d;
  memcpy(&d, &v, 8);
  return d;
}
inline long long __double_as_longlong(double v) {
  long long i;
  memcpy(&i, &v, 8);
  return i;
}
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __fmaf_rn(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return __builtin_fma(a, b, c); }
[[noreturn]] inline void __trap() { ::emu::fail("__trap() executed"); }

// The runtime's C++ overloads for kernels (cuda_runtime.h declares them for nvcc only).
template <class T>
cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}
template <class T>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* entry) {
  return ::cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(entry));
}

// Dynamic shared memory (see BNN_DYNAMIC_SMEM in common/cuda_common.cuh).
#define BNN_DYNAMIC_SMEM(name) unsigned char* const name = ::emu::dynamic_smem()

#include "emu_ptx.h"
#include "emu_ptx_sm90.h"
