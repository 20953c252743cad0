// AVX-512 VPOPCNTDQ micro-kernel: a 512-bit register holds one 64-bit word of 8 B rows; NV
// registers cover NR = 8 * NV rows. Each A word is broadcast, combined with every B register
// and counted per 64-bit lane by vpopcntq straight into 64-bit accumulators (no lookup table,
// no byte counters): 3 vector instructions per 512 bit-products. The bit-serial plane sum
// runs the same K loop once per plane pair and keeps the weighted sum in registers.
#include "gemm/microkernel.h"

#include "common/avx512.h"
#include "common/cpu_features.h"

namespace bnn::cpu {

#ifdef BNN_HAVE_AVX512_INTRINSICS
namespace {

constexpr int kMR = 8;
constexpr int kNV = 2;  // 512-bit B registers per K step
constexpr int kNR = 8 * kNV;
static_assert(kMR <= kMaxMR && kNR <= kMaxNR, "tile exceeds the driver's bounds");

template <BitOp OP>
BNN_TARGET_AVX512_VPOPCNT inline __m512i combine(__m512i a, __m512i b) {
  return OP == BitOp::Xor ? _mm512_xor_si512(a, b) : _mm512_and_si512(a, b);
}

// sum[i][v] = the 64-bit counts of op(row i of the A panel, B register v) over w64 K steps.
template <BitOp OP>
BNN_TARGET_AVX512_VPOPCNT inline void count_tile(const uint64_t* a, const uint64_t* b, int64_t w64,
                                                 __m512i (&sum)[kMR][kNV]) {
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v) sum[i][v] = _mm512_setzero_si512();
  for (int64_t kk = 0; kk < w64; ++kk) {
    __m512i bv[kNV];
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) bv[v] = _mm512_loadu_si512(b + kk * kNR + 8 * v);
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      const __m512i av = _mm512_set1_epi64(static_cast<long long>(a[kk * kMR + i]));
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v)
        sum[i][v] = _mm512_add_epi64(sum[i][v], _mm512_popcnt_epi64(combine<OP>(av, bv[v])));
    }
  }
}

// acc = counts (MicroKernelFn).
template <BitOp OP>
BNN_TARGET_AVX512_VPOPCNT void avx512_kernel(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t* acc) {
  __m512i sum[kMR][kNV];
  count_tile<OP>(a, b, w64, sum);
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v) {
      const __m256i x = _mm512_mask_cvtepi64_epi32(_mm256_setzero_si256(), 0xff, sum[i][v]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i * kNR + 8 * v), x);
    }
}

// acc += sum_e pairs[e].coef * counts of pair e (PlaneSumFn). Each pair's counts stay in the
// 16 count registers; a row of the int32 tile is one register (the low halves of a row's
// two count registers, one vpermt2d), scaled by the pair's coefficient and added in
// registers, so the tile is read and written once per call, not once per pair.
template <BitOp OP>
BNN_TARGET_AVX512_VPOPCNT void avx512_plane_sum(const PlanePair* pairs, int64_t count, int64_t w64, int32_t* acc) {
  static_assert(kNV == 2 && kNR == 16, "a row of the int32 tile is one register");
  const __m512i low = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  __m512i tile[kMR];
  for (int i = 0; i < kMR; ++i) tile[i] = _mm512_loadu_si512(acc + i * kNR);
  for (int64_t e = 0; e < count; ++e) {
    __m512i sum[kMR][kNV];
    count_tile<OP>(pairs[e].a, pairs[e].b, w64, sum);
    const __m512i c = _mm512_set1_epi32(pairs[e].coef);
    for (int i = 0; i < kMR; ++i)  // counts < 2^31: the low half of each 64-bit lane is the count
      tile[i] = _mm512_add_epi32(tile[i], _mm512_mullo_epi32(_mm512_permutex2var_epi32(sum[i][0], low, sum[i][1]), c));
  }
  for (int i = 0; i < kMR; ++i) _mm512_storeu_si512(acc + i * kNR, tile[i]);
}

