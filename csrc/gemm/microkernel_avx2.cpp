// AVX2 micro-kernel: a 256-bit register holds one 64-bit word of 4 B rows; NV registers
// cover 4 * NV B rows. Each A word is broadcast, combined with every B register and counted
// with the nibble-lookup (vpshufb) popcount into byte counters, folded into 64-bit sums
// (vpsadbw) every 31 K steps, before a byte (at most 8 per step) can overflow. NS more B
// rows are counted with scalar POPCNT in the same loop: those run on the integer ALUs, which
// the vector code leaves idle (+15-20% measured over the vector-only 4x8 tile).
// The GEMM tile and the bit-serial plane sum share this K loop (count_tile); the plane sum
// scales each chunk's counts by the pair's coefficient into an int32 tile held in registers,
// so the tile is read and written once for all plane pairs of a call.
#include "gemm/microkernel.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNN_HAVE_AVX2_KERNEL 1
#endif

namespace bnn::cpu {

#ifdef BNN_HAVE_AVX2_KERNEL
namespace {

constexpr int kMR = 4;
constexpr int kNV = 2;  // 256-bit B registers per K step
constexpr int kNS = 2;  // further B rows counted with scalar POPCNT on the integer ports
constexpr int kNR = 4 * kNV + kNS;
static_assert(kMR <= kMaxMR && kNR <= kMaxNR, "tile exceeds the driver's bounds");

#define BNN_AVX2_TARGET __attribute__((target("avx2,popcnt")))

template <BitOp OP>
__attribute__((target("avx2"))) inline __m256i combine(__m256i a, __m256i b) {
  return OP == BitOp::Xor ? _mm256_xor_si256(a, b) : _mm256_and_si256(a, b);
}

// The 64-bit word at p in all four lanes, as a pure load (vbroadcastsd m64): broadcasting a
// word the scalar code also holds in a register would cost a vmovq and a vpbroadcastq on
// the vector ports.
__attribute__((target("avx2"))) inline __m256i broadcast64(const uint64_t* p) {
  return _mm256_castpd_si256(_mm256_broadcast_sd(reinterpret_cast<const double*>(p)));
}

// Counts op(a, b) of one tile pair over w64 K steps (panels as in microkernel.h). The vector
// columns' nibble-lookup counts go into byte counters, handed to sink.fold(bytes) after every
// 31 K steps and after the last, before a byte (at most 8 per step) can overflow; the kNS
// scalar columns' counts are returned in ss.
template <BitOp OP, class Sink>
BNN_AVX2_TARGET inline void count_tile(const uint64_t* a, const uint64_t* b, int64_t w64, Sink& sink,
                                       int64_t (&ss)[kMR][kNS]) {
  const __m256i lut =
      _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNS; ++j) ss[i][j] = 0;
  int64_t kk = 0;
  while (kk < w64) {
    const int64_t end = kk + 31 < w64 ? kk + 31 : w64;
    __m256i bytes[kMR][kNV];
    for (int i = 0; i < kMR; ++i)
      for (int v = 0; v < kNV; ++v) bytes[i][v] = _mm256_setzero_si256();
    for (; kk < end; ++kk) {
      __m256i bv[kNV];
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) bv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kk * kNR + 4 * v));
#pragma GCC unroll 8
      for (int i = 0; i < kMR; ++i) {
        const __m256i av = broadcast64(a + kk * kMR + i);
#pragma GCC unroll 4
        for (int v = 0; v < kNV; ++v) {
          const __m256i x = combine<OP>(av, bv[v]);
          const __m256i lo = _mm256_and_si256(x, low4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
          bytes[i][v] = _mm256_add_epi8(bytes[i][v], _mm256_shuffle_epi8(lut, lo));
          bytes[i][v] = _mm256_add_epi8(bytes[i][v], _mm256_shuffle_epi8(lut, hi));
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < kMR; ++i) {
        const uint64_t ai = a[kk * kMR + i];
#pragma GCC unroll 4
        for (int j = 0; j < kNS; ++j) {
          const uint64_t bj = b[kk * kNR + 4 * kNV + j];
          ss[i][j] += __builtin_popcountll(OP == BitOp::Xor ? (ai ^ bj) : (ai & bj));
        }
      }
    }
    sink.fold(bytes);
  }
}

// count_tile's sink of the GEMM tile: 64-bit sums of the byte counters, one per lane.
struct CountSums {
  __m256i sum[kMR][kNV];
  BNN_AVX2_TARGET void fold(const __m256i (&bytes)[kMR][kNV]) {
    for (int i = 0; i < kMR; ++i)
      for (int v = 0; v < kNV; ++v)
        sum[i][v] = _mm256_add_epi64(sum[i][v], _mm256_sad_epu8(bytes[i][v], _mm256_setzero_si256()));
  }
};

// acc = counts (MicroKernelFn).
template <BitOp OP>
BNN_AVX2_TARGET void avx2_kernel(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t* acc) {
  CountSums s;
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v) s.sum[i][v] = _mm256_setzero_si256();
  int64_t ss[kMR][kNS];
  count_tile<OP>(a, b, w64, s, ss);
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v) {
      alignas(32) int64_t lanes[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s.sum[i][v]);
      for (int j = 0; j < 4; ++j) acc[i * kNR + 4 * v + j] = static_cast<int32_t>(lanes[j]);
    }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNS; ++j) acc[i * kNR + 4 * kNV + j] = static_cast<int32_t>(ss[i][j]);
}

