// C++ unit test of the AVX-512 emulation (common/avx512_emu.h) that `make test-avx512-emu` runs
// the AVX-512 kernels on: each emulated intrinsic against values worked out from the Intrinsics
// Guide's pseudo-code, the strict parts (masked loads that read no disabled lane, masked
// stores that write none, the aligned store's fault), and, on a CPU with AVX-512 VPOPCNTDQ,
// against the hardware on random inputs. Run by ctest.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>

#include <immintrin.h>

#include "tests/expect.h"

// GCC 12 warns about _mm*_undefined_* inside its own AVX-512 headers (a false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

using bnn::test::expect;
using bnn::test::failures;

// The hardware's results, for the comparison on a CPU that has AVX-512 (compiled before the
// emulation's names replace the intrinsics' below).
struct Native {
  uint32_t popc32[16], popc64[16], perm[16], cvt[8], cmp[32], loadz[16];
  float reduce, fma[16], stored[16];
};
template <int... P>
__attribute__((target("avx512f"))) void native_compares(__m512 f, __m512 g, uint32_t* out,
                                                        std::integer_sequence<int, P...>) {
  ((out[P] = _mm512_cmp_ps_mask(f, g, P)), ...);
}
__attribute__((target("avx512f,avx512vpopcntdq"))) Native native(const uint32_t* a, const uint32_t* b, const float* f,
                                                                 const float* g, unsigned short k) {
  Native n;
  const __m512i va = _mm512_loadu_si512(a), vb = _mm512_loadu_si512(b);
  _mm512_storeu_si512(n.popc32, _mm512_popcnt_epi32(va));
  _mm512_storeu_si512(n.popc64, _mm512_popcnt_epi64(va));
  _mm512_storeu_si512(n.perm, _mm512_permutex2var_epi32(va, vb, _mm512_set1_epi32(0)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(n.cvt),
                      _mm512_mask_cvtepi64_epi32(_mm256_set1_epi32(7), static_cast<__mmask8>(k), va));
  native_compares(_mm512_loadu_ps(f), _mm512_loadu_ps(g), n.cmp, std::make_integer_sequence<int, 32>());
  _mm512_storeu_si512(n.loadz, _mm512_maskz_loadu_epi32(k, a));
  n.reduce = _mm512_reduce_add_ps(_mm512_loadu_ps(f));
  _mm512_storeu_ps(n.fma, _mm512_fmadd_ps(_mm512_loadu_ps(f), _mm512_loadu_ps(g), _mm512_loadu_ps(g)));
  std::memcpy(n.stored, g, sizeof n.stored);
  _mm512_mask_storeu_ps(n.stored, k, _mm512_loadu_ps(f));
  return n;
}

}  // namespace

#define BNN_EMULATE_AVX512 1
#include "common/avx512.h"

