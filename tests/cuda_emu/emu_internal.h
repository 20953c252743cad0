// State shared by the emulator's runtime files (emu_sched.cpp, emu_memory.cpp, emu_ptx.cpp).
// These files are compiled without instrumentation: their own memory accesses are not checked;
// they check the kernels' accesses explicitly.
#pragma once
#include <cstdint>
#include <cstddef>
#include <functional>
#include <vector>

#include "emu.h"
#include "emu_device.h"

namespace emu {

// One emulated device: the limits a launch is checked against.
struct Arch {
  const char* name;
  int cc;                     // compute capability major*10+minor
  size_t max_dyn_smem_optin;  // cudaDevAttrMaxSharedMemoryPerBlockOptin
};
const Arch& current_arch();

struct PendingCopy {
  uint32_t dst;    // shared address
  int bytes;       // copy size (4, 8 or 16)
  uint64_t group;  // commit-group number of this thread
  unsigned char data[16];
};

struct Thread {
  int wait = 0;  // 0 runnable, 1 at __syncthreads, 2 at a warp op, 3 blocked on an mbarrier / wgmma (sm90)
  bool started = false, done = false;
  uint64_t committed = 0;  // cp.async groups committed so far
  std::vector<PendingCopy> copies;
  int op_parity = 0;          // exchange buffer of this lane's current warp op
  uint32_t proxy_fences = 0;  // fence.proxy.async executed so far
};

struct BlockState {
  int nthreads = 0, nwarps = 0;
  uint32_t epoch0 = 0, epoch = 0;  // first and current barrier epoch (unique over the run)
  std::vector<Thread> t;
  std::vector<uint32_t> warp_syncs;  // warp-synchronous ops completed per warp
  size_t dyn_bytes = 0;
};

BlockState& block();
int cur_thread();  // linear thread index inside the block
const LaunchCfg& cur_launch();
bool in_kernel();

// Memory checker (emu_memory.cpp). Shared accesses take the shared address space offset.
void check_access(uintptr_t addr, size_t n, bool write);
void check_aligned(uintptr_t addr, size_t n, bool write);  // plus natural alignment
void shared_read(uint32_t saddr, size_t n);
void shared_write(uint32_t saddr, size_t n, int tid);
void shared_async_issue(uint32_t saddr, size_t n);  // a cp.async now targets these bytes
void shared_async_cancel(uint32_t saddr, size_t n);
void global_read_bytes(const void* p, size_t n);      // explicit check (cp.async source)
unsigned char* shared_ptr(uint32_t saddr, size_t n);  // bounds-checked pointer into dynamic smem
void memory_block_begin(size_t dyn_bytes);
void memory_block_end();
void memory_launch_begin();
void memory_launch_end();
size_t static_smem_footprint();
void land_copies(Thread& th, uint64_t upto_group);  // emu_ptx.cpp
uint64_t rng_next();
void set_cur_thread(int tid);  // the thread errors are reported for (the scheduler's async steps)
void block_thread();           // parks the current thread (wait 3) until sm90_step wakes it
void yield_runnable();         // ends the thread's turn; it stays runnable
// set_wgmma_latest mode: wgmma runs at its covering wait; a plain mbarrier.arrive ends the
// arriving thread's turn, and threads that phase completions wake run first in the next pass.
bool wgmma_latest();
std::vector<int> sm90_take_woken();  // threads woken by phase completions since the last call

// The async proxy in the memory checker (emu_memory.cpp). Shared bytes written by a TMA load
// remember the mbarrier slot and phase its complete_tx counted toward; a generic load of them
// needs the loading thread to have waited for that phase (sm90_observed).
constexpr int16_t kAsyncWriter = -2;
constexpr uint8_t kPendingCopy = 1, kPendingTma = 2;
using AsyncObserved = std::function<bool(int bar_slot, uint32_t phase)>;
void shared_tma_issue(uint32_t saddr, size_t n);
void shared_tma_land(uint32_t saddr, const unsigned char* data, size_t n, int bar_slot, uint32_t phase);
void shared_mark_readers(uint32_t saddr, size_t n, int delta);  // unfinished wgmma reading these bytes
void shared_mark_object(uint32_t saddr, size_t n, bool on);     // an mbarrier object
// An async-proxy read (wgmma): written in this block, not pending, not an mbarrier, TMA data of
// an observed phase, generic writes followed by the writer's fence.proxy.async.
const unsigned char* shared_async_read(uint32_t saddr, size_t n, const char* who, const AsyncObserved& observed);
bool global_is_device(const void* p, size_t n);

// Hopper state (emu_mbarrier.cpp, emu_wgmma.cpp), hooked into the scheduler and the checker.
bool sm90_observed(int tid, int bar_slot, uint32_t phase);  // tid waited for that mbarrier phase
// Happens-before through mbarriers: `reader` waited for a phase that `writer` arrived on after
// its first w_rel arrivals (so after a write made then).
bool sm90_ordered(int reader, int writer, uint32_t w_rel);
uint32_t sm90_release_count(int tid);  // mbarrier arrivals of tid so far
bool sm90_step(bool force);            // lands TMA loads / runs wgmma at random points, wakes blocked threads
void sm90_block_begin();
void sm90_block_end();
[[noreturn]] void sm90_report_deadlock();
bool sm90_blocked_any();
void sm90_register_access(uintptr_t addr, size_t n, bool write);  // accumulator registers
extern bool g_sm90_watch;                                         // some accumulator registers are watched

}  // namespace emu
