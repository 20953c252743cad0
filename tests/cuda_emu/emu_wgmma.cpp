// Emulated warpgroup MMA (PTX ISA #asynchronous-warpgroup-level-matrix-instructions) and
// setmaxnreg (#miscellaneous-instructions-setmaxnreg), written from the ISA text.
//  - A warpgroup is 4 consecutive warps starting at a multiple of 4; every instruction here is
//    .sync.aligned: all 32 lanes of each warp execute it (a warp collective), and operation j
//    of the warpgroup is formed from the j-th wgmma.mma_async of all 128 threads, which must
//    agree on N, both descriptors and scale-d.
//  - wgmma.mma_async.m64nNk256.s32.b1.b1.and.popc, N in {8, 16, 24, 32, 48, ..., 256}, A and B
//    from shared memory, K-major: D[m][n] (+)= sum over 256 k of popc(A[m][k] AND B[n][k]).
//    Descriptors (#asynchronous-warpgroup-level-matrix-shared-memory-layout-matrix-descriptor)
//    decode to start, LBO, SBO, base offset and swizzle; the canonical K-major layouts place row
//    r, 16-byte chunk c at start + (r%8)*S + (r/8)*SBO + 16c (S = swizzle span, rows 16 B apart
//    and chunks LBO apart without swizzle), then Swizzle<B,4,3> acts on the absolute address, as
//    TMA writes it. The base offset must be the one the ISA prescribes for the pattern start.
//  - Asynchrony: the operation reads shared memory at a random scheduling point between its
//    formation and the wgmma.wait_group that covers it (operations of a warpgroup in order); the
//    bytes it will read are marked from issue on, so a store, cp.async or TMA load into them is
//    an error, and the read itself is checked (never written, pending copies, TMA data of an
//    mbarrier phase the issuing warps never waited for, generic writes without
//    fence.proxy.async). The accumulator registers hold poison from issue until the covering
//    wait, and any load or store of them by the thread meanwhile is an error (the instrumented
//    kernels report accesses to their local arrays; a checksum backs this up).
//  - commit_group closes a group, possibly empty; wait_group N waits for all but the N most
//    recent groups, empty ones counted. wgmma.fence is required before a thread's first
//    wgmma and between any access to the accumulator registers and the next wgmma using them
//    (except chained wgmmas of one shape on in-flight accumulators).
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>

#include "emu_sm90.h"

namespace emu::sm90 {
namespace {

constexpr int32_t kPoison = 0x7EEDBEEF;

struct Acc {  // one accumulator array of a thread
  int n = 0;
  int64_t last_op = -1;  // the latest operation writing it
  bool in_flight = false, touched = false;
  uint64_t sum = 0;            // checksum of its contents at the last writeback or fence
  std::vector<int32_t> value;  // D after the latest executed operation of the chain
};
struct ThreadState {
  uint32_t fences = 0;
  uint64_t issued = 0;
  std::vector<uint64_t> groups;  // operation count at each commit_group
  std::map<int32_t*, Acc> accs;
  std::vector<std::pair<int, bool>> maxnreg;  // setmaxnreg sequence (R, inc) of the thread
};
struct Desc {
  uint32_t start, lbo, sbo;
  int base, span;
};
struct Op {
  uint64_t a_desc = 0, b_desc = 0;
  int n = 0, scale_d = 0, arrived = 0;
  unsigned warps_seen = 0;  // warps of the warpgroup whose observed phases are in min_obs
  uint64_t group = 0;
  std::vector<Acc*> acc;                 // per thread of the warpgroup
  std::vector<uint32_t> rows_a, rows_b;  // physical addresses of the 16-byte chunks read
  std::vector<int64_t> min_obs;          // per mbarrier slot: the phase every issuing warp saw
};
struct Warpgroup {
  std::deque<Op> ops;  // operations [base, base + ops.size())
  uint64_t base = 0;
};
std::vector<ThreadState> g_ts;
std::vector<Warpgroup> g_wg;
bool g_latest = false;  // set_wgmma_latest: operations run only at their covering wait

uint64_t checksum(const int32_t* d, int n) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < n; ++i) h = (h ^ uint32_t(d[i])) * 1099511628211ull;
  return h;
}

bool legal_n(int n) { return n >= 8 && n <= 256 && n % 8 == 0 && (n <= 32 || n % 16 == 0); }

