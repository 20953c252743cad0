// Emulated mbarrier (PTX ISA #parallel-synchronization-and-communication-instructions-mbarrier)
// and the Hopper side of the scheduler: parked threads, random completion points of the async
// proxy, deadlock reports, per-block checks. The rules are listed in emu_sm90.h.
#include <algorithm>
#include <cstdio>
#include <map>

#include "emu_sm90.h"

namespace emu {
bool g_sm90_watch = false;

namespace sm90 {
namespace {

constexpr int64_t kTxMax = (int64_t(1) << 20) - 1;  // tx-count range: +-(2^20 - 1)
std::vector<Mbar> g_bars;
std::map<uint32_t, int> g_by_addr;
std::vector<std::vector<int64_t>> g_observed;  // [tid][slot]
std::vector<Blocked> g_blocked;
bool g_active = false;  // this block used an sm_90 instruction
// Happens-before through mbarriers (vector clocks over the block's threads): g_rel[t] counts
// t's arrivals, g_known[t * n + u] the arrivals of u that t has acquired by its waits.
std::vector<uint32_t> g_rel, g_known;

Mbar& at(int slot) { return g_bars[size_t(slot)]; }

void note_observed(int tid, int slot, int64_t phase) {
  auto& v = g_observed[size_t(tid)];
  if (v.size() <= size_t(slot)) v.resize(size_t(slot) + 1, -2);
  if (phase > v[size_t(slot)]) v[size_t(slot)] = phase;
}

// A phase completes when no arrivals are pending and the tx-count is zero; the arrival count
// then reloads. With every arrival in, a negative tx-count can never return to zero.
void settle(Mbar& m) {
  if (m.pending == 0 && m.tx < 0)
    fail(
        "mbarrier at shared address %u: %ld more transaction bytes completed than expected in phase %ld "
        "(expect_tx too small)",
        m.addr, long(-m.tx), long(m.phase));
  if (m.pending == 0 && m.tx == 0) {
    ++m.phase, m.pending = m.expected;
    m.done.swap(m.cur);
    m.cur.assign(m.done.size(), 0);
  }
}

// An arrival of the current thread: its own and everything it has acquired join the phase.
void release(Mbar& m) {
  const size_t n = g_rel.size(), t = size_t(cur_thread());
  if (m.cur.size() != n) m.cur.assign(n, 0), m.done.assign(n, 0);
  ++g_rel[t];
  const uint32_t* k = &g_known[t * n];
  for (size_t u = 0; u < n; ++u) m.cur[u] = std::max(m.cur[u], k[u]);
  m.cur[t] = g_rel[t];
}

// A successful wait: the thread acquires the arrivals of the completed phase.
void acquire(const Mbar& m) {
  const size_t n = g_rel.size(), t = size_t(cur_thread());
  if (m.done.size() != n) return;
  uint32_t* k = &g_known[t * n];
  for (size_t u = 0; u < n; ++u) k[u] = std::max(k[u], m.done[u]);
}

void add_tx(Mbar& m, int64_t delta, const char* op) {
  m.tx += delta;
  if (m.tx > kTxMax || m.tx < -kTxMax)
    fail("%s: tx-count of the mbarrier at shared address %u leaves +-(2^20-1) (%ld)", op, m.addr, long(m.tx));
}

std::vector<int> g_woken;  // threads an mbarrier phase woke (recorded in set_wgmma_latest mode)

bool wake() {
  bool any = false;
  BlockState& b = block();
  for (int t = 0; t < b.nthreads; ++t) {
    Blocked& k = g_blocked[size_t(t)];
    if (b.t[t].wait != 3) continue;
    const bool mbar = k.kind == kMbarWait;
    const bool ready = mbar ? (at(k.slot).phase & 1) != int64_t(k.parity) : wgmma_ready(t);
    if (!ready) continue;
    if (mbar && emu::wgmma_latest()) g_woken.push_back(t);
    b.t[t].wait = 0, k.kind = kNotBlocked, any = true;
  }
  return any;
}

}  // namespace

std::vector<Mbar>& barriers() { return g_bars; }
std::vector<Blocked>& blocked() { return g_blocked; }

int64_t observed_phase(int tid, int slot) {
  const auto& v = g_observed[size_t(tid)];
  return size_t(slot) < v.size() ? v[size_t(slot)] : -2;
}

int barrier_use(uint32_t addr, const char* op, bool async) {
  if (!in_kernel()) fail("%s outside a kernel", op);
  g_active = true;
  auto it = g_by_addr.find(addr);
  if (it == g_by_addr.end() || !at(it->second).live)
    fail("%s on shared address %u, which holds no initialized mbarrier (mbarrier.init first)", op, addr);
  const Mbar& m = at(it->second);
  const int tid = cur_thread();
  if ((async || tid != m.init_tid) && !m.fenced)
    fail("%s on the mbarrier at shared address %u before thread %d, which initialized it, ran fence.mbarrier_init", op,
         addr, m.init_tid);
  if (!async && tid != m.init_tid && block().epoch == m.init_epoch)
    fail("%s on the mbarrier at shared address %u in the same __syncthreads interval as its mbarrier.init by thread %d",
         op, addr, m.init_tid);
  return it->second;
}

int64_t barrier_complete_tx(int slot, uint32_t bytes) {
  Mbar& m = at(slot);
  const int64_t phase = m.phase;
  add_tx(m, -int64_t(bytes), "complete_tx of a TMA load");
  settle(m);
  return phase;
}

}  // namespace sm90

bool sm90_ordered(int reader, int writer, uint32_t w_rel) {
  using namespace sm90;
  const size_t n = g_rel.size();
  return n && size_t(reader) < n && size_t(writer) < n && g_known[size_t(reader) * n + size_t(writer)] > w_rel;
}
uint32_t sm90_release_count(int tid) { return size_t(tid) < sm90::g_rel.size() ? sm90::g_rel[size_t(tid)] : 0; }

bool sm90_observed(int tid, int slot, uint32_t phase) {
  return slot >= 0 && tid >= 0 && sm90::observed_phase(tid, slot) >= int64_t(phase);
}

bool sm90_step(bool force) {
  using namespace sm90;
  if (!g_active) return false;
  bool progressed = tma_step(false);
  progressed |= wgmma_step(false);
  progressed |= wake();
  if (force && !progressed) {
    progressed = tma_step(true) || wgmma_step(true);
    progressed |= wake();
  }
  return progressed;
}

std::vector<int> sm90_take_woken() {
  std::vector<int> out;
  out.swap(sm90::g_woken);
  return out;
}

bool sm90_blocked_any() {
  const BlockState& b = block();
  for (int t = 0; t < b.nthreads; ++t)
    if (b.t[t].wait == 3) return true;
  return false;
}

void sm90_report_deadlock() {
  using namespace sm90;
  const BlockState& b = block();
  int first = -1, n = 0;
  for (int t = 0; t < b.nthreads; ++t)
    if (b.t[t].wait == 3) n += 1, first = first < 0 ? t : first;
  set_cur_thread(first);
  const Blocked& k = g_blocked[size_t(first)];
  if (k.kind == kMbarWait) {
    const Mbar& m = at(k.slot);
    fail(
        "deadlock: %d threads wait forever; this one at mbarrier.try_wait.parity %u on the mbarrier at shared "
        "address %u (current phase %ld, %u of %u arrivals pending, tx-count %ld)",
        n, k.parity, m.addr, long(m.phase), m.pending, m.expected, long(m.tx));
  }
  char buf[256];
  fail("deadlock: %d threads wait forever; this one at %s", n, wgmma_blocked_reason(first, buf, sizeof buf));
}

void sm90_block_begin() {
  using namespace sm90;
  g_bars.clear(), g_by_addr.clear(), g_active = false, g_woken.clear();
  g_rel.clear(), g_known.clear();
  g_observed.assign(size_t(block().nthreads), {});
  g_blocked.assign(size_t(block().nthreads), Blocked{});
  tma_block_begin();
  wgmma_block_begin();
}

void sm90_block_end() {
  using namespace sm90;
  if (!g_active) return;
  tma_block_end();
  wgmma_block_end();
  // Every arrival and transaction byte a kernel produces belongs to a phase that completes: a
  // phase left partly arrived at exit means an arrival too many (or one too few) somewhere.
  for (const Mbar& m : g_bars)
    if (m.live && (m.pending != m.expected || m.tx != 0))
      set_cur_thread(m.init_tid),
          fail(
              "the block exits with the mbarrier at shared address %u in the middle of phase %ld (%u of %u arrivals "
              "still pending, tx-count %ld): an arrival too many or too few",
              m.addr, long(m.phase), m.pending, m.expected, long(m.tx));
}

}  // namespace emu