namespace {

using bnn::avx512_emu::M512;
using bnn::avx512_emu::M512i;

M512i vec(const uint32_t* p) { return _mm512_loadu_si512(p); }

// (the emulated kernels run where AVX2 does: their 256-bit intrinsics stay native)
__attribute__((target("avx2"))) void test_lanes() {
  uint32_t a[16], b[16], out[16];
  for (int i = 0; i < 16; ++i) a[i] = 0x01010101u * i + 0xF0000000u, b[i] = 3u * i + 1;
  _mm512_storeu_si512(out, _mm512_popcnt_epi32(vec(a)));
  for (int i = 0; i < 16; ++i) expect(out[i] == uint32_t(__builtin_popcount(a[i])), "popcnt_epi32 lane");
  uint64_t q[8];
  _mm512_storeu_si512(q, _mm512_popcnt_epi64(vec(a)));
  for (int i = 0; i < 8; ++i)
    expect(q[i] == uint64_t(__builtin_popcount(a[2 * i]) + __builtin_popcount(a[2 * i + 1])), "popcnt_epi64 lane");
  _mm512_storeu_si512(out, _mm512_mullo_epi32(_mm512_set1_epi32(0x10001), _mm512_set1_epi32(0x30003)));
  expect(out[5] == 0x60003u, "mullo_epi32 keeps the low 32 bits");
  // index bit 4 picks b, bits 0-3 the lane: the even lanes of a then of b
  const M512i low = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  _mm512_storeu_si512(out, _mm512_permutex2var_epi32(vec(a), low, vec(b)));
  for (int i = 0; i < 16; ++i) expect(out[i] == (i < 8 ? a[2 * i] : b[2 * (i - 8)]), "permutex2var_epi32 lane");
  uint32_t c[8];
  const M512i wide = _mm512_set1_epi64(0x123456789LL);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), _mm512_mask_cvtepi64_epi32(_mm256_set1_epi32(7), 0x0F, wide));
  for (int i = 0; i < 8; ++i) expect(c[i] == (i < 4 ? 0x23456789u : 7u), "mask_cvtepi64_epi32 truncates, keeps src");
  _mm512_storeu_si512(out, _mm512_mask_set1_epi32(vec(a), 0x8001, 9));
  for (int i = 0; i < 16; ++i) expect(out[i] == (i == 0 || i == 15 ? 9u : a[i]), "mask_set1_epi32 lane");
  // 64-bit lanes carry across their 32-bit halves; 32-bit lanes wrap on their own
  _mm512_storeu_si512(q, _mm512_add_epi64(_mm512_set1_epi64(0xFFFFFFFFLL), _mm512_set1_epi64(1)));
  for (int i = 0; i < 8; ++i) expect(q[i] == 0x100000000ull, "add_epi64 carries into the high half");
  _mm512_storeu_si512(out, _mm512_add_epi32(_mm512_set1_epi32(-1), _mm512_set1_epi32(2)));
  expect(out[0] == 1u && out[1] == 1u, "add_epi32 wraps per lane");
  _mm512_storeu_si512(out, _mm512_sub_epi32(vec(b), vec(a)));
  for (int i = 0; i < 16; ++i) expect(out[i] == b[i] - a[i], "sub_epi32 lane");
  _mm512_storeu_si512(out, _mm512_xor_si512(vec(a), vec(b)));
  for (int i = 0; i < 16; ++i) expect(out[i] == (a[i] ^ b[i]), "xor_si512 lane");
  _mm512_storeu_si512(out, _mm512_and_si512(vec(a), vec(b)));
  for (int i = 0; i < 16; ++i) expect(out[i] == (a[i] & b[i]), "and_si512 lane");
  _mm512_storeu_si512(out, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  for (int i = 0; i < 16; ++i) expect(out[i] == uint32_t(i), "setr_epi32 puts its first argument in lane 0");
}

void test_float() {
  float f[16] = {}, out[16];
  f[0] = 16777216.f, f[8] = 1.f, f[12] = 1.f;  // 2^24: 2^24 + 1 rounds back to 2^24
  // GCC's order: (f0 + f8) = 2^24, then + (f4 + f12) = 2^24 + 1 -> 2^24; another order gives 2^24 + 2
  expect(_mm512_reduce_add_ps(_mm512_loadu_ps(f)) == 16777216.f, "reduce_add_ps in GCC's order");
  M512 x = _mm512_set1_ps(1.f), y = _mm512_set1_ps(1.f);
  x.f[3] = NAN, y.f[4] = NAN, x.f[5] = 2.f, y.f[6] = 2.f;
  const unsigned ge = _mm512_cmp_ps_mask(x, y, _CMP_GE_OQ), gt = _mm512_cmp_ps_mask(x, y, _CMP_GT_OQ);
  expect(ge == (0xFFFFu & ~0x58u), "cmp GE_OQ: NaN on either side is false");
  expect(gt == 0x20u, "cmp GT_OQ");
  // unordered predicates are true where a side is NaN (lanes 3, 4)
  expect(_mm512_cmp_ps_mask(x, y, _CMP_NLT_UQ) == (0xFFFFu & ~0x40u), "cmp NLT_UQ");
  expect(_mm512_cmp_ps_mask(x, y, _CMP_LT_OS) == 0x40u, "cmp LT_OS");
  expect(_mm512_cmp_ps_mask(x, y, _CMP_UNORD_Q) == 0x18u, "cmp UNORD_Q");
  expect(_mm512_cmp_ps_mask(x, y, _CMP_NEQ_OQ) == 0x60u, "cmp NEQ_OQ");
  expect(_mm512_cmp_ps_mask(x, y, _CMP_NGT_US) == (0xFFFFu & ~0x20u), "cmp NGT_US");
  expect(_mm512_cmp_ps_mask(x, y, _CMP_TRUE_UQ) == 0xFFFFu && _mm512_cmp_ps_mask(x, y, _CMP_FALSE_OS) == 0,
         "TRUE/FALSE");
  _mm512_storeu_ps(out, _mm512_mask_blend_ps(0x0002, _mm512_set1_ps(1.f), _mm512_set1_ps(2.f)));
  expect(out[0] == 1.f && out[1] == 2.f, "mask_blend_ps takes b where k is set");
  _mm512_storeu_ps(out, _mm512_mask_add_ps(_mm512_set1_ps(5.f), 0x0001, _mm512_set1_ps(1.f), _mm512_set1_ps(2.f)));
  expect(out[0] == 3.f && out[1] == 5.f, "mask_add_ps keeps src where k is clear");
  const float e = 1.f + 0x1p-12f;  // e * e = 1 + 2^-11 + 2^-24: the last term survives only when fused
  _mm512_storeu_ps(out, _mm512_fmadd_ps(_mm512_set1_ps(e), _mm512_set1_ps(e), _mm512_set1_ps(-(1.f + 0x1p-11f))));
  expect(out[0] == 0x1p-24f && out[15] == 0x1p-24f, "fmadd_ps rounds once");
  _mm512_storeu_ps(out, _mm512_cvtepi32_ps(_mm512_set1_epi32(16777217)));
  expect(out[0] == 16777216.f, "cvtepi32_ps rounds to nearest even");
}

