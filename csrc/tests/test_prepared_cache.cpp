// C++ unit test of the per-thread prepared-weights cache (common/prepared_cache.h): a hit only
// for the same address, key and words; an in-place change, another key or a recycled address
// prepares afresh; least recently used entries leave first; oversized weights are not kept.
// Run by ctest.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/prepared_cache.h"
#include "tests/expect.h"

namespace {

using bnn::test::expect;
using bnn::test::failures;

// Prepared form used by the test: every word + 1, and a count of the calls.
struct Plus1 {
  const std::vector<uint32_t>& src;
  int& calls;
  void operator()(uint32_t* dst) const {
    ++calls;
    for (size_t i = 0; i < src.size(); ++i) dst[i] = src[i] + 1;
  }
};

bool prepared_ok(const uint32_t* got, const std::vector<uint32_t>& src) {
  for (size_t i = 0; i < src.size(); ++i)
    if (got[i] != src[i] + 1) return false;
  return true;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  std::vector<uint32_t> a(1000), b(1000);
  for (auto& v : a) v = rng();
  for (auto& v : b) v = rng();
  const size_t entry_bytes = 2 * 1000 * sizeof(uint32_t);
  bnn::cpu::PreparedCache cache(2 * entry_bytes);  // room for two entries
  int calls = 0;
  const auto get = [&](const std::vector<uint32_t>& w, std::vector<int64_t> key) {
    const uint32_t* p = cache.get(w.data(), w.size(), key, w.size(), Plus1{w, calls});
    expect(reinterpret_cast<uintptr_t>(p) % 64 == 0, "prepared words are 64-byte aligned");
    return p;
  };

  expect(prepared_ok(get(a, {1}), a) && calls == 1, "first use prepares");
  expect(prepared_ok(get(a, {1}), a) && calls == 1, "same address, key and words: a hit");
  expect(prepared_ok(get(a, {2}), a) && calls == 2, "another key prepares afresh");
  a[999] ^= 1u;  // an in-place change of the last word
  expect(prepared_ok(get(a, {1}), a) && calls == 3, "changed words prepare afresh");
  a[0] ^= 0x80000000u;
  expect(prepared_ok(get(a, {1}), a) && calls == 4, "a change of the first word prepares afresh");
  expect(cache.entries() == 2 && cache.bytes() == 2 * entry_bytes, "at most two entries fit");
  expect(prepared_ok(get(b, {1}), b) && calls == 5 && cache.entries() == 2, "the least recent entry leaves");
  expect(prepared_ok(get(a, {1}), a) && calls == 5, "the most recent entries stay");
  std::vector<uint32_t> big(3000);
  for (auto& v : big) v = rng();
  expect(prepared_ok(get(big, {1}), big) && calls == 6 && cache.entries() == 2, "oversized weights are not kept");
  expect(prepared_ok(get(big, {1}), big) && calls == 7, "oversized weights are prepared at each use");
  std::vector<uint32_t> a_copy = a;  // the same words at another address
  expect(prepared_ok(get(a_copy, {1}), a_copy) && calls == 8, "another address prepares afresh");
  std::printf("%s: prepared cache, %d failures\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