namespace bnn::cuda::ptx {
using namespace emu::sm90;

// mbarrier.init.shared::cta.b64 [bar], count: an 8-byte aligned object, count in [1, 2^20-1];
// current phase 0, pending arrivals = count, tx-count 0.
void mbarrier_init(uint32_t bar, uint32_t count) {
  if (!emu::in_kernel()) emu::fail("mbarrier.init outside a kernel");
  g_active = true;
  if (g_rel.empty()) {
    const size_t n = size_t(emu::block().nthreads);
    g_rel.assign(n, 0), g_known.assign(n * n, 0);
  }
  if (bar % 8) emu::fail("mbarrier.init: object at shared address %u is not 8-byte aligned", bar);
  if (count < 1 || count > uint32_t(kTxMax)) emu::fail("mbarrier.init: count %u outside [1, 2^20-1]", count);
  auto it = g_by_addr.find(bar);
  int slot;
  if (it != g_by_addr.end()) {
    slot = it->second;
    const Mbar& old = at(slot);
    if (old.live && (old.pending != old.expected || old.tx != 0))
      emu::fail("mbarrier.init on the mbarrier at shared address %u while its phase %ld is in progress", bar,
                long(old.phase));
    for (auto& v : g_observed)
      if (v.size() > size_t(slot)) v[size_t(slot)] = -2;
  } else {
    slot = int(g_bars.size());
    g_bars.emplace_back();
    g_by_addr[bar] = slot;
  }
  emu::shared_mark_object(bar, 8, true);
  Mbar& m = at(slot);
  m = Mbar{};
  m.addr = bar, m.expected = m.pending = count, m.live = true;
  m.init_tid = emu::cur_thread(), m.init_epoch = emu::block().epoch;
}

// fence.mbarrier_init.release.cluster: makes this thread's earlier mbarrier.init visible to
// other threads and to the async proxy.
void fence_mbarrier_init() {
  const int tid = emu::cur_thread();
  for (Mbar& m : g_bars)
    if (m.live && m.init_tid == tid) m.fenced = true;
}

// mbarrier.arrive.shared::cta.b64: one arrival on the current phase.
void mbarrier_arrive(uint32_t bar) {
  Mbar& m = at(barrier_use(bar, "mbarrier.arrive", false));
  if (m.pending == 0)
    emu::fail(
        "mbarrier.arrive on the mbarrier at shared address %u: phase %ld has no pending arrival left "
        "(count %u): over-arrival",
        bar, long(m.phase), m.expected);
  release(m);
  --m.pending;
  settle(m);
  // set_wgmma_latest: the next instruction may come late (a consumer releasing a stage, then
  // its wgmma.wait_group): the threads of the whole block may arrive first, and a thread the
  // completed phase wakes (the producer) runs before the arrivers go on
  if (emu::wgmma_latest()) emu::yield_runnable();
}

// mbarrier.arrive.expect_tx.shared::cta.b64 [bar], tx: expect-tx (tx-count += tx) then arrive.
void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t tx) {
  Mbar& m = at(barrier_use(bar, "mbarrier.arrive.expect_tx", false));
  if (tx > uint32_t(kTxMax)) emu::fail("mbarrier.arrive.expect_tx: tx-count %u outside [0, 2^20-1]", tx);
  add_tx(m, tx, "mbarrier.arrive.expect_tx");
  if (m.pending == 0)
    emu::fail(
        "mbarrier.arrive.expect_tx on the mbarrier at shared address %u: phase %ld has no pending arrival "
        "left (count %u): over-arrival",
        bar, long(m.phase), m.expected);
  release(m);
  --m.pending;
  settle(m);
}

