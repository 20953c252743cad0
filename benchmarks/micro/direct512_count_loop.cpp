// Ceilings of the AVX-512 kernels' inner loops on the CPU they run on: the direct conv
// (csrc/conv/direct_avx512.cpp) and the binary-weight panel kernel (csrc/linear/panel_avx512.cpp).
//
// Per (input word, weight chunk) pair the direct kernel does, for 64 output channels x 32 input
// channels (2048 binary MACs), 4 XOR, 4 VPOPCNTD and 4 adds on 512-bit registers. Per column
// and panel the panel kernel does one blend and one FMA per row (16 MACs each). This program
// times, with every operand in registers:
//   clock:  a chain of dependent scalar adds (1 cycle each), so cycles can be counted;
//   pair:   the direct kernel's 12 operations per pair: its ALU bound;
//   popcnt: VPOPCNTD alone (8 independent chains): its throughput;
//   fma:    512-bit FMAs (12 independent chains): the panel kernel's bound (and float conv's).
// Build and run (x86-64; the timed functions carry their own AVX-512 target, and the program
// says so and stops on a CPU without AVX-512 VPOPCNTDQ):
//   g++ -O3 -mavx2 -o /tmp/direct512_count_loop benchmarks/micro/direct512_count_loop.cpp && /tmp/direct512_count_loop
// GOPS counts 2 operations per multiply-accumulate (binary or float).
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "clock.h"

namespace {

#define AVX512 __attribute__((target("avx512f,avx512vpopcntdq")))

using micro::clock_ghz;
using micro::seconds_since;

// The lanes' sum, through memory (GCC 12 warns falsely inside _mm512_reduce_*).
AVX512 int lane_sum(__m512i v) {
  int lanes[16], s = 0;
  _mm512_storeu_si512(lanes, v);
  for (int x : lanes) s += x;
  return s;
}
AVX512 float lane_sum(__m512 v) {
  float lanes[16], s = 0;
  _mm512_storeu_ps(lanes, v);
  for (float x : lanes) s += x;
  return s;
}

AVX512 __m512i count(__m512i acc, __m512i x, __m512i w) {
  return _mm512_add_epi32(acc, _mm512_popcnt_epi32(_mm512_xor_si512(x, w)));
}

// Seconds per pair: 4 x (XOR, VPOPCNTD, add), a new broadcast input word each pair.
AVX512 __attribute__((noinline)) double seconds_per_pair(long n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  __m512i x = _mm512_set1_epi32(std::rand());
  __m512i w[4];
  for (auto& v : w) v = _mm512_set1_epi32(std::rand());
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    __asm__ volatile("" : "+v"(x));
    a0 = count(a0, x, w[0]);
    a1 = count(a1, x, w[1]);
    a2 = count(a2, x, w[2]);
    a3 = count(a3, x, w[3]);
  }
  const double t = seconds_since(t0);
  volatile int sink = lane_sum(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
  (void)sink;
  return t / static_cast<double>(n);
}

// Seconds per VPOPCNTD: 8 independent chains.
AVX512 __attribute__((noinline)) double seconds_per_popcnt(long n) {
  __m512i a[8];
  for (int i = 0; i < 8; ++i) a[i] = _mm512_set1_epi32(std::rand() | 1);
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    for (auto& v : a) v = _mm512_popcnt_epi32(v);
  }
  const double t = seconds_since(t0);
  __m512i s = a[0];
  for (int i = 1; i < 8; ++i) s = _mm512_add_epi32(s, a[i]);
  volatile int sink = lane_sum(s);
  (void)sink;
  return t / static_cast<double>(8 * n);
}

// Seconds per 512-bit FMA: 12 independent chains.
AVX512 __attribute__((noinline)) double seconds_per_fma(long n) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(0.5f + static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    for (auto& v : a) v = _mm512_fmadd_ps(v, m, c);
  }
  const double t = seconds_since(t0);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  volatile float sink = lane_sum(s);
  (void)sink;
  return t / static_cast<double>(12 * n);
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vpopcntdq")) {
    std::printf("this CPU has no AVX-512 VPOPCNTDQ\n");
    return 1;
  }
  double ghz = 0, pair = 1, popc = 1, fma = 1;
  for (int round = 0; round < 5; ++round) {  // best of 5: other work on the core only slows a round down
    const double g = clock_ghz(400000000);
    ghz = g > ghz ? g : ghz;
    const double r = seconds_per_pair(100000000), p = seconds_per_popcnt(50000000), f = seconds_per_fma(50000000);
    pair = r < pair ? r : pair;
    popc = p < popc ? p : popc;
    fma = f < fma ? f : fma;
  }
  std::printf("clock: %.2f GHz (dependent adds)\n", ghz);
  std::printf("pair: %.2f cycles per pair of 2048 binary MACs, %.0f GOPS\n", pair * ghz * 1e9, 4096 / pair / 1e9);
  std::printf("popcnt: %.2f VPOPCNTD (512-bit) per cycle\n", 1 / (popc * ghz * 1e9));
  std::printf("fma: %.2f FMA (512-bit) per cycle, %.0f GFLOP/s\n", 1 / (fma * ghz * 1e9), 32 / fma / 1e9);
}
