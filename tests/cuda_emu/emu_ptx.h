// Emulated PTX helpers of and_gemm_mma_cuda.cu (included in place of the asm ones).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  unsigned char* d = ::emu::dyn_smem + dst;
  if (dst % 16) { fprintf(stderr, "EMU: misaligned cp.async16 dst\n"); abort(); }
  if (src_bytes && (reinterpret_cast<uintptr_t>(src) % 16)) { fprintf(stderr, "EMU: misaligned cp.async16 src\n"); abort(); }
  memset(d, 0, 16); if (src_bytes) memcpy(d, src, src_bytes);
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, int src_bytes) {
  unsigned char* d = ::emu::dyn_smem + dst;
  memset(d, 0, 4); if (src_bytes) memcpy(d, src, src_bytes);
}
__device__ __forceinline__ void cp_async_commit() {}
template <int N>
__device__ __forceinline__ void cp_async_wait() {}
// ldmatrix.x4 (b16, no transpose): lanes 8i..8i+7 give the row addresses of matrix i; lane l
// receives 32-bit word l%4 of row l/4 of each matrix.
__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  if (addr % 16) { fprintf(stderr, "EMU: misaligned ldmatrix row\n"); abort(); }
  const int lane = ::emu::tid() & 31;
  uint64_t mine[8] = {addr};
  uint32_t r[4];
  ::emu::exchange8(mine, [&](auto get) {
    for (int m = 0; m < 4; ++m) {
      const uint32_t row = static_cast<uint32_t>(get(m * 8 + lane / 4, 0));
      memcpy(&r[m], ::emu::dyn_smem + row + 4 * (lane % 4), 4);
    }
  });
  r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
}
// mma.sync.m16n8k256 b1 AND.popc: a0 (row g, word t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4);
// b0 (col g, word t), b1 (col g, t+4); c0/c1 (row g, cols 2t, 2t+1), c2/c3 (row g+8).
__device__ __forceinline__ void mma_b1_and(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const int lane = ::emu::tid() & 31, g = lane >> 2, t = lane & 3;
  uint64_t mine[8] = {a[0], a[1], a[2], a[3], b0, b1};
  ::emu::exchange8(mine, [&](auto get) {
    for (int r = 0; r < 4; ++r) {
      const int row = g + (r >> 1) * 8, col = 2 * t + (r & 1);
      int s = 0;
      for (int w = 0; w < 8; ++w) {
        const int ta = row % 8 * 4 + w % 4;  // lane holding A[row][w]
        const uint32_t av = static_cast<uint32_t>(get(ta, (row >= 8 ? 1 : 0) + (w >= 4 ? 2 : 0)));
        const int tb = col * 4 + w % 4;      // lane holding B[col][w]
        const uint32_t bv = static_cast<uint32_t>(get(tb, 4 + (w >= 4 ? 1 : 0)));
        s += __builtin_popcount(av & bv);
      }
      c[r] += s;
    }
  });
}