// Two pages, the second inaccessible: 16 words that end at the boundary and `lanes` of them
// readable before it.
uint32_t* edge_of_page(long page, int lanes) {
  void* p = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  mprotect(static_cast<char*>(p) + page, page, PROT_NONE);
  return reinterpret_cast<uint32_t*>(static_cast<char*>(p) + page) - lanes;
}

// Exits 0 when f returns, the signal number when it dies from one.
template <class F>
int dies_with(F f) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (!std::freopen("/dev/null", "w", stderr)) _exit(2);  // the emulation's message is expected
    f();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

void test_memory() {
  const long page = sysconf(_SC_PAGESIZE);
  uint32_t* p = edge_of_page(page, 5);  // lanes 5-15 would fault
  expect(p != nullptr, "mmap");
  if (!p) return;
  for (int i = 0; i < 5; ++i) p[i] = 100 + i;
  uint32_t out[16];
  expect(dies_with([&] { _mm512_storeu_si512(out, _mm512_maskz_loadu_epi32(0x001F, p)); }) == 0,
         "maskz_loadu_epi32 reads no disabled lane");
  _mm512_storeu_si512(out, _mm512_maskz_loadu_epi32(0x0015, p));
  for (int i = 0; i < 16; ++i) expect(out[i] == (i < 5 && i % 2 == 0 ? 100u + i : 0u), "maskz_loadu_epi32 lane");
  float* fp = reinterpret_cast<float*>(p);
  volatile float fsink = 0;
  volatile uint32_t sink = 0;
  expect(dies_with([&] { fsink = _mm512_maskz_loadu_ps(0x001F, fp).f[4]; }) == 0,
         "maskz_loadu_ps reads no disabled lane");
  expect(dies_with([&] { sink = _mm512_loadu_si512(p).u[15]; }) != 0, "an unmasked load past the page faults");
  expect(dies_with([&] { _mm512_mask_storeu_ps(fp, 0x001F, _mm512_set1_ps(1.f)); }) == 0,
         "mask_storeu_ps writes no disabled lane");
  float fkeep[16];
  for (int i = 0; i < 16; ++i) fkeep[i] = float(i);
  _mm512_mask_storeu_ps(fkeep, 0x8001, _mm512_set1_ps(-1.f));
  for (int i = 0; i < 16; ++i) expect(fkeep[i] == (i == 0 || i == 15 ? -1.f : float(i)), "mask_storeu_ps lane");
  expect(dies_with([&] { _mm512_mask_storeu_epi32(p, 0x001F, _mm512_set1_epi32(1)); }) == 0,
         "mask_storeu_epi32 writes no disabled lane");
  uint32_t keep[16];
  for (int i = 0; i < 16; ++i) keep[i] = 50 + i;
  _mm512_mask_storeu_epi32(keep, 0x0101, _mm512_set1_epi32(-1));
  for (int i = 0; i < 16; ++i) expect(keep[i] == (i == 0 || i == 8 ? 0xFFFFFFFFu : 50u + i), "mask_storeu lane");
  alignas(64) uint32_t buf[32];
  expect(dies_with([&] { _mm512_store_si512(buf, _mm512_setzero_si512()); }) == 0, "aligned store");
  expect(dies_with([&] { _mm512_store_si512(buf + 1, _mm512_setzero_si512()); }) != 0, "misaligned store faults");
}

