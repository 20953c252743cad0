// AVX2 micro-kernel: each 256-bit register holds one 64-bit word of the NR=4 B rows; the A
// word is broadcast, combined, and counted with the nibble-lookup (vpshufb) popcount into
// byte counters that are folded into 64-bit sums (vpsadbw) before they can overflow.
#include "gemm/microkernel.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNN_HAVE_AVX2_KERNEL 1
#endif

namespace bnn::cpu {

#ifdef BNN_HAVE_AVX2_KERNEL
namespace {

template <BitOp OP>
__attribute__((target("avx2"))) void avx2_kernel(const uint64_t* a, const uint64_t* b,
                                                 int64_t w64, int32_t acc[kMR][kNR]) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  __m256i sum[kMR];
  for (int i = 0; i < kMR; ++i) sum[i] = zero;
  int64_t kk = 0;
  while (kk < w64) {
    // 31 steps of at most 8 per byte keep every byte counter below 256.
    const int64_t end = kk + 31 < w64 ? kk + 31 : w64;
    __m256i bytes[kMR];
    for (int i = 0; i < kMR; ++i) bytes[i] = zero;
    for (; kk < end; ++kk) {
      const __m256i bv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kk * kNR));
#pragma GCC unroll 4
      for (int i = 0; i < kMR; ++i) {
        const __m256i av = _mm256_set1_epi64x(static_cast<long long>(a[kk * kMR + i]));
        const __m256i x = OP == BitOp::Xor ? _mm256_xor_si256(av, bv) : _mm256_and_si256(av, bv);
        const __m256i lo = _mm256_and_si256(x, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
        bytes[i] = _mm256_add_epi8(bytes[i], _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo),
                                                             _mm256_shuffle_epi8(lut, hi)));
      }
    }
    for (int i = 0; i < kMR; ++i) sum[i] = _mm256_add_epi64(sum[i], _mm256_sad_epu8(bytes[i], zero));
  }
  for (int i = 0; i < kMR; ++i) {
    alignas(32) int64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum[i]);
    for (int j = 0; j < kNR; ++j) acc[i][j] = static_cast<int32_t>(lanes[j]);
  }
}

}  // namespace

bool cpu_has_avx2() { return __builtin_cpu_supports("avx2"); }

MicroKernel avx2_microkernel(BitOp op) {
  return op == BitOp::Xor ? MicroKernel{avx2_kernel<BitOp::Xor>, "avx2"}
                          : MicroKernel{avx2_kernel<BitOp::And>, "avx2"};
}
#else
bool cpu_has_avx2() { return false; }
MicroKernel avx2_microkernel(BitOp) { return MicroKernel{nullptr, "avx2"}; }
#endif


}  // namespace bnn::cpu
