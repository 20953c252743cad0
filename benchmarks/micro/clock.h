// Timing helpers shared by the microbenchmarks in this folder: wall seconds, and the core's
// clock under load measured with a chain of dependent scalar adds (1 cycle each), so that
// times can be turned into cycles.
#pragma once

#include <chrono>

namespace micro {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline double clock_ghz(long n) {
  unsigned long x = 1;
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
  return 4.0 * static_cast<double>(n) / seconds_since(t0) / 1e9 + static_cast<double>(x & 0);
}

}  // namespace micro
