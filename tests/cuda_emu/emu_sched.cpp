// The emulator's thread model: blocks one after another, the threads of a block as fibers,
// warps scheduled in an order drawn from the seed (EMU_SEED), barriers and warp collectives,
// launch checks per emulated architecture, and the CUDA runtime calls the launchers make.
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <utility>

#include "emu_internal.h"

namespace emu {
namespace {

// Emulated devices: cudaGetDevice returns the index (EMU_DEVICE or set_device).
const Arch kArchs[] = {
    {"sm_80", 80, 163 * 1024},  // A100: 164 KiB per SM, 163 KiB per block with opt-in
    {"sm_90", 90, 227 * 1024},  // H100: 228 KiB per SM, 227 KiB per block with opt-in
    {"sm_75", 75, 64 * 1024},   // T4: no b1 AND.popc mma
};
int g_device = 0;
int g_code_ptx = 0, g_code_bin = 0;  // set_loaded_code; 0: the device's own SASS
bool g_no_image = false;
int g_attr_queries = 0;
constexpr size_t kDefaultSmem = 48 * 1024;  // without cudaFuncSetAttribute
#ifndef BNN_CUDA_MAX_GRID_YZ
#define BNN_CUDA_MAX_GRID_YZ 65535
#endif
constexpr unsigned kMaxGridYZ = BNN_CUDA_MAX_GRID_YZ;  // lowered in the emulation build

constexpr size_t kStackBytes = 96 * 1024;
struct Fiber {
  ucontext_t ctx;
  jmp_buf jb;
};
std::vector<char*> g_stacks;
std::vector<Fiber> g_fibers;
ucontext_t g_sched_ctx;
jmp_buf g_sched_jb;

BlockState g_block;
int g_cur = -1;
LaunchCfg g_cfg;
bool g_in_kernel = false;
uint3 g_bidx;
dim3 g_bdim, g_gdim;
void (*g_thunk)(void*);
void* g_ctx;
std::mt19937_64 g_rng(1);
bool g_rng_seeded = false;
uint32_t g_epoch_counter = 0;
// Exchange buffers of warp collectives: [warp][parity][lane][8].
std::vector<uint64_t> g_xch;
struct WarpPending {
  int kind = 0;
  unsigned mask = 0, arrived = 0;
};
std::vector<WarpPending> g_wp;
std::map<std::pair<const void*, int>, int> g_max_dyn;  // cudaFuncSetAttribute per (kernel, device)

void trampoline() {
  g_thunk(g_ctx);
  g_block.t[g_cur].done = true;
  _longjmp(g_sched_jb, 1);
}

void yield(int kind) {
  Thread& th = g_block.t[g_cur];
  th.wait = kind;
  if (!_setjmp(g_fibers[g_cur].jb)) _longjmp(g_sched_jb, 1);
}

void run_thread(int i) {
  g_cur = i;
  Thread& th = g_block.t[i];
  if (!_setjmp(g_sched_jb)) {
    if (!th.started) {
      th.started = true;
      Fiber& f = g_fibers[i];
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = g_stacks[i];
      f.ctx.uc_stack.ss_size = kStackBytes;
      f.ctx.uc_link = &g_sched_ctx;
      makecontext(&f.ctx, trampoline, 0);
      swapcontext(&g_sched_ctx, &f.ctx);
    } else {
      _longjmp(g_fibers[i].jb, 1);
    }
  }
  g_cur = -1;
}

[[noreturn]] void report_deadlock() {
  BlockState& b = g_block;
  for (int w = 0; w < b.nwarps; ++w) {
    const WarpPending& wp = g_wp[w];
    if (!wp.arrived) continue;
    for (int l = 0; l < 32; ++l) {
      const int t = w * 32 + l;
      if (!((wp.mask >> l) & 1u) || ((wp.arrived >> l) & 1u)) continue;
      const char* why = t >= b.nthreads || b.t[t].done ? "has exited"
                        : b.t[t].wait == 1             ? "waits at __syncthreads"
                                                       : "is elsewhere";
      g_cur = w * 32 + __builtin_ctz(wp.arrived);
      fail("warp %d: lane %d of mask 0x%08x never arrives at the warp op (it %s)", w, l, wp.mask, why);
    }
  }
  fail("deadlock: __syncthreads not reached by every thread of the block");
}

// Releases a barrier all live threads wait at; a barrier some threads exited before is an error
// (divergent __syncthreads is undefined behaviour).
bool try_release_barrier() {
  BlockState& b = g_block;
  int live = 0, at = 0, exited = 0;
  for (auto& th : b.t) {
    if (th.done) {
      ++exited;
      continue;
    }
    ++live;
    at += th.wait == 1;
  }
  if (live == 0 || at != live) return false;
  if (exited) {
    for (int i = 0; i < b.nthreads; ++i)
      if (b.t[i].done) {
        g_cur = i;
        break;
      }
    fail("__syncthreads reached by %d threads while %d threads of the block have exited", live, exited);
  }
  b.epoch = ++g_epoch_counter;
  for (auto& th : b.t) th.wait = 0;
  return true;
}

void run_block() {
  BlockState& b = g_block;
  std::vector<int> order(b.nwarps), lanes(32);
  while (true) {
    sm90_step(false);
    for (int i : sm90_take_woken())  // (set_wgmma_latest only) the woken run before the wakers
      if (!b.t[i].done && !b.t[i].wait) run_thread(i);
    for (int w = 0; w < b.nwarps; ++w) order[w] = w;
    std::shuffle(order.begin(), order.end(), g_rng);
    bool ran = false;
    for (int w : order) {
      for (int l = 0; l < 32; ++l) lanes[l] = l;
      std::shuffle(lanes.begin(), lanes.end(), g_rng);
      for (int l : lanes) {
        const int i = w * 32 + l;
        if (i >= b.nthreads || b.t[i].done || b.t[i].wait) continue;
        run_thread(i);
        ran = true;
      }
    }
    bool live = false;
    for (auto& th : b.t) live |= !th.done;
    if (!live) break;
    const bool released = try_release_barrier();
    if (!ran && !released && !sm90_step(true)) {
      if (sm90_blocked_any()) sm90_report_deadlock();
      report_deadlock();
    }
  }
}

void check_launch(const LaunchCfg& c) {
  const Arch& a = current_arch();
  const long threads = long(c.block.x) * c.block.y * c.block.z;
  if (threads < 1 || threads > 1024 || c.block.x > 1024 || c.block.y > 1024 || c.block.z > 64)
    fail("invalid block (%u, %u, %u)", c.block.x, c.block.y, c.block.z);
  if (c.grid.x < 1 || c.grid.y < 1 || c.grid.z < 1 || c.grid.x > 2147483647u || c.grid.y > kMaxGridYZ ||
      c.grid.z > kMaxGridYZ)
    fail("invalid grid (%u, %u, %u): x <= 2^31-1, y and z <= %u", c.grid.x, c.grid.y, c.grid.z, kMaxGridYZ);
  if (c.max_threads && threads > c.max_threads)
    fail("%ld threads per block exceed __launch_bounds__(%d)", threads, c.max_threads);
  if (c.smem > a.max_dyn_smem_optin)
    fail("%zu bytes of dynamic shared memory exceed the %s opt-in maximum %zu", c.smem, a.name, a.max_dyn_smem_optin);
  if (c.smem > kDefaultSmem) {
    auto it = g_max_dyn.find({c.fn, g_device});
    if (it == g_max_dyn.end() || size_t(it->second) < c.smem)
      fail("%zu bytes of dynamic shared memory need cudaFuncSetAttribute(MaxDynamicSharedMemorySize) on device %d",
           c.smem, g_device);
  }
}

}  // namespace

const Arch& current_arch() { return kArchs[g_device]; }
BlockState& block() { return g_block; }
int cur_thread() { return g_cur; }
const LaunchCfg& cur_launch() { return g_cfg; }
bool in_kernel() { return g_in_kernel; }
uint64_t rng_next() { return g_rng(); }
void set_cur_thread(int tid) { g_cur = tid; }
void block_thread() { yield(3); }
void yield_runnable() { yield(0); }
void set_device(int d) { g_device = d; }
void set_loaded_code(int ptx, int bin) { g_no_image = ptx < 0, g_code_ptx = ptx, g_code_bin = bin; }
int loaded_ptx_version() { return g_no_image ? 0 : g_code_ptx ? g_code_ptx : current_arch().cc; }
int func_attribute_queries() { return g_attr_queries; }
void set_seed(uint64_t s) {
  g_rng.seed(s);
  g_rng_seeded = true;
}

uint3 thread_idx() {
  const int i = g_cur;
  return make_uint3(i % g_bdim.x, (i / g_bdim.x) % g_bdim.y, i / (g_bdim.x * g_bdim.y));
}
uint3 block_idx() { return g_bidx; }
dim3 block_dim() { return g_bdim; }
dim3 grid_dim() { return g_gdim; }
int lane_id() { return g_cur & 31; }

void fail(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_in_kernel)
    fprintf(stderr, "EMU ERROR in kernel %s, %s, block (%u,%u,%u), thread %d (warp %d lane %d): %s\n", g_cfg.name,
            current_arch().name, g_bidx.x, g_bidx.y, g_bidx.z, g_cur, g_cur / 32, g_cur & 31, msg);
  else
    fprintf(stderr, "EMU ERROR (host, %s%s%s): %s\n", current_arch().name, g_cfg.name ? ", last kernel " : "",
            g_cfg.name ? g_cfg.name : "", msg);
  fflush(stderr);
  abort();
}