Desc decode(uint64_t d, const char* which) {
  if (d & 0x3FFFC000C000C000ull)  // bits 14-15, 30-31, 46-48 and 52-61 are reserved
    fail("wgmma.mma_async: %s descriptor 0x%016llx sets reserved bits", which, (unsigned long long)d);
  static const int spans[4] = {0, 128, 64, 32};
  Desc r{uint32_t(d & 0x3FFF) << 4, uint32_t((d >> 16) & 0x3FFF) << 4, uint32_t((d >> 32) & 0x3FFF) << 4,
         int((d >> 49) & 7), spans[d >> 62]};
  if (r.span) {
    const uint32_t pattern = 8 * uint32_t(r.span);
    const int want = r.start % pattern < 128 ? 0 : int((r.start >> 7) & 7);
    if (r.base != want)
      fail(
          "wgmma.mma_async: %s descriptor base offset %d, but the %d-byte swizzle pattern of start address %u "
          "needs %d",
          which, r.base, r.span, r.start, want);
  } else if (r.base) {
    fail("wgmma.mma_async: %s descriptor without swizzle has base offset %d", which, r.base);
  }
  return r;
}

// Physical shared addresses of the 16-byte chunks (row r, chunk c) at index 2r + c.
std::vector<uint32_t> chunks(const Desc& d, int rows) {
  std::vector<uint32_t> out(size_t(2 * rows));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < 2; ++c) {
      const uint32_t row8 = uint32_t(r % 8), grp = uint32_t(r / 8);
      const uint32_t a = d.span ? d.start + row8 * uint32_t(d.span) + grp * d.sbo + 16u * c
                                : d.start + row8 * 16 + grp * d.sbo + uint32_t(c) * d.lbo;
      out[size_t(2 * r + c)] = swizzle_address(a, d.span) & 0x3FFFF;
    }
  return out;
}

void mark(const Op& op, int delta) {
  for (uint32_t a : op.rows_a) shared_mark_readers(a, 16, delta);
  for (uint32_t a : op.rows_b) shared_mark_readers(a, 16, delta);
}

// Row and column of register i of thread t (of the warpgroup) in the 64 x N accumulator.
inline void frag(int t, int i, int& row, int& col) {
  const int w = t / 32, l = t % 32;
  row = 16 * w + l / 4 + 8 * ((i >> 1) & 1);
  col = 8 * (i >> 2) + 2 * (l % 4) + (i & 1);
}

void execute(int wg, Op& op, uint64_t index) {
  const int saved = cur_thread();
  if (saved < 0) set_cur_thread(wg * 128);
  char who[96];
  snprintf(who, sizeof who, "wgmma.mma_async (warpgroup %d, operation %llu)", wg, (unsigned long long)index);
  const AsyncObserved seen = [&op](int slot, uint32_t phase) {
    return slot >= 0 && size_t(slot) < op.min_obs.size() && op.min_obs[size_t(slot)] >= int64_t(phase);
  };
  mark(op, -1);
  std::vector<uint8_t> a(64 * 32), b(size_t(op.n) * 32);
  for (size_t i = 0; i < op.rows_a.size(); ++i) memcpy(&a[16 * i], shared_async_read(op.rows_a[i], 16, who, seen), 16);
  for (size_t i = 0; i < op.rows_b.size(); ++i) memcpy(&b[16 * i], shared_async_read(op.rows_b[i], 16, who, seen), 16);
  std::vector<int32_t> p(size_t(64) * op.n);
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < op.n; ++n) {
      int s = 0;
      for (int k = 0; k < 32; ++k) s += __builtin_popcount(a[size_t(m) * 32 + k] & b[size_t(n) * 32 + k]);
      p[size_t(m) * op.n + n] = s;
    }
  for (int t = 0; t < 128; ++t) {
    Acc& acc = *op.acc[size_t(t)];
    for (int i = 0; i < op.n / 2; ++i) {
      int row, col;
      frag(t, i, row, col);
      const uint32_t in = op.scale_d ? uint32_t(acc.value[size_t(i)]) : 0u;  // s32 accumulation wraps
      acc.value[size_t(i)] = int32_t(in + uint32_t(p[size_t(row) * op.n + col]));
    }
  }
  set_cur_thread(saved);
}

bool formed(const Op& op) { return op.arrived == 128; }

// Runs the warpgroup's operations up to (not including) `need`, all formed.
void run_until(int wg, uint64_t need) {
  Warpgroup& g = g_wg[size_t(wg)];
  while (g.base < need) {
    execute(wg, g.ops.front(), g.base);
    g.ops.pop_front(), ++g.base;
  }
}

