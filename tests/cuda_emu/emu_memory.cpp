// The emulator's memory checker. The kernels' translation units are compiled with
// -fsanitize=kernel-address --param asan-instrumentation-with-call-threshold=0, so every load and
// store they make calls one of the __asan_{load,store}N_noabort hooks below, which check:
//  - global memory: device buffers come from an arena with guard zones and a shadow byte per
//    byte (unallocated / never written / written / read-only input): out-of-bounds access,
//    reads of never-written memory, stores to inputs, host code dereferencing device memory;
//  - shared memory (the dynamic window and static __shared__ variables, which live in .bss):
//    reads of bytes never written in this block or targeted by a pending cp.async, and races:
//    per byte the last writer and the readers of the current barrier epoch; a read-after-write,
//    write-after-read or write-after-write between two warps in one epoch (or two lanes of one
//    warp with no warp-synchronous op between them) is an error naming both threads.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <string>

#include "emu_device.h"
#include "emu_internal.h"

extern "C" char __bss_start[], _end[];

namespace emu {
namespace {

constexpr size_t kArenaBytes = size_t(16) << 30;  // virtual reservation
constexpr size_t kGuard = 512, kAlign = 256;
enum : uint8_t { kNone = 0, kUninit = 1, kInit = 2, kReadOnly = 3 };
char* g_arena = nullptr;
uint8_t* g_gshadow = nullptr;
size_t g_arena_used = 0;
std::map<uintptr_t, size_t> g_allocs;  // start -> bytes (live and freed, for messages)

constexpr size_t kDynWindow = 256 * 1024;
unsigned char* g_dyn = nullptr;
size_t g_dyn_bytes = 0;
// Shared address of the first byte of dynamic shared memory: after 1 KiB reserved by the system
// and static shared memory, aligned as BNN_DYNAMIC_SMEM declares it (128 bytes) and no more, so
// a kernel needing 1024-byte aligned tiles (128B swizzle) must align them itself. Drawn per
// launch from the seed, never a multiple of 1024.
uint32_t g_dyn_base = 1024 + 128;

struct SB {                // shadow of one shared-memory byte
  uint32_t w_ep = 0;       // barrier epoch of the last write (0: never)
  uint32_t w_ws = 0;       // the writer warp's warp-synchronous op count at that write
  uint32_t r_ep = 0;       // epoch of the readers recorded in r_warps
  uint32_t r_warps = 0;    // warps that read it in epoch r_ep
  uint32_t w_pf = 0;       // generic writes: the writer's fence.proxy.async count at the write
  uint32_t w_rel = 0;      // generic writes: the writer's mbarrier arrivals before the write
  uint32_t bar_phase = 0;  // TMA writes: the mbarrier phase their complete_tx counted toward
  int16_t w_tid = -1;      // kAsyncWriter: written by the async proxy (TMA)
  uint16_t bar = 0;        // TMA writes: that mbarrier's slot + 1
  uint8_t pending = 0;     // kPendingCopy: a cp.async targets it; kPendingTma: a TMA load does
  uint8_t readers = 0;     // wgmma operations issued and not yet executed that read it
  uint8_t object = 0;      // part of an mbarrier object
};
// Globals of the instrumented files (asan-globals): static __shared__ variables with their name,
// size and redzone (so an index past the array is an error, and the footprint is exact).
struct Var {
  uintptr_t beg;
  size_t size, total;
  const char* name;
  std::string label;
};
std::map<uintptr_t, Var>& vars() {
  static std::map<uintptr_t, Var> v;
  return v;
}
std::map<uintptr_t, size_t> g_touched;  // static shared variables a launch touched -> size
SB* g_dyn_sb = nullptr;
SB* g_st_sb = nullptr;
uintptr_t g_st_lo, g_st_hi;

void init() {
  if (g_arena) return;
  const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  g_arena = static_cast<char*>(mmap(nullptr, kArenaBytes, prot, flags, -1, 0));
  g_gshadow = static_cast<uint8_t*>(mmap(nullptr, kArenaBytes, prot, flags, -1, 0));
  if (g_arena == MAP_FAILED || g_gshadow == MAP_FAILED) {
    perror("emu mmap");
    abort();
  }
  g_dyn = static_cast<unsigned char*>(aligned_alloc(4096, kDynWindow));
  g_dyn_sb = new SB[kDynWindow];
  g_st_lo = reinterpret_cast<uintptr_t>(__bss_start), g_st_hi = reinterpret_cast<uintptr_t>(_end);
  g_st_sb = new SB[g_st_hi - g_st_lo];
}

const char* describe_global(uintptr_t a, char* buf, size_t len) {
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) {
    snprintf(buf, len, "no device buffer");
    return buf;
  }
  --it;
  const long off = long(a - it->first);
  snprintf(buf, len, "offset %ld of a %zu-byte device buffer%s", off, it->second,
           g_gshadow[it->first - reinterpret_cast<uintptr_t>(g_arena)] == kNone && it->second ? " (freed)" : "");
  return buf;
}

void check_global(uintptr_t a, size_t n, bool write) {
  char where[160];
  if (!in_kernel()) fail("host code dereferences device memory (%s)", describe_global(a, where, sizeof where));
  uint8_t* s = g_gshadow + (a - reinterpret_cast<uintptr_t>(g_arena));
  for (size_t i = 0; i < n; ++i) {
    switch (s[i]) {
      case kNone:
        fail("out-of-bounds global %s of %zu bytes at %s", write ? "store" : "load", n,
             describe_global(a + i, where, sizeof where));
      case kUninit:
        if (!write)
          fail("global load of never-written memory (%zu bytes at %s)", n, describe_global(a + i, where, sizeof where));
        s[i] = kInit;
        break;
      case kReadOnly:
        if (write) fail("store to a read-only input buffer (%s)", describe_global(a + i, where, sizeof where));
        break;
      default:
        break;
    }
  }
}

[[noreturn]] void race(const char* kind, const char* space, uintptr_t off, int other) {
  const int me = cur_thread();
  fail("shared-memory race (%s) at %s offset %lu: thread %d (warp %d) and thread %d (warp %d) in one barrier epoch",
       kind, space, (unsigned long)off, me, me / 32, other, other / 32);
}

void shared_bytes(SB* sb, size_t n, bool write, int tid, const char* space, uintptr_t off0) {
  BlockState& b = block();
  const uint32_t ep = b.epoch, ep0 = b.epoch0;
  const int w = tid / 32;
  const uint32_t ws = b.warp_syncs[w];
  for (size_t i = 0; i < n; ++i) {
    SB& s = sb[i];
    const uintptr_t off = off0 + i;
    if (s.pending == kPendingCopy)
      fail("shared %s of %s offset %lu while a cp.async still targets it (no covering cp.async.wait_group)",
           write ? "store" : "load", space, (unsigned long)off);
    if (s.pending == kPendingTma)
      fail(
          "shared %s of %s offset %lu while a TMA load (cp.async.bulk.tensor) still targets it (no wait on its "
          "mbarrier)",
          write ? "store" : "load", space, (unsigned long)off);
    if (s.object)
      fail("generic %s of %s offset %lu, part of an mbarrier object", write ? "store" : "load", space,
           (unsigned long)off);
    if (write && s.readers)
      fail("shared store to %s offset %lu, which an unfinished wgmma still reads (no covering wgmma.wait_group)", space,
           (unsigned long)off);
    if (s.w_tid == kAsyncWriter) {
      if (!write && s.w_ep >= ep0 && !sm90_observed(tid, s.bar - 1, s.bar_phase))
        fail("shared load of %s offset %lu, written by a TMA load whose mbarrier phase %u this thread never waited for",
             space, (unsigned long)off, s.bar_phase);
    } else if (s.w_ep == ep && s.w_tid != tid && !sm90_ordered(tid, s.w_tid, s.w_rel)) {
      const int ow = s.w_tid / 32;
      if (ow != w) race(write ? "write-after-write" : "read-after-write", space, off, s.w_tid);
      if (s.w_ws == ws)
        race(write ? "write-after-write, same warp" : "read-after-write, same warp", space, off, s.w_tid);
    }
    if (!write) {
      if (s.w_ep < ep0) fail("shared load of %s offset %lu, never written in this block", space, (unsigned long)off);
      if (s.r_ep != ep) s.r_ep = ep, s.r_warps = 0;
      s.r_warps |= 1u << w;
    } else {
      if (s.r_ep == ep && (s.r_warps & ~(1u << w))) {
        const int other = __builtin_ctz(s.r_warps & ~(1u << w)) * 32;
        race("write-after-read", space, off, other);
      }
      s.w_ep = ep, s.w_tid = int16_t(tid), s.w_ws = ws, s.w_pf = b.t[tid].proxy_fences;
      s.w_rel = sm90_release_count(tid);
    }
  }
}

SB* dyn_sb(uint32_t saddr, size_t n) {
  if (saddr < g_dyn_base || size_t(saddr - g_dyn_base) + n > g_dyn_bytes)
    fail("shared-memory access [%u, %zu) outside the %zu bytes of dynamic shared memory at [%u, %zu)", saddr, saddr + n,
         g_dyn_bytes, g_dyn_base, g_dyn_base + g_dyn_bytes);
  return g_dyn_sb + (saddr - g_dyn_base);
}

}  // namespace