// count_tile's sink of the plane sum: row i's 8 vector columns of the int32 tile in one
// register, += coef * the counts of each chunk. vpsadbw leaves a chunk's count (< 2^11) in the
// low half of each 64-bit lane, the high half 0, so the counts of B registers 0 and 1 shifted
// into the high halves interleave in one register: lane l holds column (l even ? l / 2 :
// 4 + l / 2), the tile's order in registers (to_tile in avx2_plane_sum). The products wrap
// like the scalar int32 sum: the sum of a call is exact whenever it fits int32.
struct WeightedTile {
  __m256i tile[kMR];
  __m256i coef;
  BNN_AVX2_TARGET void fold(const __m256i (&bytes)[kMR][kNV]) {
    static_assert(kNV == 2, "two count registers interleave into one row of the tile");
    const __m256i zero = _mm256_setzero_si256();
    for (int i = 0; i < kMR; ++i) {
      const __m256i counts = _mm256_or_si256(_mm256_sad_epu8(bytes[i][0], zero),
                                             _mm256_slli_epi64(_mm256_sad_epu8(bytes[i][1], zero), 32));
      tile[i] = _mm256_add_epi32(tile[i], _mm256_mullo_epi32(counts, coef));
    }
  }
};

// acc += sum_e pairs[e].coef * counts of pair e (PlaneSumFn). The int32 tile is read once
// into registers (permuted into WeightedTile's lane order; the kNS scalar columns into
// integers), every pair's counts are scaled and added there chunk by chunk, and the tile is
// written back once: not once per pair as with axpy calls.
template <BitOp OP>
BNN_AVX2_TARGET void avx2_plane_sum(const PlanePair* pairs, int64_t count, int64_t w64, int32_t* acc) {
  const __m256i to_tile = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // lane l holds column to_tile[l]
  const __m256i to_row = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);   // column c is in lane to_row[c]
  WeightedTile t;
  int32_t cols[kMR][kNS];
  for (int i = 0; i < kMR; ++i) {
    t.tile[i] =
        _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i * kNR)), to_tile);
    for (int j = 0; j < kNS; ++j) cols[i][j] = acc[i * kNR + 4 * kNV + j];
  }
  for (int64_t e = 0; e < count; ++e) {
    const int32_t c = pairs[e].coef;
    t.coef = _mm256_set1_epi32(c);
    int64_t ss[kMR][kNS];
    count_tile<OP>(pairs[e].a, pairs[e].b, w64, t, ss);
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNS; ++j) cols[i][j] += c * static_cast<int32_t>(ss[i][j]);
  }
  for (int i = 0; i < kMR; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i * kNR), _mm256_permutevar8x32_epi32(t.tile[i], to_row));
    for (int j = 0; j < kNS; ++j) acc[i * kNR + 4 * kNV + j] = cols[i][j];
  }
}

// acc += coef * counts (MicroKernelAxpyFn): the plane sum of one pair.
template <BitOp OP>
BNN_AVX2_TARGET void avx2_axpy(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t coef, int32_t* acc) {
  const PlanePair pair{a, b, coef};
  avx2_plane_sum<OP>(&pair, 1, w64, acc);
}

// One row pair: 8 words per step, nibble-lookup byte counts folded every 31 steps; the
// words after the last whole step with scalar POPCNT, the last one masked.
template <BitOp OP>
BNN_AVX2_TARGET int64_t avx2_dot(const uint32_t* a, const uint32_t* b, int64_t words, uint32_t last_mask) {
  const __m256i lut =
      _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  __m256i sum = zero;
  int64_t j = 0;
  while (j + 8 < words) {
    __m256i bytes = zero;
    for (int step = 0; step < 31 && j + 8 < words; ++step, j += 8) {
      const __m256i x = combine<OP>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j)),
                                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j)));
      const __m256i lo = _mm256_and_si256(x, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
      bytes = _mm256_add_epi8(bytes, _mm256_shuffle_epi8(lut, lo));
      bytes = _mm256_add_epi8(bytes, _mm256_shuffle_epi8(lut, hi));
    }
    sum = _mm256_add_epi64(sum, _mm256_sad_epu8(bytes, zero));
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
  int64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; j < words; ++j) {
    uint32_t v = OP == BitOp::Xor ? (a[j] ^ b[j]) : (a[j] & b[j]);
    if (j == words - 1) v &= last_mask;
    s += __builtin_popcount(v);
  }
  return s;
}

// The micro-kernel of OP (the plane-sum kernel counts AND only).
template <BitOp OP>
MicroKernel kernel_of() {
  const PlaneSumFn plane_sum = OP == BitOp::And ? avx2_plane_sum<OP> : nullptr;
  return MicroKernel{avx2_kernel<OP>, "avx2", kMR, kNR, avx2_dot<OP>, avx2_axpy<OP>, plane_sum};
}

}  // namespace

MicroKernel avx2_microkernel(BitOp op) { return op == BitOp::Xor ? kernel_of<BitOp::Xor>() : kernel_of<BitOp::And>(); }
#else
MicroKernel avx2_microkernel(BitOp) { return MicroKernel{nullptr, "avx2", 0, 0, nullptr, nullptr}; }
#endif

}  // namespace bnn::cpu