ThreadState& me() { return g_ts[size_t(cur_thread())]; }

void require_sm90(const char* op) {
  if (current_arch().cc < 90 || loaded_ptx_version() < 90)
    fail("%s needs sm_90a code (running %s, code compute_%d)", op, current_arch().name, loaded_ptx_version());
}

int warpgroup_of_current(const char* op) {
  const int wg = cur_thread() / 128;
  if (block().nthreads < 128 * (wg + 1))
    fail("%s: warpgroup %d (threads %d..%d) is incomplete in a block of %d threads", op, wg, 128 * wg, 128 * wg + 127,
         block().nthreads);
  return wg;
}

// The accumulator array d of this thread at a wgmma issue: chained onto its in-flight
// operations (same shape), or fenced since the thread last touched it, then poisoned.
Acc& issue_acc(ThreadState& ts, int32_t* d, int n) {
  if (ts.fences == 0) fail("wgmma.mma_async before any wgmma.fence of this thread");
  Acc& acc = ts.accs[d];
  if (acc.in_flight) {
    if (acc.n != n)
      fail("wgmma.mma_async m64n%dk256 on accumulator registers an m64n%dk256 operation still writes", n, acc.n);
    return acc;
  }
  if (acc.n && acc.n != n) acc = Acc{};
  if (acc.n && !acc.touched && checksum(d, n / 2) != acc.sum) acc.touched = true;
  if (acc.touched) fail("wgmma.mma_async on accumulator registers this thread accessed after its last wgmma.fence");
  acc.n = n;
  acc.value.assign(d, d + n / 2);  // D as of issue (used when scale-d is true)
  for (int i = 0; i < n / 2; ++i) d[i] = kPoison ^ i;
  acc.in_flight = true;
  g_sm90_watch = true;
  return acc;
}

// Operation j of the warpgroup: created by its first issuing thread (descriptors decoded, the
// operand bytes guarded), then checked against it by the others.
Op& join_op(Warpgroup& g, uint64_t j, uint64_t group, int n, uint64_t a_desc, uint64_t b_desc, bool scale_d) {
  if (j < g.base) fail("wgmma.mma_async: operation %llu of the warpgroup already ran", (unsigned long long)j);
  while (g.base + g.ops.size() <= j) g.ops.emplace_back();
  Op& op = g.ops[size_t(j - g.base)];
  if (op.arrived == 0) {
    op.a_desc = a_desc, op.b_desc = b_desc, op.n = n, op.scale_d = scale_d, op.group = group;
    op.acc.assign(128, nullptr);
    op.rows_a = chunks(decode(a_desc, "A"), 64);
    op.rows_b = chunks(decode(b_desc, "B"), n);
    mark(op, +1);
    op.min_obs.assign(barriers().size(), INT64_MAX);
  } else if (op.a_desc != a_desc || op.b_desc != b_desc || op.n != n || op.scale_d != scale_d) {
    fail(
        "wgmma.mma_async operation %llu: N, descriptors or scale-d differ across the warpgroup "
        "(this thread: n%d A 0x%llx B 0x%llx; first: n%d A 0x%llx B 0x%llx)",
        (unsigned long long)j, n, (unsigned long long)a_desc, (unsigned long long)b_desc, op.n,
        (unsigned long long)op.a_desc, (unsigned long long)op.b_desc);
  } else if (op.group != group) {
    fail("wgmma.mma_async operation %llu issued in commit group %llu here, %llu by another thread",
         (unsigned long long)j, (unsigned long long)group, (unsigned long long)op.group);
  }
  return op;
}

}  // namespace

bool wgmma_ready(int tid) {
  const Warpgroup& g = g_wg[size_t(tid / 128)];
  const uint64_t need = blocked()[size_t(tid)].need;
  return need <= g.base || formed(g.ops[size_t(need - 1 - g.base)]);
}

bool wgmma_step(bool force) {
  for (size_t wg = 0; wg < g_wg.size(); ++wg) {
    Warpgroup& g = g_wg[wg];
    if (force) {
      if (!g.ops.empty() && formed(g.ops.front())) return run_until(int(wg), g.base + 1), true;
      continue;
    }
    // late more often than early: a stage released too soon then meets its unfinished reader
    while (!g_latest && !g.ops.empty() && formed(g.ops.front()) && rng_next() % 8 == 0) run_until(int(wg), g.base + 1);
  }
  return false;
}