void launch(const LaunchCfg& cfg, void (*thunk)(void*), void* ctx) {
  if (g_in_kernel) fail("kernel launch from device code");
  if (!g_rng_seeded) set_seed(getenv("EMU_SEED") ? strtoull(getenv("EMU_SEED"), nullptr, 0) : 1);
  g_cfg = cfg;
  check_launch(cfg);
  g_thunk = thunk, g_ctx = ctx, g_gdim = cfg.grid, g_bdim = cfg.block;
  const int n = cfg.block.x * cfg.block.y * cfg.block.z;
  while (int(g_stacks.size()) < n) g_stacks.push_back(static_cast<char*>(malloc(kStackBytes)));
  g_fibers.resize(std::max<size_t>(g_fibers.size(), n));
  g_block.nthreads = n, g_block.nwarps = (n + 31) / 32;
  g_xch.assign(size_t(g_block.nwarps) * 2 * 32 * 8, 0);
  g_in_kernel = true;
  memory_launch_begin();
  for (unsigned z = 0; z < cfg.grid.z; ++z)
    for (unsigned y = 0; y < cfg.grid.y; ++y)
      for (unsigned x = 0; x < cfg.grid.x; ++x) {
        g_bidx = make_uint3(x, y, z);
        g_block.t.assign(n, Thread{});
        g_block.warp_syncs.assign(g_block.nwarps, 0);
        g_wp.assign(g_block.nwarps, WarpPending{});
        g_block.epoch0 = g_block.epoch = ++g_epoch_counter;
        memory_block_begin(cfg.smem);
        sm90_block_begin();
        run_block();
        sm90_block_end();
        memory_block_end();
      }
  memory_launch_end();
  const size_t st = static_smem_footprint();
  if (st > kDefaultSmem) fail("%zu bytes of static shared memory exceed 48 KiB", st);
  if (st + cfg.smem > current_arch().max_dyn_smem_optin)
    fail("static + dynamic shared memory (%zu + %zu) exceed the %s maximum", st, cfg.smem, current_arch().name);
  g_in_kernel = false;
}

