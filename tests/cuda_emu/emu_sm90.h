// Hopper state shared by emu_mbarrier.cpp, emu_tma.cpp and emu_wgmma.cpp (all compiled without
// instrumentation, like the rest of the runtime).
//
// What is modelled (each rule an EMU ERROR naming the kernel, block and thread):
//  - mbarrier: an 8-byte aligned object in dynamic shared memory (generic loads and stores of it
//    are errors); init count in [1, 2^20-1]; phase, pending arrivals and a signed tx-count
//    (expect_tx adds, TMA complete_tx subtracts, |tx| <= 2^20-1); a phase completes when both
//    reach 0 and the arrival count reloads. Errors: use before init, use by another thread or by
//    TMA before the initializing thread's fence.mbarrier_init and a __syncthreads after the init,
//    re-init with a phase in progress, over-arrival, more bytes completed than expected, a
//    try_wait whose parity names a phase this thread already saw complete (parity not flipped).
//    A failing try_wait parks the thread until the phase completes; when nothing can progress
//    the deadlock is reported with every waiting thread's barrier. A block may not exit with a
//    phase partly arrived (an extra or missing arrival).
//  - TMA: tensor maps from the emulated cuTensorMapEncodeTiled; loads read global memory through
//    the checker at issue, leave the destination poisoned and pending, and land (swizzle applied
//    on absolute shared addresses, out-of-bounds elements zero) at a random later scheduling
//    point, performing complete_tx of the full box; destination aligned to 128 bytes (to the
//    swizzle pattern, 1024 bytes for 128B).
//  - wgmma: see emu_wgmma.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "emu_internal.h"

namespace emu::sm90 {

struct Mbar {
  uint32_t addr = 0;
  uint32_t expected = 0, pending = 0;
  int64_t tx = 0;
  int64_t phase = 0;  // number of completed phases: the current phase
  int init_tid = -1;
  uint32_t init_epoch = 0;
  bool fenced = false;  // the initializing thread ran fence.mbarrier_init after the init
  bool live = false;
  // happens-before: per thread, the arrivals known to the arrivals of the current phase, and of
  // the last completed one (what a successful wait acquires)
  std::vector<uint32_t> cur, done;
};
std::vector<Mbar>& barriers();  // by slot
// Slot of the initialized barrier at addr, checked for a use by the current thread (async: by
// the async proxy, for a TMA's complete_tx). Fails when the use is not allowed.
int barrier_use(uint32_t addr, const char* op, bool async);
// complete_tx of a landing TMA load: returns the phase the bytes counted toward.
int64_t barrier_complete_tx(int slot, uint32_t bytes);
// Last phase each thread saw complete, per barrier slot (-2: none).
int64_t observed_phase(int tid, int slot);

// TMA (emu_tma.cpp)
uint32_t swizzle_address(uint32_t a, int span);  // span 0 (none), 32, 64, 128 bytes
const char* last_encode_error();
bool tma_step(bool force);  // lands pending loads at random (all of them when force)
void tma_block_begin();
void tma_block_end();
size_t tma_pending();

// wgmma (emu_wgmma.cpp)
bool wgmma_step(bool force);  // runs formed operations at random (the oldest when force)
bool wgmma_ready(int tid);    // the wait_group this thread is parked at can complete
void wgmma_block_begin();
void wgmma_block_end();
const char* wgmma_blocked_reason(int tid, char* buf, size_t len);

// Why a thread is parked (Thread::wait == 3).
enum BlockKind { kNotBlocked = 0, kMbarWait, kWgmmaWait };
struct Blocked {
  int kind = kNotBlocked;
  int slot = -1;  // kMbarWait: the barrier and parity
  uint32_t parity = 0;
  uint64_t need = 0;  // kWgmmaWait: operations [0, need) of the warpgroup must be done
};
std::vector<Blocked>& blocked();  // by thread

}  // namespace emu::sm90
