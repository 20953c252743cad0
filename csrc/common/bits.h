// Torch-free helpers shared by every op family: the canonical bit format and popcount.
//
// Canonical format: +1 where x >= threshold, bit 1 = +1, bit 0 = -1, packed along the
// last dimension, least significant bit first, into 32-bit words; ceil(K/32) words per
// row and the tail bits of the last word are 0.
#pragma once

#include <cstdint>
#include <cstddef>

namespace bnn {

inline int64_t words_for_bits(int64_t k) { return (k + 31) / 32; }

// Mask of the valid bits of the last word of a row of k bits (all ones when k % 32 == 0).
inline uint32_t tail_mask(int64_t k) {
  const int r = static_cast<int>(k % 32);
  return r == 0 ? 0xFFFFFFFFu : ((1u << r) - 1u);
}

inline int popcount32(uint32_t x) { return __builtin_popcount(x); }
inline int popcount64(uint64_t x) { return __builtin_popcountll(x); }

// Clamp a requested thread count to something OpenMP accepts.
inline int sane_threads(int n) { return n < 1 ? 1 : n; }

}  // namespace bnn
