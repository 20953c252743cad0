// Ceilings of the AVX2 direct conv's inner loop (csrc/conv/direct_avx2.cpp) on the CPU it runs on.
//
// Per (input word, weight word) pair of 32 channels the kernel does 8 XOR, 8 VPSHUFB and 8 byte
// adds (24 vector operations), reading 8 weight registers and 2 broadcast input words. This
// program times:
//   clock:     a chain of dependent scalar adds (1 cycle each), so cycles can be counted;
//   registers: the 24 operations with every operand in registers: the ALU bound of the loop,
//              which the kernel's measured rate is compared with (benchmarks/README.md).
// Build and run (x86-64 with AVX2):
//   g++ -O3 -mavx2 -o /tmp/direct_count_loop benchmarks/micro/direct_count_loop.cpp && /tmp/direct_count_loop
// GOPS counts 2 operations per binary multiply-accumulate: 2048 per pair.
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "clock.h"

namespace {

using micro::clock_ghz;
using micro::seconds_since;

__m256i step(__m256i acc, __m256i lut, __m256i x, __m256i w) {
  return _mm256_add_epi8(acc, _mm256_shuffle_epi8(lut, _mm256_xor_si256(x, w)));
}

// Seconds per pair: the 24 operations of one pair, every operand in registers.
__attribute__((noinline)) double seconds_per_pair(long n) {
  const __m256i lut = _mm256_set1_epi8(3);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  __m256i lo = _mm256_set1_epi32(std::rand()), hi = _mm256_set1_epi32(std::rand());
  __m256i r[8];
  for (auto& v : r) v = _mm256_set1_epi32(std::rand());
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    __asm__ volatile("" : "+x"(lo), "+x"(hi));  // a new input word each pair
    a0 = step(step(a0, lut, lo, r[0]), lut, hi, r[1]);
    a1 = step(step(a1, lut, lo, r[2]), lut, hi, r[3]);
    a2 = step(step(a2, lut, lo, r[4]), lut, hi, r[5]);
    a3 = step(step(a3, lut, lo, r[6]), lut, hi, r[7]);
  }
  const double t = seconds_since(t0);
  volatile int sink = _mm256_extract_epi32(_mm256_add_epi8(_mm256_add_epi8(a0, a1), _mm256_add_epi8(a2, a3)), 0);
  (void)sink;
  return t / static_cast<double>(n);
}

}  // namespace

int main() {
  double ghz = 0, regs = 1;
  for (int round = 0; round < 5; ++round) {  // best of 5: other work on the core only slows a round down
    const double g = clock_ghz(400000000);
    ghz = g > ghz ? g : ghz;
    const double r = seconds_per_pair(100000000);
    regs = r < regs ? r : regs;
  }
  std::printf("clock: %.2f GHz (dependent adds)\n", ghz);
  std::printf("registers: %.2f cycles per pair, %.0f GOPS\n", regs * ghz * 1e9, 2048 / regs / 1e9);
}
