// Minimal CPU emulation of the CUDA execution model, to run the kernels of csrc/ without a GPU
// (force-included with -include; rewrite.py turns <<<>>> launches into emu::make_launch).
// Blocks run one after another; each block's threads are ucontext fibers on one OS thread;
// __syncthreads and warp intrinsics are cooperative barriers (a warp op that not all live
// lanes reach deadlocks and aborts). Dynamic shared memory starts as garbage. Not emulated:
// asynchronous copy ordering (cp.async completes at once), memory-model races, timing.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <setjmp.h>
#include <ucontext.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <functional>
#include <vector>
#include <mutex>
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

namespace emu {
struct Fiber { ucontext_t ctx; jmp_buf jb; bool started = false, done = false; int wait = 0; };
// Fiber stacks, allocated once and reused by every block (no per-block page faults).
constexpr size_t kStackBytes = 128 * 1024;
inline char* fiber_stack(int i) {
  static std::vector<char*> pool;
  while ((int)pool.size() <= i) pool.push_back(new char[kStackBytes]);
  return pool[i];
}
struct Block {
  int n = 0; std::vector<Fiber> f; ucontext_t sched; jmp_buf sched_jb; int cur = 0; uint64_t xch[1024]; uint64_t xch8[1024][8];
  std::function<void()> body;
};
inline Block* B = nullptr;
inline unsigned char* dyn_smem = nullptr;
inline uint3 tIdx, bIdx;
inline dim3 gDim, bDim;
// Fibers start with swapcontext and then switch with _setjmp/_longjmp, which (unlike
// swapcontext) do not save and restore the signal mask with a system call.
inline void trampoline() {
  B->body();
  B->f[B->cur].done = true;
  _longjmp(B->sched_jb, 1);
}
inline void yield_wait(int kind) {
  Fiber& fb = B->f[B->cur];
  fb.wait = kind;
  if (!_setjmp(fb.jb)) _longjmp(B->sched_jb, 1);
}
inline void run_block(std::function<void()> body, int nthreads) {
  Block blk; blk.n = nthreads; blk.f.resize(nthreads); blk.body = std::move(body); B = &blk;
  for (int i = 0; i < nthreads; ++i) {
    Fiber& fb = blk.f[i];
    getcontext(&fb.ctx); fb.ctx.uc_stack.ss_sp = fiber_stack(i); fb.ctx.uc_stack.ss_size = kStackBytes;
    fb.ctx.uc_link = &blk.sched; makecontext(&fb.ctx, trampoline, 0);
  }
  while (true) {
    bool ran = false;
    for (int i = 0; i < nthreads; ++i) {
      if (blk.f[i].done || blk.f[i].wait) continue;
      blk.cur = i; tIdx = make_uint3(i % bDim.x, (i / bDim.x) % bDim.y, i / (bDim.x * bDim.y));
      if (!_setjmp(blk.sched_jb)) {
        if (!blk.f[i].started) { blk.f[i].started = true; swapcontext(&blk.sched, &blk.f[i].ctx); }
        else _longjmp(blk.f[i].jb, 1);
      }
      ran = true;
    }
    int live = 0, at_block = 0;
    for (auto& fb : blk.f) if (!fb.done) { ++live; at_block += fb.wait == 1; }
    if (live == 0) break;
    bool released = false;
    if (at_block == live) { for (auto& fb : blk.f) if (!fb.done) fb.wait = 0; released = true; }
    for (int w = 0; w * 32 < nthreads; ++w) {
      int wl = 0, at = 0, dn = 0;
      for (int l = 0; l < 32 && w * 32 + l < nthreads; ++l) { auto& fb = blk.f[w * 32 + l]; if (fb.done) ++dn; else { ++wl; at += fb.wait == 2; } }
      if (wl && at == wl) {
        if (dn) { fprintf(stderr, "EMU: warp op with exited lanes (warp %d)\n", w); abort(); }
        for (int l = 0; l < 32; ++l) blk.f[w * 32 + l].wait = 0;
        released = true;
      }
    }
    if (!ran && !released) { fprintf(stderr, "EMU: deadlock\n"); abort(); }
  }
  B = nullptr;
}
template <class F>
struct Launch {
  F fn; dim3 grid, block; size_t smem;
  template <class... A> void operator()(A... a) {
    gDim = grid; bDim = block;
    std::vector<unsigned char> dyn(smem + 16);
    for (unsigned z = 0; z < grid.z; ++z) for (unsigned y = 0; y < grid.y; ++y) for (unsigned x = 0; x < grid.x; ++x) {
      bIdx = make_uint3(x, y, z);
      for (size_t i = 0; i < dyn.size(); ++i) dyn[i] = (unsigned char)(0xA5 ^ (i * 131 + x * 7 + y * 13));  // garbage
      dyn_smem = dyn.data();
      run_block([&] { fn(a...); }, block.x * block.y * block.z);
    }
    dyn_smem = nullptr;
  }
};
template <class F> Launch<F> make_launch(F fn, dim3 g, dim3 b, size_t smem = 0, cudaStream_t = nullptr) { return {fn, g, b, smem}; }
inline int tid() { return tIdx.x + bDim.x * (tIdx.y + bDim.y * tIdx.z); }
inline void warp_barrier() { yield_wait(2); }
template <class T> T xchg(T v, int src) {
  static_assert(sizeof(T) <= 8);
  const int t = tid(), w = t / 32;
  uint64_t bits = 0; memcpy(&bits, &v, sizeof(T)); B->xch[t] = bits;
  warp_barrier();
  T r; uint64_t s = B->xch[w * 32 + (src & 31)]; memcpy(&r, &s, sizeof(T));
  warp_barrier();
  return r;
}
// Each lane publishes up to 8 values; fn(get) then reads any lane's values.
template <class Fn> void exchange8(const uint64_t (&mine)[8], Fn&& fn) {
  const int t = tid(), w = t / 32;
  for (int i = 0; i < 8; ++i) B->xch8[t][i] = mine[i];
  warp_barrier();
  fn([&](int lane, int i) { return B->xch8[w * 32 + lane][i]; });
  warp_barrier();
}
}  // namespace emu
inline size_t __cvta_generic_to_shared(const void* p) { return (const unsigned char*)p - emu::dyn_smem; }
#define threadIdx (::emu::tIdx)
#define blockIdx (::emu::bIdx)
#define blockDim (::emu::bDim)
#define gridDim (::emu::gDim)
inline void __syncthreads() { emu::yield_wait(1); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline unsigned __ballot_sync(unsigned, int pred) {
  const int t = emu::tid(), w = t / 32;
  emu::B->xch[t] = pred ? 1 : 0; emu::warp_barrier();
  unsigned r = 0; for (int l = 0; l < 32; ++l) r |= unsigned(emu::B->xch[w * 32 + l] & 1) << l;
  emu::warp_barrier(); return r;
}
template <class T> T __shfl_sync(unsigned, T v, int src) { return emu::xchg(v, src); }
template <class T> T __shfl_xor_sync(unsigned, T v, int m) { return emu::xchg(v, (emu::tid() & 31) ^ m); }
template <class T> T __ldg(const T* p) { return *p; }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) { auto o = *p; if (v < o) *p = v; return o; }
inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float v) { int i; memcpy(&i, &v, 4); return i; }
inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double v) { long long i; memcpy(&i, &v, 8); return i; }