void check_access(uintptr_t a, size_t n, bool write) {
  if (a - reinterpret_cast<uintptr_t>(g_arena) < kArenaBytes) return check_global(a, n, write);
  if (!in_kernel() || !g_dyn) return;
  const uintptr_t d = a - reinterpret_cast<uintptr_t>(g_dyn);
  if (d < kDynWindow) {
    shared_bytes(dyn_sb(uint32_t(d) + g_dyn_base, n), n, write, cur_thread(), "dynamic shared", d + g_dyn_base);
  } else if (a >= g_st_lo && a + n <= g_st_hi) {
    auto it = vars().upper_bound(a);
    if (it == vars().begin() || a >= std::prev(it)->second.beg + std::prev(it)->second.total) {
      shared_bytes(g_st_sb + (a - g_st_lo), n, write, cur_thread(), "static __shared__", a - g_st_lo);
      return;
    }
    const Var& v = std::prev(it)->second;
    if (a + n > v.beg + v.size)
      fail("out-of-bounds %s of %zu bytes at offset %lu of static __shared__ %s (%zu bytes)", write ? "store" : "load",
           n, (unsigned long)(a - v.beg), v.name, v.size);
    g_touched[v.beg] = v.size;
    shared_bytes(g_st_sb + (a - g_st_lo), n, write, cur_thread(), v.label.c_str(), a - v.beg);
  } else if (g_sm90_watch) {
    sm90_register_access(a, n, write);  // a thread's local array, maybe wgmma accumulators
  }
}