void syncthreads() {
  if (!g_in_kernel) fail("__syncthreads outside a kernel");
  yield(1);
}

const uint64_t* warp_collective(int kind, unsigned mask, const uint64_t* mine, int n) {
  BlockState& b = g_block;
  const int t = g_cur, w = t / 32, l = t & 31;
  static const char* const names[] = {
      "?",         "shfl.sync",       "vote.sync.ballot", "bar.warp.sync",      "ldmatrix",
      "mma.sync",  "wgmma.mma_async", "wgmma.fence",      "wgmma.commit_group", "wgmma.wait_group",
      "setmaxnreg"};
  if (!((mask >> l) & 1u)) fail("lane %d calls %s with mask 0x%08x that excludes it", l, names[kind], mask);
  const int last = std::min(32, b.nthreads - w * 32);
  if (last < 32 && (mask >> last))
    fail("warp op mask 0x%08x names lanes past the block's %d threads", mask, b.nthreads);
  WarpPending& wp = g_wp[w];
  if (wp.arrived && (wp.kind != kind || wp.mask != mask))
    fail("divergent warp ops: %s mask 0x%08x while lanes 0x%08x wait at %s mask 0x%08x", names[kind], mask, wp.arrived,
         names[wp.kind], wp.mask);
  const int parity = b.warp_syncs[w] & 1;
  uint64_t* slot = &g_xch[((size_t(w) * 2 + parity) * 32 + l) * 8];
  for (int i = 0; i < n; ++i) slot[i] = mine[i];
  wp.kind = kind, wp.mask = mask, wp.arrived |= 1u << l;
  if (wp.arrived == mask) {
    wp.arrived = 0;
    ++b.warp_syncs[w];
    for (int j = 0; j < 32; ++j)
      if ((mask >> j) & 1u) b.t[w * 32 + j].wait = 0;
  } else {
    yield(2);
  }
  return &g_xch[(size_t(w) * 2 + parity) * 32 * 8];
}

void syncwarp(unsigned mask) {
  uint64_t z = 0;
  warp_collective(kSyncwarp, mask, &z, 1);
}

}  // namespace emu

// ---- the CUDA runtime calls of the launchers ----
extern "C" cudaError_t cudaGetDevice(int* d) {
  *d = emu::g_device;
  return cudaSuccess;
}
extern "C" cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev) {
  const emu::Arch& arch = emu::kArchs[dev];
  switch (a) {
    case cudaDevAttrComputeCapabilityMajor:
      *v = arch.cc / 10;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *v = arch.cc % 10;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *v = int(arch.max_dyn_smem_optin);
      break;
    case cudaDevAttrMultiProcessorCount:
      *v = 4;
      break;
    default:
      *v = 0;
  }
  return cudaSuccess;
}
extern "C" cudaError_t cudaFuncSetAttribute(const void* fn, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || size_t(value) > emu::current_arch().max_dyn_smem_optin) return cudaErrorInvalidValue;
    emu::g_max_dyn[{fn, emu::g_device}] = value;
  }
  return cudaSuccess;
}
// The code loaded for the kernel: native SASS of the emulated architecture unless
// set_loaded_code says otherwise.
extern "C" cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void*) {
  ++emu::g_attr_queries;
  if (emu::g_no_image) return cudaErrorNoKernelImageForDevice;
  *attr = cudaFuncAttributes{};
  attr->ptxVersion = emu::loaded_ptx_version();
  attr->binaryVersion = emu::g_code_ptx ? emu::g_code_bin : emu::current_arch().cc;
  attr->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}
extern "C" cudaError_t cudaGetLastError() { return cudaSuccess; }
extern "C" cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
