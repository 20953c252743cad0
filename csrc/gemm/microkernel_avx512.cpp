// AVX-512 VPOPCNTDQ micro-kernel (Ice Lake, Zen 4 and newer): one 512-bit register holds two
// consecutive 64-bit K steps of the NR=4 B rows; each A row's matching pair of words is
// permuted into place, combined, and counted with vpopcntq straight into 64-bit lanes.
#include "gemm/microkernel.h"

#if defined(__x86_64__)
#include <immintrin.h>

namespace bnn::cpu {
namespace {

template <BitOp OP>
__attribute__((target("avx512f,avx512vpopcntdq"))) void avx512_kernel(const uint64_t* a, const uint64_t* b,
                                                                      int64_t w64, int32_t acc[kMR][kNR]) {
  static_assert(kMR == 4 && kNR == 4, "lanes hold two K steps of four rows");
  __m512i sum[kMR];
  __m512i idx[kMR];
  for (int i = 0; i < kMR; ++i) {
    sum[i] = _mm512_setzero_si512();
    idx[i] = _mm512_set_epi64(4 + i, 4 + i, 4 + i, 4 + i, i, i, i, i);
  }
  int64_t kk = 0;
  for (; kk + 2 <= w64; kk += 2) {
    const __m512i bv = _mm512_loadu_si512(b + kk * kNR);
    const __m512i av = _mm512_loadu_si512(a + kk * kMR);
#pragma GCC unroll 4
    for (int i = 0; i < kMR; ++i) {
      const __m512i ai = _mm512_permutexvar_epi64(idx[i], av);
      const __m512i x = OP == BitOp::Xor ? _mm512_xor_si512(ai, bv) : _mm512_and_si512(ai, bv);
      sum[i] = _mm512_add_epi64(sum[i], _mm512_popcnt_epi64(x));
    }
  }
  for (int i = 0; i < kMR; ++i) {
    alignas(64) int64_t lanes[8];
    _mm512_store_si512(lanes, sum[i]);
    for (int j = 0; j < kNR; ++j) {
      int64_t s = lanes[j] + lanes[4 + j];
      if (kk < w64) {  // odd number of K steps: the last one
        const uint64_t av = a[kk * kMR + i], bv = b[kk * kNR + j];
        s += __builtin_popcountll(OP == BitOp::Xor ? (av ^ bv) : (av & bv));
      }
      acc[i][j] = static_cast<int32_t>(s);
    }
  }
}

}  // namespace

bool cpu_has_avx512_vpopcnt() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
}

MicroKernel avx512_microkernel(BitOp op) {
  return op == BitOp::Xor ? MicroKernel{avx512_kernel<BitOp::Xor>, "avx512-vpopcntdq"}
                          : MicroKernel{avx512_kernel<BitOp::And>, "avx512-vpopcntdq"};
}

}  // namespace bnn::cpu
#else
namespace bnn::cpu {
bool cpu_has_avx512_vpopcnt() { return false; }
MicroKernel avx512_microkernel(BitOp) { return MicroKernel{nullptr, "avx512-vpopcntdq"}; }
}  // namespace bnn::cpu
#endif