// mbarrier.try_wait.parity.shared::cta.b64: true when the phase of the given parity, the current
// or the immediately preceding one, has completed. A thread waiting again for a phase it already
// saw complete did not flip its parity: an error. An incomplete phase makes it return false at
// random (its time limit expired: callers loop) or park the thread until the phase ends.
bool mbarrier_try_wait_parity(uint32_t bar, uint32_t parity) {
  const int slot = barrier_use(bar, "mbarrier.try_wait.parity", false);
  if (parity > 1) emu::fail("mbarrier.try_wait.parity with parity %u (0 or 1)", parity);
  const int tid = emu::cur_thread();
  if ((at(slot).phase & 1) == int64_t(parity) && emu::rng_next() % 2) return false;
  while ((at(slot).phase & 1) == int64_t(parity)) {
    g_blocked[size_t(tid)] = Blocked{kMbarWait, slot, parity};
    emu::block_thread();
  }
  const int64_t phase = at(slot).phase - 1;
  if (observed_phase(tid, slot) >= phase)
    emu::fail(
        "mbarrier.try_wait.parity %u on the mbarrier at shared address %u names phase %ld, which this thread "
        "already saw complete (phase parity not flipped)",
        parity, bar, long(phase));
  note_observed(tid, slot, phase);
  acquire(at(slot));
  return true;
}

}  // namespace bnn::cuda::ptx