__attribute__((target("avx2"))) void test_against_hardware() {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vpopcntdq")) {
    std::printf("no AVX-512 VPOPCNTDQ here: the comparison with the hardware is skipped\n");
    return;
  }
  std::mt19937 gen(7);
  for (int trial = 0; trial < 200; ++trial) {
    uint32_t a[16], b[16];
    float f[16], g[16];
    for (int i = 0; i < 16; ++i) {
      a[i] = gen(), b[i] = gen() % 64;
      f[i] = std::ldexp(static_cast<float>(int32_t(gen())), int(gen() % 40) - 50);
      g[i] = trial % 5 == 0 && i % 3 == 0 ? NAN : (gen() % 4 == 0 ? f[i] : -f[i]);
    }
    const auto k = static_cast<unsigned short>(gen());
    const Native n = native(a, b, f, g, k);
    uint32_t out[16];
    _mm512_storeu_si512(out, _mm512_popcnt_epi32(vec(a)));
    expect(std::memcmp(out, n.popc32, 64) == 0, "popcnt_epi32 = hardware");
    _mm512_storeu_si512(out, _mm512_popcnt_epi64(vec(a)));
    expect(std::memcmp(out, n.popc64, 64) == 0, "popcnt_epi64 = hardware");
    _mm512_storeu_si512(out, _mm512_permutex2var_epi32(vec(a), vec(b), _mm512_set1_epi32(0)));
    expect(std::memcmp(out, n.perm, 64) == 0, "permutex2var_epi32 = hardware");
    uint32_t c[8];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c),
                        _mm512_mask_cvtepi64_epi32(_mm256_set1_epi32(7), static_cast<unsigned char>(k), vec(a)));
    expect(std::memcmp(c, n.cvt, 32) == 0, "mask_cvtepi64_epi32 = hardware");
    for (int pred = 0; pred < 32; ++pred)
      expect(_mm512_cmp_ps_mask(_mm512_loadu_ps(f), _mm512_loadu_ps(g), pred) == n.cmp[pred],
             "cmp_ps_mask = hardware, predicate " + std::to_string(pred));
    _mm512_storeu_si512(out, _mm512_maskz_loadu_epi32(k, a));
    expect(std::memcmp(out, n.loadz, 64) == 0, "maskz_loadu_epi32 = hardware");
    const float r = _mm512_reduce_add_ps(_mm512_loadu_ps(f));
    expect(std::memcmp(&r, &n.reduce, 4) == 0, "reduce_add_ps = hardware, bit for bit");
    float fo[16];
    _mm512_storeu_ps(fo, _mm512_fmadd_ps(_mm512_loadu_ps(f), _mm512_loadu_ps(g), _mm512_loadu_ps(g)));
    for (int i = 0; i < 16; ++i)
      expect(std::memcmp(&fo[i], &n.fma[i], 4) == 0 || (fo[i] != fo[i] && n.fma[i] != n.fma[i]),
             "fmadd_ps = hardware, bit for bit (NaN payloads aside)");
    std::memcpy(fo, g, sizeof fo);
    _mm512_mask_storeu_ps(fo, k, _mm512_loadu_ps(f));
    expect(std::memcmp(fo, n.stored, 64) == 0, "mask_storeu_ps = hardware");
  }
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx2")) {
    std::printf("no AVX2 here: the emulation runs nowhere else, nothing to test\n");
    return 0;
  }
  test_lanes();
  test_float();
  test_memory();
  test_against_hardware();
  if (failures) {
    std::printf("%d failure(s)\n", failures);
    return 1;
  }
  std::printf("AVX-512 emulation: all checks passed\n");
  return 0;
}
