// Scalar micro-kernels: 64-bit popcount, 4x4 accumulators in registers. The body is inlined
// into a POPCNT-targeted copy (picked when the CPU has the instruction) and a generic copy.
#include <cstring>

#include "common/bits.h"
#include "gemm/microkernel.h"

namespace bnn::cpu {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 4;

// AXPY: acc += coef * counts (MicroKernelAxpyFn), else acc = counts (MicroKernelFn).
template <BitOp OP, bool AXPY>
__attribute__((always_inline)) inline void scalar_body(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t coef,
                                                       int32_t* acc) {
  int64_t s[kMR][kNR] = {};
  for (int64_t kk = 0; kk < w64; ++kk) {
    const uint64_t* ak = a + kk * kMR;
    const uint64_t* bk = b + kk * kNR;
#pragma GCC unroll 4
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < kNR; ++j) s[i][j] += popcount64(OP == BitOp::Xor ? (ak[i] ^ bk[j]) : (ak[i] & bk[j]));
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) {
      int32_t& dst = acc[i * kNR + j];
      dst = AXPY ? dst + coef * static_cast<int32_t>(s[i][j]) : static_cast<int32_t>(s[i][j]);
    }
}

template <BitOp OP>
__attribute__((always_inline)) inline int64_t dot_body(const uint32_t* a, const uint32_t* b, int64_t words,
                                                       uint32_t last_mask) {
  int64_t s = 0;
  int64_t j = 0;
  for (; j + 2 < words; j += 2) {  // whole 64-bit pairs before the last word
    uint64_t x, y;
    std::memcpy(&x, a + j, sizeof x);
    std::memcpy(&y, b + j, sizeof y);
    s += popcount64(OP == BitOp::Xor ? (x ^ y) : (x & y));
  }
  for (; j < words; ++j) {
    uint32_t v = OP == BitOp::Xor ? (a[j] ^ b[j]) : (a[j] & b[j]);
    if (j == words - 1) v &= last_mask;
    s += popcount32(v);
  }
  return s;
}

template <BitOp OP>
__attribute__((target("popcnt"))) int64_t dot_popcnt(const uint32_t* a, const uint32_t* b, int64_t words,
                                                     uint32_t last_mask) {
  return dot_body<OP>(a, b, words, last_mask);
}

template <BitOp OP>
int64_t dot_generic(const uint32_t* a, const uint32_t* b, int64_t words, uint32_t last_mask) {
  return dot_body<OP>(a, b, words, last_mask);
}

template <BitOp OP>
__attribute__((target("popcnt"))) void scalar_popcnt(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t* acc) {
  scalar_body<OP, false>(a, b, w64, 0, acc);
}

template <BitOp OP>
__attribute__((target("popcnt"))) void scalar_popcnt_axpy(const uint64_t* a, const uint64_t* b, int64_t w64,
                                                          int32_t coef, int32_t* acc) {
  scalar_body<OP, true>(a, b, w64, coef, acc);
}

template <BitOp OP>
void scalar_generic(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t* acc) {
  scalar_body<OP, false>(a, b, w64, 0, acc);
}

template <BitOp OP>
void scalar_generic_axpy(const uint64_t* a, const uint64_t* b, int64_t w64, int32_t coef, int32_t* acc) {
  scalar_body<OP, true>(a, b, w64, coef, acc);
}

}  // namespace

MicroKernel scalar_microkernel(BitOp op) {
  if (__builtin_cpu_supports("popcnt"))
    return op == BitOp::Xor
               ? MicroKernel{scalar_popcnt<BitOp::Xor>,     "scalar-popcnt", kMR, kNR, dot_popcnt<BitOp::Xor>,
                             scalar_popcnt_axpy<BitOp::Xor>}
               : MicroKernel{scalar_popcnt<BitOp::And>,     "scalar-popcnt", kMR, kNR, dot_popcnt<BitOp::And>,
                             scalar_popcnt_axpy<BitOp::And>};
  return op == BitOp::Xor ? MicroKernel{scalar_generic<BitOp::Xor>,     "scalar", kMR, kNR, dot_generic<BitOp::Xor>,
                                        scalar_generic_axpy<BitOp::Xor>}
                          : MicroKernel{scalar_generic<BitOp::And>,     "scalar", kMR, kNR, dot_generic<BitOp::And>,
                                        scalar_generic_axpy<BitOp::And>};
}

}  // namespace bnn::cpu