const char* wgmma_blocked_reason(int tid, char* buf, size_t len) {
  const Warpgroup& g = g_wg[size_t(tid / 128)];
  const uint64_t need = blocked()[size_t(tid)].need;
  const Op& op = g.ops[size_t(need - 1 - g.base)];
  snprintf(buf, len, "wgmma.wait_group for operation %llu of warpgroup %d, which only %d of its 128 threads issued",
           (unsigned long long)(need - 1), tid / 128, op.arrived);
  return buf;
}

void wgmma_block_begin() {
  g_ts.assign(size_t(block().nthreads), ThreadState{});
  g_wg.assign(size_t((block().nthreads + 127) / 128), Warpgroup{});
  g_sm90_watch = false;
}

void wgmma_block_end() {
  const BlockState& b = block();
  for (int t = 0; t < b.nthreads; ++t)
    for (auto& [d, acc] : g_ts[size_t(t)].accs)
      if (acc.in_flight) {
        set_cur_thread(t);
        fail("thread exits with wgmma accumulator registers in flight (no wgmma.wait_group covers operation %lld)",
             (long long)acc.last_op);
      }
  for (size_t wg = 0; wg < g_wg.size(); ++wg)
    if (!g_wg[wg].ops.empty()) {
      set_cur_thread(int(wg) * 128);
      fail("wgmma.mma_async operation %llu of warpgroup %zu issued by %d of its 128 threads",
           (unsigned long long)g_wg[wg].base, wg, g_wg[wg].ops.front().arrived);
    }
  for (int t = 0; t + 1 < b.nthreads; ++t)
    if (t % 128 != 127 && g_ts[size_t(t)].maxnreg != g_ts[size_t(t + 1)].maxnreg) {
      set_cur_thread(t + 1);
      fail("setmaxnreg differs across warpgroup %d: threads %d and %d ran different sequences", t / 128, t, t + 1);
    }
  g_sm90_watch = false;
}

}  // namespace emu::sm90

namespace emu {
void set_wgmma_latest(bool latest) { sm90::g_latest = latest; }
bool wgmma_latest() { return sm90::g_latest; }
void sm90_register_access(uintptr_t a, size_t n, bool write) {
  const int t = cur_thread();
  if (t < 0 || size_t(t) >= sm90::g_ts.size()) return;
  for (auto& [d, acc] : sm90::g_ts[size_t(t)].accs) {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(d), hi = lo + 4 * size_t(acc.n / 2);
    if (a + n <= lo || a >= hi) continue;
    if (acc.in_flight)
      fail("%s of wgmma accumulator register %zu before the wgmma.wait_group covering operation %lld",
           write ? "write" : "read", (a - lo) / 4, (long long)acc.last_op);
    acc.touched = true;
  }
}
}  // namespace emu

