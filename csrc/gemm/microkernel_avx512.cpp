// AVX-512 VPOPCNTDQ micro-kernel: a 512-bit register holds one 64-bit word of 8 B rows; NV
// registers cover NR = 8 * NV rows. Each A word is broadcast, combined with every B register
// and counted per 64-bit lane by vpopcntq straight into 64-bit accumulators (no lookup table,
// no byte counters): 3 vector instructions per 512 bit-products.
#include "gemm/microkernel.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNN_HAVE_AVX512_KERNEL 1
#endif

namespace bnn::cpu {

#ifdef BNN_HAVE_AVX512_KERNEL
namespace {

constexpr int kMR = 8;
constexpr int kNV = 2;  // 512-bit B registers per K step
constexpr int kNR = 8 * kNV;
static_assert(kMR <= kMaxMR && kNR <= kMaxNR, "tile exceeds the driver's bounds");

#define BNN_AVX512_TARGET __attribute__((target("avx512f,avx512vpopcntdq")))

template <BitOp OP>
BNN_AVX512_TARGET inline __m512i combine(__m512i a, __m512i b) {
  return OP == BitOp::Xor ? _mm512_xor_si512(a, b) : _mm512_and_si512(a, b);
}

// AXPY: acc += coef * counts (MicroKernelAxpyFn), else acc = counts (MicroKernelFn).
template <BitOp OP, bool AXPY>
BNN_AVX512_TARGET inline void avx512_tile(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t coef,
                                          int32_t* acc) {
  __m512i sum[kMR][kNV];
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
  const __m256i c = _mm256_set1_epi32(coef);
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v) {
      __m256i* out = reinterpret_cast<__m256i*>(acc + i * kNR + 8 * v);
      __m256i x = _mm512_mask_cvtepi64_epi32(_mm256_setzero_si256(), 0xff, sum[i][v]);
      if (AXPY) x = _mm256_add_epi32(_mm256_loadu_si256(out), _mm256_mullo_epi32(x, c));
      _mm256_storeu_si256(out, x);
    }
}

template <BitOp OP>
BNN_AVX512_TARGET void avx512_kernel(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t* acc) {
  avx512_tile<OP, false>(a, b, w64, 0, acc);
}

template <BitOp OP>
BNN_AVX512_TARGET void avx512_axpy(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t coef, int32_t* acc) {
  avx512_tile<OP, true>(a, b, w64, coef, acc);
}

// One row pair: 16 words per vpopcntq step; the last (partial) step is a masked load with
// the last word's tail cleared.
template <BitOp OP>
BNN_AVX512_TARGET int64_t avx512_dot(const uint32_t* a, const uint32_t* b, int64_t words, uint32_t last_mask) {
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

}  // namespace

bool cpu_has_avx512_vpopcnt() { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"); }

MicroKernel avx512_microkernel(BitOp op) {
  return op == BitOp::Xor ? MicroKernel{avx512_kernel<BitOp::Xor>, "avx512-vpopcntdq",     kMR, kNR,
                                        avx512_dot<BitOp::Xor>,    avx512_axpy<BitOp::Xor>}
                          : MicroKernel{avx512_kernel<BitOp::And>, "avx512-vpopcntdq",     kMR, kNR,
                                        avx512_dot<BitOp::And>,    avx512_axpy<BitOp::And>};
}
#else
bool cpu_has_avx512_vpopcnt() { return false; }
MicroKernel avx512_microkernel(BitOp) { return MicroKernel{nullptr, "avx512-vpopcntdq", 0, 0, nullptr, nullptr}; }
#endif

}  // namespace bnn::cpu
