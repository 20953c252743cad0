// Scalar micro-kernels: 64-bit popcount, 4x4 accumulators in registers. The body is inlined
// into a POPCNT-targeted copy (picked when the CPU has the instruction) and a generic copy.
#include "common/bits.h"
#include "gemm/microkernel.h"

namespace bnn::cpu {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 4;

template <BitOp OP>
__attribute__((always_inline)) inline void scalar_body(const uint64_t* a, const uint64_t* b,
                                                       int64_t w64, int32_t* acc) {
  int64_t s[kMR][kNR] = {};
  for (int64_t kk = 0; kk < w64; ++kk) {
    const uint64_t* ak = a + kk * kMR;
    const uint64_t* bk = b + kk * kNR;
#pragma GCC unroll 4
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < kNR; ++j)
        s[i][j] += popcount64(OP == BitOp::Xor ? (ak[i] ^ bk[j]) : (ak[i] & bk[j]));
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) acc[i * kNR + j] = static_cast<int32_t>(s[i][j]);
}

template <BitOp OP>
__attribute__((target("popcnt"))) void scalar_popcnt(const uint64_t* a, const uint64_t* b,
                                                     int64_t w64, int32_t* acc) {
  scalar_body<OP>(a, b, w64, acc);
}

template <BitOp OP>
void scalar_generic(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t* acc) {
  scalar_body<OP>(a, b, w64, acc);
}

}  // namespace

MicroKernel scalar_microkernel(BitOp op) {
  if (__builtin_cpu_supports("popcnt"))
    return op == BitOp::Xor ? MicroKernel{scalar_popcnt<BitOp::Xor>, "scalar-popcnt", kMR, kNR}
                            : MicroKernel{scalar_popcnt<BitOp::And>, "scalar-popcnt", kMR, kNR};
  return op == BitOp::Xor ? MicroKernel{scalar_generic<BitOp::Xor>, "scalar", kMR, kNR}
                          : MicroKernel{scalar_generic<BitOp::And>, "scalar", kMR, kNR};
}

}  // namespace bnn::cpu
