// Emulated PTX instructions (the wrappers of csrc/common/ptx.cuh). Each implements the PTX ISA
// section it names (docs.nvidia.com/cuda/parallel-thread-execution, anchors given), written from
// the ISA text, not from the kernels' reading of it; test_layout.cpp checks the fragment layouts
// against a table taken from the ISA's figures.
#include <cstdio>
#include <cstring>
#include <vector>

#include "emu_internal.h"

namespace emu {

// Lands this thread's copies of groups < upto_group: the bytes become the copied data, written
// by this thread now (so a reader in another warp needs a barrier after this point).
void land_copies(Thread& th, uint64_t upto_group) {
  size_t keep = 0;
  for (size_t i = 0; i < th.copies.size(); ++i) {
    PendingCopy& c = th.copies[i];
    if (c.group < upto_group) {
      shared_async_cancel(c.dst, c.bytes);
      shared_write(c.dst, c.bytes, cur_thread());
      memcpy(shared_ptr(c.dst, c.bytes), c.data, c.bytes);
    } else {
      th.copies[keep++] = c;
    }
  }
  th.copies.resize(keep);
}

}  // namespace emu

namespace bnn::cuda::ptx {
namespace {

// cp.async (#data-movement-and-conversion-instructions-cp-async): cp-size bytes from global to
// shared; only src-size bytes are read, the rest of the destination is zero-filled. Both
// addresses aligned to cp-size. The copy is queued in the thread's current (uncommitted) group;
// the destination holds poison and may not be touched until a wait covers it.
void cp_async(uint32_t dst, const void* src, int cp_size, int src_bytes) {
  if (src_bytes < 0 || src_bytes > cp_size) emu::fail("cp.async src-size %d outside [0, %d]", src_bytes, cp_size);
  if (dst % cp_size) emu::fail("cp.async destination %u not aligned to %d bytes", dst, cp_size);
  if (src_bytes && reinterpret_cast<uintptr_t>(src) % cp_size)
    emu::fail("cp.async source %p not aligned to %d bytes", src, cp_size);
  emu::PendingCopy c{};
  c.dst = dst, c.bytes = cp_size;
  emu::Thread& th = emu::block().t[emu::cur_thread()];
  c.group = th.committed;  // the open group
  if (src_bytes) {
    emu::global_read_bytes(src, src_bytes);
    memcpy(c.data, src, src_bytes);
  }
  emu::shared_async_issue(dst, cp_size);
  th.copies.push_back(c);
}

}  // namespace

void cp_async16(uint32_t dst, const void* src, int src_bytes) { cp_async(dst, src, 16, src_bytes); }
void cp_async4(uint32_t dst, const void* src, int src_bytes) { cp_async(dst, src, 4, src_bytes); }

// cp.async.commit_group (#data-movement-and-conversion-instructions-cp-async-commit-group): all
// prior uncommitted cp.async of this thread form one group (possibly empty).
void cp_async_commit() { ++emu::block().t[emu::cur_thread()].committed; }

// cp.async.wait_group N (#data-movement-and-conversion-instructions-cp-async-wait-group-cp-async-wait-all):
// waits until only N or fewer of the most recent groups are pending and all prior groups
// committed by this thread are complete. Uncommitted copies are not waited for.
void cp_async_wait_group(int n) {
  emu::Thread& th = emu::block().t[emu::cur_thread()];
  if (n < 0) emu::fail("cp.async.wait_group %d", n);
  if (th.committed > uint64_t(n)) emu::land_copies(th, th.committed - n);
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (#warp-level-matrix-instructions-ldmatrix): threads
// 8i..8i+7 provide the row addresses (16-byte aligned) of matrix i; in each matrix, thread l
// receives the 32 bits of row l/4 at bytes 4*(l%4)..4*(l%4)+3 (two 16-bit elements), matrix i
// in register ri. .aligned: all 32 lanes execute it.
void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  if (addr % 16) emu::fail("ldmatrix row address %u not 16-byte aligned", addr);
  const uint64_t mine = addr;
  const uint64_t* all = emu::warp_collective(emu::kLdmatrix, 0xFFFFFFFFu, &mine, 1);
  const int lane = emu::lane_id();
  uint32_t r[4];
  for (int m = 0; m < 4; ++m) {
    const uint32_t row = static_cast<uint32_t>(all[(m * 8 + lane / 4) * 8]) + 4 * (lane % 4);
    emu::shared_read(row, 4);
    memcpy(&r[m], emu::shared_ptr(row, 4), 4);
  }
  r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
}

// mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc (#warp-level-matrix-instructions-mma)
// D = popc(A & B) + C with the fragments of #warp-level-matrix-fragment-mma-168256:
//   groupID = lane >> 2, threadID_in_group = lane % 4;
//   A (16 x 256, four .b32): element i of a lane (bit i%32 of register i/32) is at
//     row = groupID for i < 32 or 64 <= i < 96, else groupID + 8;
//     col = threadID_in_group*32 + (i & 31), plus 128 for i >= 64;
//   B (256 x 8, two .b32): element i at row = threadID_in_group*32 + (i & 31), plus 128 for
//     i >= 32; col = groupID;
//   C/D (16 x 8, four .s32): ci at row = groupID (+8 for i >= 2), col = threadID_in_group*2 + (i & 1).
void mma_b1_and(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if (const int v = emu::loaded_ptx_version(); v < 80)  // the wrapper below __CUDA_ARCH__ 800 is __trap()
    emu::fail("mma.sync .b1 .and.popc in %s%d code (needs sm_80+): the kernel traps", v ? "compute_" : "no ", v);
  const uint64_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  const uint64_t* all = emu::warp_collective(emu::kMma, 0xFFFFFFFFu, mine, 6);
  // The warp's product is computed once, by the first lane to resume.
  struct Cache {
    const uint64_t* key = nullptr;
    uint32_t epoch0 = 0, op = 0;
    int32_t d[16][8];
  };
  static std::vector<Cache> cache;
  const emu::BlockState& blk = emu::block();
  const int w = emu::cur_thread() / 32;
  if (int(cache.size()) < blk.nwarps) cache.resize(blk.nwarps);
  Cache& cw = cache[w];
  if (cw.key != all || cw.epoch0 != blk.epoch0 || cw.op != blk.warp_syncs[w]) {
    uint32_t A[16][8] = {}, B[8][8] = {};  // A rows and B columns as 8 words of k
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane >> 2, t = lane & 3;
      for (int i = 0; i < 128; ++i) {
        const int row = (i < 32 || (i >= 64 && i < 96)) ? g : g + 8;
        const int col = t * 32 + (i & 31) + (i >= 64 ? 128 : 0);
        A[row][col / 32] |= uint32_t((all[lane * 8 + i / 32] >> (i % 32)) & 1u) << (col % 32);
      }
      for (int i = 0; i < 64; ++i) {
        const int row = t * 32 + (i & 31) + (i >= 32 ? 128 : 0);
        B[g][row / 32] |= uint32_t((all[lane * 8 + 4 + i / 32] >> (i % 32)) & 1u) << (row % 32);
      }
    }
    for (int r = 0; r < 16; ++r)
      for (int n = 0; n < 8; ++n) {
        int s = 0;
        for (int k = 0; k < 8; ++k) s += __builtin_popcount(A[r][k] & B[n][k]);
        cw.d[r][n] = s;
      }
    cw.key = all, cw.epoch0 = blk.epoch0, cw.op = blk.warp_syncs[w];
  }
  const int lane = emu::lane_id(), g = lane >> 2, t = lane & 3;
  for (int i = 0; i < 4; ++i) c[i] += cw.d[g + (i >= 2 ? 8 : 0)][t * 2 + (i & 1)];
}

}  // namespace bnn::cuda::ptx