namespace bnn::cuda::ptx {
using namespace emu::sm90;

// wgmma.fence.sync.aligned: orders this thread's earlier accesses of accumulator registers
// before later wgmma.mma_async.
void wgmma_fence() {
  require_sm90("wgmma.fence");
  const uint64_t z = 0;
  emu::warp_collective(emu::kWgmmaFence, 0xFFFFFFFFu, &z, 1);
  warpgroup_of_current("wgmma.fence");
  ThreadState& ts = me();
  ++ts.fences;
  for (auto& [d, acc] : ts.accs)
    if (!acc.in_flight) acc.touched = false, acc.sum = checksum(d, acc.n / 2);
}

// wgmma.commit_group.sync.aligned: the thread's uncommitted wgmma operations form a group
// (an empty one when there are none).
void wgmma_commit_group() {
  require_sm90("wgmma.commit_group");
  const uint64_t z = 0;
  emu::warp_collective(emu::kWgmmaCommit, 0xFFFFFFFFu, &z, 1);
  warpgroup_of_current("wgmma.commit_group");
  ThreadState& ts = me();
  ts.groups.push_back(ts.issued);
}

// wgmma.wait_group.sync.aligned N: waits until at most the N most recent groups are pending;
// the accumulators of completed operations then hold their results.
void wgmma_wait_group_n(int n) {
  require_sm90("wgmma.wait_group");
  const uint64_t v = uint64_t(n);
  const uint64_t* all = emu::warp_collective(emu::kWgmmaWait, 0xFFFFFFFFu, &v, 1);
  for (int l = 0; l < 32; ++l)
    if (all[l * 8] != v) emu::fail("wgmma.wait_group: lanes wait for %d and %d groups", n, int(all[l * 8]));
  const int wg = warpgroup_of_current("wgmma.wait_group");
  const int tid = emu::cur_thread();
  ThreadState& ts = me();
  const uint64_t need = ts.groups.size() > size_t(n) ? ts.groups[ts.groups.size() - size_t(n) - 1] : 0;
  blocked()[size_t(tid)].need = need;
  while (!wgmma_ready(tid)) {
    blocked()[size_t(tid)].kind = kWgmmaWait;
    emu::block_thread();
  }
  run_until(wg, need);
  for (auto& [d, acc] : ts.accs) {
    if (!acc.in_flight || uint64_t(acc.last_op) >= need) continue;
    for (int i = 0; i < acc.n / 2; ++i)
      if (d[i] != (kPoison ^ i))
        emu::fail("wgmma accumulator register %d was written while operation %lld was in flight", i,
                  (long long)acc.last_op);
    memcpy(d, acc.value.data(), sizeof(int32_t) * size_t(acc.n / 2));
    acc.in_flight = false, acc.touched = false, acc.sum = checksum(d, acc.n / 2);
  }
}

// wgmma.mma_async.sync.aligned.m64n<N>k256.s32.b1.b1.and.popc d, a-desc, b-desc, scale-d
void wgmma_b1_and_n(int32_t* d, int n, uint64_t a_desc, uint64_t b_desc, int scale_d) {
  require_sm90("wgmma.mma_async");
  if (!legal_n(n)) emu::fail("wgmma.mma_async.m64n%dk256 .b1: no such shape", n);
  const uint64_t mine[4] = {a_desc, b_desc, uint64_t(scale_d != 0), uint64_t(n)};
  const uint64_t* all = emu::warp_collective(emu::kWgmma, 0xFFFFFFFFu, mine, 4);
  for (int l = 0; l < 32; ++l)
    if (memcmp(&all[l * 8], mine, sizeof mine))
      emu::fail("wgmma.mma_async: lane %d and this lane disagree on N, descriptors or scale-d", l);
  const int wg = warpgroup_of_current("wgmma.mma_async"), tid = emu::cur_thread(), t = tid % 128;
  ThreadState& ts = me();
  Acc& acc = issue_acc(ts, d, n);
  const uint64_t j = ts.issued++;
  acc.last_op = int64_t(j);
  Op& op = join_op(g_wg[size_t(wg)], j, ts.groups.size(), n, a_desc, b_desc, scale_d != 0);
  op.acc[size_t(t)] = &acc;
  ++op.arrived;
  if (!((op.warps_seen >> (t / 32)) & 1u)) {
    // the whole warp is at this instruction (a warp collective): the phases its lanes saw, the
    // best lane's, as the instruction synchronizes the warp
    op.warps_seen |= 1u << (t / 32);
    const int w0 = tid - tid % 32;
    for (size_t s = 0; s < op.min_obs.size(); ++s) {
      int64_t best = -2;
      for (int l = 0; l < 32; ++l) best = std::max(best, observed_phase(w0 + l, int(s)));
      op.min_obs[s] = std::min(op.min_obs[s], best);
    }
  }
}

// setmaxnreg.{inc,dec}.sync.aligned.u32 R: R in [24, 256], a multiple of 8, the same for the
// whole warpgroup; inc may not lower and dec may not raise the warp's last request.
void setmaxnreg_n(int r, bool inc) {
  require_sm90("setmaxnreg");
  const uint64_t v = uint64_t(r) | (uint64_t(inc) << 32);
  const uint64_t* all = emu::warp_collective(emu::kSetmaxnreg, 0xFFFFFFFFu, &v, 1);
  for (int l = 0; l < 32; ++l)
    if (all[l * 8] != v) emu::fail("setmaxnreg: lanes of one warp request different counts");
  warpgroup_of_current("setmaxnreg");
  if (r < 24 || r > 256 || r % 8) emu::fail("setmaxnreg %d: outside [24, 256] or not a multiple of 8", r);
  auto& seq = me().maxnreg;
  if (!seq.empty() && (inc ? r < seq.back().first : r > seq.back().first))
    emu::fail("setmaxnreg.%s %d after a request of %d", inc ? "inc" : "dec", r, seq.back().first);
  seq.emplace_back(r, inc);
}

}  // namespace bnn::cuda::ptx