// acc += coef * counts (MicroKernelAxpyFn): the plane sum of one pair.
template <BitOp OP>
BNN_TARGET_AVX512_VPOPCNT void avx512_axpy(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t coef,
                                           int32_t* acc) {
  const PlanePair pair{a, b, coef};
  avx512_plane_sum<OP>(&pair, 1, w64, acc);
}

// PanelCountFn: a K step of an A panel is one register (kMR = 8 rows), so the lanes of the
// running sum are the rows' counts.
BNN_TARGET_AVX512_VPOPCNT void avx512_panel_count(const uint64_t* panel, int64_t w64, int64_t* counts) {
  static_assert(kMR == 8, "one 64-bit lane per panel row");
  __m512i s = _mm512_setzero_si512();
  for (int64_t kk = 0; kk < w64; ++kk)
    s = _mm512_add_epi64(s, _mm512_popcnt_epi64(_mm512_loadu_si512(panel + kk * kMR)));
  _mm512_storeu_si512(counts, s);
}

// One row pair: 16 words per vpopcntq step; the last (partial) step is a masked load with
// the last word's tail cleared.
template <BitOp OP>
BNN_TARGET_AVX512_VPOPCNT int64_t avx512_dot(const uint32_t* a, const uint32_t* b, int64_t words, uint32_t last_mask) {
  __m512i s = _mm512_setzero_si512();
  int64_t j = 0;
  for (; j + 16 < words; j += 16)
    s = _mm512_add_epi64(s, _mm512_popcnt_epi64(combine<OP>(_mm512_loadu_si512(a + j), _mm512_loadu_si512(b + j))));
  const int rem = static_cast<int>(words - j);  // 1..16
  const __mmask16 k = static_cast<__mmask16>((1u << rem) - 1u);
  const __m512i tail = _mm512_mask_set1_epi32(_mm512_set1_epi32(-1), static_cast<__mmask16>(1u << (rem - 1)),
                                              static_cast<int>(last_mask));
  const __m512i x =
      _mm512_and_si512(combine<OP>(_mm512_maskz_loadu_epi32(k, a + j), _mm512_maskz_loadu_epi32(k, b + j)), tail);
  s = _mm512_add_epi64(s, _mm512_popcnt_epi64(x));
  alignas(64) int64_t lanes[8];  // (_mm512_reduce_add_epi64 trips -Wuninitialized in GCC 12)
  _mm512_store_si512(lanes, s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

// The micro-kernel of OP (the plane-sum kernel counts AND only).
template <BitOp OP>
MicroKernel kernel_of() {
  const PlaneSumFn plane_sum = OP == BitOp::And ? avx512_plane_sum<OP> : nullptr;
  return MicroKernel{avx512_kernel<OP>, "avx512-vpopcntdq", kMR, kNR, avx512_dot<OP>, avx512_axpy<OP>, plane_sum};
}

}  // namespace

bool cpu_has_avx512_vpopcnt() { return cpu_runs_avx512(true); }

MicroKernel avx512_microkernel(BitOp op) {
  return op == BitOp::Xor ? kernel_of<BitOp::Xor>() : kernel_of<BitOp::And>();
}
PanelCountFn panel_count_kernel(const MicroKernel& mk) {
  const bool ours = mk.fn == &avx512_kernel<BitOp::And> || mk.fn == &avx512_kernel<BitOp::Xor>;
  return ours ? &avx512_panel_count : nullptr;
}
#else
PanelCountFn panel_count_kernel(const MicroKernel&) { return nullptr; }
bool cpu_has_avx512_vpopcnt() { return false; }
MicroKernel avx512_microkernel(BitOp) { return MicroKernel{nullptr, "avx512-vpopcntdq", 0, 0, nullptr, nullptr}; }
#endif

}  // namespace bnn::cpu