void check_aligned(uintptr_t a, size_t n, bool write) {
  if (a % n && in_kernel() &&
      (a - reinterpret_cast<uintptr_t>(g_arena) < kArenaBytes || a - reinterpret_cast<uintptr_t>(g_dyn) < kDynWindow))
    fail("misaligned %zu-byte %s at address %p", n, write ? "store" : "load", reinterpret_cast<void*>(a));
  check_access(a, n, write);
}

void shared_read(uint32_t saddr, size_t n) {
  shared_bytes(dyn_sb(saddr, n), n, false, cur_thread(), "dynamic shared", saddr);
}
void shared_write(uint32_t saddr, size_t n, int tid) {
  shared_bytes(dyn_sb(saddr, n), n, true, tid, "dynamic shared", saddr);
}
void shared_async_issue(uint32_t saddr, size_t n) {
  SB* sb = dyn_sb(saddr, n);
  const BlockState& b = block();
  const int w = cur_thread() / 32;
  for (size_t i = 0; i < n; ++i) {
    if (sb[i].pending)
      fail("cp.async to dynamic shared offset %zu, which a pending cp.async already targets", saddr + i);
    if (sb[i].r_ep == b.epoch && (sb[i].r_warps & ~(1u << w)))
      race("write-after-read, cp.async", "dynamic shared", saddr + i, __builtin_ctz(sb[i].r_warps & ~(1u << w)) * 32);
    if (sb[i].readers) fail("cp.async to dynamic shared offset %zu, which an unfinished wgmma still reads", saddr + i);
    if (sb[i].object) fail("cp.async to dynamic shared offset %zu, part of an mbarrier object", saddr + i);
    sb[i].pending = kPendingCopy;
    g_dyn[saddr - g_dyn_base + i] = 0xDB;  // poison until the copy lands
  }
}
void shared_async_cancel(uint32_t saddr, size_t n) {
  SB* sb = dyn_sb(saddr, n);
  for (size_t i = 0; i < n; ++i) sb[i].pending = 0;
}
unsigned char* shared_ptr(uint32_t saddr, size_t n) {
  dyn_sb(saddr, n);
  return g_dyn + (saddr - g_dyn_base);
}
// ---- the async proxy: TMA writes, wgmma reads (emu_tma.cpp, emu_wgmma.cpp) ----
void shared_tma_issue(uint32_t saddr, size_t n) {
  SB* sb = dyn_sb(saddr, n);
  for (size_t i = 0; i < n; ++i) {
    const unsigned long a = saddr + i;
    if (sb[i].pending)
      fail("TMA load to shared address %lu, which a pending %s already targets", a,
           sb[i].pending == kPendingTma ? "TMA load" : "cp.async");
    if (sb[i].readers)
      fail(
          "TMA load overwrites shared address %lu, which an unfinished wgmma still reads (the stage is refilled "
          "before the wgmma.wait_group that covers its reader)",
          a);
    if (sb[i].object) fail("TMA load to shared address %lu, part of an mbarrier object", a);
    sb[i].pending = kPendingTma;
    g_dyn[saddr - g_dyn_base + i] = 0xDB;  // poison until the load lands
  }
}
void shared_tma_land(uint32_t saddr, const unsigned char* data, size_t n, int bar_slot, uint32_t phase) {
  SB* sb = dyn_sb(saddr, n);
  const uint32_t ep = block().epoch;
  for (size_t i = 0; i < n; ++i) {
    SB& s = sb[i];
    s.pending = 0, s.w_ep = ep, s.w_tid = kAsyncWriter, s.bar = uint16_t(bar_slot + 1), s.bar_phase = phase;
  }
  memcpy(g_dyn + (saddr - g_dyn_base), data, n);
}
void shared_mark_readers(uint32_t saddr, size_t n, int delta) {
  SB* sb = dyn_sb(saddr, n);
  for (size_t i = 0; i < n; ++i) {
    if (delta > 0 && sb[i].readers == 255) fail("more than 255 unfinished wgmma read shared address %zu", saddr + i);
    sb[i].readers = uint8_t(sb[i].readers + delta);
  }
}
void shared_mark_object(uint32_t saddr, size_t n, bool on) {
  SB* sb = dyn_sb(saddr, n);
  for (size_t i = 0; i < n; ++i) sb[i].object = on;
}
const unsigned char* shared_async_read(uint32_t saddr, size_t n, const char* who, const AsyncObserved& observed) {
  SB* sb = dyn_sb(saddr, n);
  const BlockState& b = block();
  for (size_t i = 0; i < n; ++i) {
    const SB& s = sb[i];
    const unsigned long a = saddr + i;
    if (s.pending)
      fail("%s reads shared address %lu while a %s still targets it", who, a,
           s.pending == kPendingTma ? "TMA load" : "cp.async");
    if (s.object) fail("%s reads shared address %lu, part of an mbarrier object", who, a);
    if (s.w_ep < b.epoch0) fail("%s reads shared address %lu, never written in this block", who, a);
    if (s.w_tid == kAsyncWriter) {
      if (!observed(s.bar - 1, s.bar_phase))
        fail(
            "%s reads shared address %lu, written by a TMA load whose mbarrier phase %u the issuing threads never "
            "waited for",
            who, a, s.bar_phase);
    } else if (s.w_tid >= 0 && b.t[s.w_tid].proxy_fences == s.w_pf) {
      fail(
          "%s (async proxy) reads shared address %lu, written by thread %d through the generic proxy with no "
          "fence.proxy.async by that thread since",
          who, a, s.w_tid);
    }
  }
  return g_dyn + (saddr - g_dyn_base);
}

