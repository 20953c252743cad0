// Helpers shared by the emulation test drivers.
#pragma once
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/bits.h"
#include "emu_device.h"

namespace emutest {
extern std::mt19937_64 rng;
extern int failures, checks;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    ++::emutest::checks;                                   \
    if (!(cond)) {                                         \
      ++::emutest::failures;                               \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
    }                                                      \
  } while (0)

inline std::vector<int32_t> rand_words(size_t n) {
  std::vector<int32_t> v(n);
  for (auto& x : v) x = static_cast<int32_t>(rng());
  return v;
}
// rows x ceil(k/32) packed words; dirty: random tail bits past k.
inline std::vector<int32_t> rand_bits(int64_t rows, int64_t k, bool dirty) {
  const int64_t w = bnn::words_for_bits(k);
  auto v = rand_words(rows * w);
  if (!dirty)
    for (int64_t r = 0; r < rows; ++r) v[r * w + w - 1] &= static_cast<int32_t>(bnn::tail_mask(k));
  return v;
}
// An output buffer must be written in full by the kernels, then equal the reference.
template <class T>
bool same(const emu::DevBuf<T>& out, const std::vector<T>& ref, size_t n = size_t(-1)) {
  if (n == size_t(-1)) n = ref.size();
  if (out.unwritten_bytes()) return false;
  auto h = out.host();
  return std::equal(ref.begin(), ref.begin() + n, h.begin());
}

void test_sm90();                                // test_sm90.cpp
int run_sm90_detector(const std::string& name);  // 2: unknown name

void test_pack();
void test_gemm(bool quick);
void test_conv();
void test_bitserial();
void test_linear();
void test_wconv();  // test_wconv.cpp
void test_layout();
void test_mma_fallback(const std::string& want);
void test_epilogue();
void test_fused_epilogue();  // test_fused.cpp
int run_detector(const std::string& name);
void test_wgmma();                                  // test_wgmma.cpp: the sm_90a GEMM path
void test_wgmma_fallback(const std::string& want);  // the path a forced Wgmma takes by loaded code
}  // namespace emutest