bool global_is_device(const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(g_arena);
  return g_arena && a < kArenaBytes && a + n <= kArenaBytes;
}
void global_read_bytes(const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a - reinterpret_cast<uintptr_t>(g_arena) >= kArenaBytes) fail("cp.async source %p is not device memory", p);
  check_global(a, n, false);
}

void memory_launch_begin() {
  init();
  g_touched.clear();
  g_dyn_base = uint32_t(1024 + 128 * (1 + rng_next() % 7));
}
void memory_launch_end() {}
size_t static_smem_footprint() {
  size_t total = 0;
  for (auto& [beg, size] : g_touched) total += size;
  return total;
}
void memory_block_begin(size_t dyn_bytes) {
  if (dyn_bytes > kDynWindow) fail("dynamic shared memory beyond the emulator's window");
  g_dyn_bytes = dyn_bytes;
  for (size_t i = 0; i < dyn_bytes; ++i) g_dyn[i] = static_cast<unsigned char>(rng_next());  // garbage
}
void memory_block_end() {
  for (size_t i = 0; i < g_dyn_bytes; ++i)  // copies never waited for, barriers of this block
    g_dyn_sb[i].pending = g_dyn_sb[i].readers = g_dyn_sb[i].object = 0;
}
unsigned char* dynamic_smem() { return g_dyn; }
uint32_t shared_address(const void* p) {
  const uintptr_t d = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(g_dyn);
  if (d > kDynWindow) fail("__cvta_generic_to_shared of a pointer outside dynamic shared memory");
  return uint32_t(d) + g_dyn_base;
}

// ---- device buffers (emu_device.h) ----
void* device_malloc(size_t bytes) {
  init();
  const size_t start = (g_arena_used + kGuard + kAlign - 1) / kAlign * kAlign;
  if (start + bytes + kGuard > kArenaBytes) {
    fprintf(stderr, "emu arena exhausted\n");
    abort();
  }
  g_arena_used = start + bytes;
  char* p = g_arena + start;
  memset(g_gshadow + start, kUninit, bytes);
  for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<char>(0xC5 ^ (i * 61));  // recognisable garbage
  g_allocs[reinterpret_cast<uintptr_t>(p)] = bytes;
  return p;
}
void device_upload(void* dst, const void* src, size_t bytes, bool read_only) {
  memcpy(dst, src, bytes);
  memset(g_gshadow + (static_cast<char*>(dst) - g_arena), read_only ? kReadOnly : kInit, bytes);
}
void device_free(void* p) {
  auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_allocs.end()) return;
  const size_t off = static_cast<char*>(p) - g_arena;
  memset(g_gshadow + off, kNone, it->second);
  // Give the pages back (the addresses stay reserved, so a stale pointer still faults the check).
  const size_t lo = (off + 4095) / 4096 * 4096, hi = (off + it->second) / 4096 * 4096;
  if (hi > lo) madvise(g_arena + lo, hi - lo, MADV_DONTNEED), madvise(g_gshadow + lo, hi - lo, MADV_DONTNEED);
}
size_t device_unwritten(const void* p, size_t bytes) {
  const uint8_t* s = g_gshadow + (static_cast<const char*>(p) - g_arena);
  size_t n = 0;
  for (size_t i = 0; i < bytes; ++i) n += s[i] == kUninit;
  return n;
}

}  // namespace emu

// ---- instrumentation hooks ----
// Sized accesses must be naturally aligned on the GPU (a misaligned one faults there).
#define EMU_HOOKS(N)                                                                         \
  extern "C" void __asan_load##N##_noabort(uintptr_t a) { emu::check_aligned(a, N, false); } \
  extern "C" void __asan_store##N##_noabort(uintptr_t a) { emu::check_aligned(a, N, true); }
EMU_HOOKS(1)
EMU_HOOKS(2)
EMU_HOOKS(4)
EMU_HOOKS(8)
EMU_HOOKS(16)
extern "C" void __asan_loadN_noabort(uintptr_t a, size_t n) { emu::check_access(a, n, false); }
extern "C" void __asan_storeN_noabort(uintptr_t a, size_t n) { emu::check_access(a, n, true); }
extern "C" void __asan_handle_no_return() {}
struct AsanGlobal {  // GCC's layout of the globals table of an instrumented file
  uintptr_t beg;
  size_t size, size_with_redzone;
  const char* name;
  const char* module_name;
  uintptr_t has_dynamic_init;
  void* location;
  uintptr_t odr_indicator;
};
extern "C" void __asan_register_globals(AsanGlobal* g, size_t n) {
  for (size_t i = 0; i < n; ++i)
    emu::vars()[g[i].beg] =
        emu::Var{g[i].beg, g[i].size, g[i].size_with_redzone, g[i].name, std::string("static __shared__ ") + g[i].name};
}
extern "C" void __asan_unregister_globals(AsanGlobal*, size_t) {}
// -fsanitize=alignment: a typed access (a uint4 load, say) through a pointer not aligned to its type.
struct UbsanTypeMismatch {
  const char* file;
  uint32_t line, column;
  const void* type;
  unsigned char log_alignment, kind;
};
extern "C" void __ubsan_handle_type_mismatch_v1(UbsanTypeMismatch* d, uintptr_t ptr) {
  emu::fail("misaligned access at %p: needs %d-byte alignment (%s:%u)", reinterpret_cast<void*>(ptr),
            1 << d->log_alignment, d->file, d->line);
}
