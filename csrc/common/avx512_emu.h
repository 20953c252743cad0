// A portable emulation of the AVX-512 intrinsics the kernels use (included by common/avx512.h in
// a build with BNN_EMULATE_AVX512 only): each intrinsic is a loop over its lanes that follows
// the operation's pseudo-code in Intel's Intrinsics Guide, and the _mm512_* names and the
// __m512i / __m512 types are redefined to these functions and structs after <immintrin.h>.
//
// It is as strict as the hardware where a kernel bug would show:
// - masked loads read, and masked stores write, only the lanes their mask enables (a real CPU
//   suppresses faults there too), so a wrong mask changes results here as it does there;
// - _mm512_store_si512 aborts on an address that is not 64-byte aligned, where a real CPU
//   raises a general-protection fault;
// - _mm512_reduce_add_ps adds in GCC's order (halves, then quarters, then pairs), so float
//   results match the native build bit for bit;
// - comparisons follow each _CMP_* predicate's NaN rule (ordered: false, unordered: true).
// An intrinsic the kernels start using must be added here; until then the emulated build
// fails to compile (the name is then the compiler's AVX-512 function, which needs a target
// the emulated functions do not have).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace bnn::avx512_emu {

struct M512i {
  uint32_t u[16];
};
struct M512 {
  float f[16];
};

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "bnn_kernels AVX-512 emulation: %s\n", what);
  std::abort();
}

inline bool on(unsigned k, int i) { return (k >> i) & 1u; }
inline uint64_t lane64(const M512i& a, int i) { return uint64_t(a.u[2 * i]) | (uint64_t(a.u[2 * i + 1]) << 32); }
inline void set_lane64(M512i& a, int i, uint64_t v) {
  a.u[2 * i] = static_cast<uint32_t>(v);
  a.u[2 * i + 1] = static_cast<uint32_t>(v >> 32);
}

// Integer lanes, elementwise.
template <class F>
inline M512i map32(const M512i& a, const M512i& b, F f) {
  M512i r;
  for (int i = 0; i < 16; ++i) r.u[i] = f(a.u[i], b.u[i]);
  return r;
}
inline M512i setzero_si512() { return M512i{}; }
inline M512i set1_epi32(int v) {
  M512i r;
  for (uint32_t& x : r.u) x = static_cast<uint32_t>(v);
  return r;
}
inline M512i set1_epi64(long long v) {
  M512i r;
  for (int i = 0; i < 8; ++i) set_lane64(r, i, static_cast<uint64_t>(v));
  return r;
}
inline M512i setr_epi32(int e0, int e1, int e2, int e3, int e4, int e5, int e6, int e7, int e8, int e9, int e10,
                        int e11, int e12, int e13, int e14, int e15) {
  const int e[16] = {e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15};
  M512i r;
  for (int i = 0; i < 16; ++i) r.u[i] = static_cast<uint32_t>(e[i]);
  return r;
}
inline M512i mask_set1_epi32(const M512i& src, unsigned short k, int v) {
  M512i r = src;
  for (int i = 0; i < 16; ++i)
    if (on(k, i)) r.u[i] = static_cast<uint32_t>(v);
  return r;
}
inline M512i xor_si512(const M512i& a, const M512i& b) {
  return map32(a, b, [](uint32_t x, uint32_t y) { return x ^ y; });
}
inline M512i and_si512(const M512i& a, const M512i& b) {
  return map32(a, b, [](uint32_t x, uint32_t y) { return x & y; });
}
inline M512i add_epi32(const M512i& a, const M512i& b) {
  return map32(a, b, [](uint32_t x, uint32_t y) { return x + y; });
}
inline M512i sub_epi32(const M512i& a, const M512i& b) {
  return map32(a, b, [](uint32_t x, uint32_t y) { return x - y; });
}
// the low 32 bits of each lane's product
inline M512i mullo_epi32(const M512i& a, const M512i& b) {
  return map32(a, b, [](uint32_t x, uint32_t y) { return x * y; });
}
inline M512i add_epi64(const M512i& a, const M512i& b) {
  M512i r;
  for (int i = 0; i < 8; ++i) set_lane64(r, i, lane64(a, i) + lane64(b, i));
  return r;
}
inline M512i popcnt_epi32(const M512i& a) {
  M512i r;
  for (int i = 0; i < 16; ++i) r.u[i] = static_cast<uint32_t>(__builtin_popcount(a.u[i]));
  return r;
}
inline M512i popcnt_epi64(const M512i& a) {
  M512i r;
  for (int i = 0; i < 8; ++i) set_lane64(r, i, static_cast<uint64_t>(__builtin_popcountll(lane64(a, i))));
  return r;
}
// lane i = (idx[i] & 16 ? b : a)[idx[i] & 15]
inline M512i permutex2var_epi32(const M512i& a, const M512i& idx, const M512i& b) {
  M512i r;
  for (int i = 0; i < 16; ++i) r.u[i] = (idx.u[i] & 16u ? b : a).u[idx.u[i] & 15u];
  return r;
}
// lanes 0-7: the low 32 bits of a's 64-bit lane i where k enables it, else src's lane i
__attribute__((always_inline, target("avx2"))) inline __m256i mask_cvtepi64_epi32(__m256i src, unsigned char k,
                                                                                  const M512i& a) {
  uint32_t lanes[8];
  std::memcpy(lanes, &src, sizeof lanes);
  for (int i = 0; i < 8; ++i)
    if (on(k, i)) lanes[i] = static_cast<uint32_t>(lane64(a, i));
  __m256i r;
  std::memcpy(&r, lanes, sizeof lanes);
  return r;
}

// Integer memory.
inline M512i loadu_si512(const void* p) {
  M512i r;
  std::memcpy(r.u, p, sizeof r.u);
  return r;
}
inline void storeu_si512(void* p, const M512i& a) { std::memcpy(p, a.u, sizeof a.u); }
inline void store_si512(void* p, const M512i& a) {
  if (reinterpret_cast<uintptr_t>(p) % 64 != 0) fail("_mm512_store_si512 to an address not 64-byte aligned");
  storeu_si512(p, a);
}
// The 4-byte lanes of src that k enables, copied to dst's (its other lanes untouched): the
// masked loads and stores, which touch no disabled lane.
inline void copy_lanes(unsigned short k, const void* src, void* dst) {
  for (int i = 0; i < 16; ++i)
    if (on(k, i)) std::memcpy(static_cast<char*>(dst) + 4 * i, static_cast<const char*>(src) + 4 * i, 4);
}
inline M512i maskz_loadu_epi32(unsigned short k, const void* p) {
  M512i r{};
  copy_lanes(k, p, r.u);
  return r;
}
inline void mask_storeu_epi32(void* p, unsigned short k, const M512i& a) { copy_lanes(k, a.u, p); }

// Float lanes (each operation rounded on its own: the project builds with -ffp-contract=off).
inline M512 setzero_ps() { return M512{}; }
inline M512 set1_ps(float v) {
  M512 r;
  for (float& x : r.f) x = v;
  return r;
}
inline M512 loadu_ps(const float* p) {
  M512 r;
  std::memcpy(r.f, p, sizeof r.f);
  return r;
}
inline void storeu_ps(float* p, const M512& a) { std::memcpy(p, a.f, sizeof a.f); }
inline void mask_storeu_ps(float* p, unsigned short k, const M512& a) { copy_lanes(k, a.f, p); }
inline M512 maskz_loadu_ps(unsigned short k, const float* p) {
  M512 r{};
  copy_lanes(k, p, r.f);
  return r;
}
inline M512 cvtepi32_ps(const M512i& a) {
  M512 r;
  for (int i = 0; i < 16; ++i) r.f[i] = static_cast<float>(static_cast<int32_t>(a.u[i]));
  return r;
}
inline M512 add_ps(const M512& a, const M512& b) {
  M512 r;
  for (int i = 0; i < 16; ++i) r.f[i] = a.f[i] + b.f[i];
  return r;
}
inline M512 mul_ps(const M512& a, const M512& b) {
  M512 r;
  for (int i = 0; i < 16; ++i) r.f[i] = a.f[i] * b.f[i];
  return r;
}
// a * b + c with one rounding (fused), as VFMADD does
inline M512 fmadd_ps(const M512& a, const M512& b, const M512& c) {
  M512 r;
  for (int i = 0; i < 16; ++i) r.f[i] = std::fma(a.f[i], b.f[i], c.f[i]);
  return r;
}
// lane i = k enables it ? a[i] + b[i] : src[i]
inline M512 mask_add_ps(const M512& src, unsigned short k, const M512& a, const M512& b) {
  M512 r = src;
  for (int i = 0; i < 16; ++i)
    if (on(k, i)) r.f[i] = a.f[i] + b.f[i];
  return r;
}
// lane i = k enables it ? b[i] : a[i]
inline M512 mask_blend_ps(unsigned short k, const M512& a, const M512& b) {
  M512 r;
  for (int i = 0; i < 16; ++i) r.f[i] = on(k, i) ? b.f[i] : a.f[i];
  return r;
}
// Every predicate _CMP_*: its low 4 bits pick the relation (bit 4 only chooses whether a NaN
// signals, which changes no result); an ordered relation is false, an unordered one true, when
// either side is NaN.
inline bool compare(float a, float b, int predicate) {
  const bool un = a != a || b != b;
  const bool lt = a < b;
  const bool eq = a == b;
  const bool gt = a > b;
  // by predicate & 15: EQ_O, LT_O, LE_O, UNORD, NEQ_U, NLT_U, NLE_U, ORD,
  //                    EQ_U, NGE_U, NGT_U, FALSE, NEQ_O, GE_O, GT_O, TRUE
  const bool relation[16] = {eq,       lt,       lt || eq,       un,    !eq,        !lt,      !lt && !eq, !un,
                             un || eq, un || lt, un || lt || eq, false, !un && !eq, gt || eq, gt,         true};
  return relation[predicate & 15];
}
inline unsigned short cmp_ps_mask(const M512& a, const M512& b, int predicate) {
  unsigned short k = 0;
  for (int i = 0; i < 16; ++i) k = static_cast<unsigned short>(k | (unsigned(compare(a.f[i], b.f[i], predicate)) << i));
  return k;
}
// GCC's order: the two 256-bit halves, then their 128-bit halves, then lanes 0+2 and 1+3.
inline float reduce_add_ps(const M512& a) {
  float h[8], q[4];
  for (int i = 0; i < 8; ++i) h[i] = a.f[8 + i] + a.f[i];
  for (int i = 0; i < 4; ++i) q[i] = h[4 + i] + h[i];
  return (q[0] + q[2]) + (q[1] + q[3]);
}

}  // namespace bnn::avx512_emu

// The intrinsics' names, after <immintrin.h> (some of them are macros there).
#undef __m512i
#undef __m512
#define __m512i ::bnn::avx512_emu::M512i
#define __m512 ::bnn::avx512_emu::M512
#undef _mm512_setzero_si512
#define _mm512_setzero_si512 ::bnn::avx512_emu::setzero_si512
#undef _mm512_set1_epi32
#define _mm512_set1_epi32 ::bnn::avx512_emu::set1_epi32
#undef _mm512_set1_epi64
#define _mm512_set1_epi64 ::bnn::avx512_emu::set1_epi64
#undef _mm512_setr_epi32
#define _mm512_setr_epi32 ::bnn::avx512_emu::setr_epi32
#undef _mm512_mask_set1_epi32
#define _mm512_mask_set1_epi32 ::bnn::avx512_emu::mask_set1_epi32
#undef _mm512_xor_si512
#define _mm512_xor_si512 ::bnn::avx512_emu::xor_si512
#undef _mm512_and_si512
#define _mm512_and_si512 ::bnn::avx512_emu::and_si512
#undef _mm512_add_epi32
#define _mm512_add_epi32 ::bnn::avx512_emu::add_epi32
#undef _mm512_sub_epi32
#define _mm512_sub_epi32 ::bnn::avx512_emu::sub_epi32
#undef _mm512_mullo_epi32
#define _mm512_mullo_epi32 ::bnn::avx512_emu::mullo_epi32
#undef _mm512_add_epi64
#define _mm512_add_epi64 ::bnn::avx512_emu::add_epi64
#undef _mm512_popcnt_epi32
#define _mm512_popcnt_epi32 ::bnn::avx512_emu::popcnt_epi32
#undef _mm512_popcnt_epi64
#define _mm512_popcnt_epi64 ::bnn::avx512_emu::popcnt_epi64
#undef _mm512_permutex2var_epi32
#define _mm512_permutex2var_epi32 ::bnn::avx512_emu::permutex2var_epi32
#undef _mm512_mask_cvtepi64_epi32
#define _mm512_mask_cvtepi64_epi32 ::bnn::avx512_emu::mask_cvtepi64_epi32
#undef _mm512_loadu_si512
#define _mm512_loadu_si512 ::bnn::avx512_emu::loadu_si512
#undef _mm512_storeu_si512
#define _mm512_storeu_si512 ::bnn::avx512_emu::storeu_si512
#undef _mm512_store_si512
#define _mm512_store_si512 ::bnn::avx512_emu::store_si512
#undef _mm512_maskz_loadu_epi32
#define _mm512_maskz_loadu_epi32 ::bnn::avx512_emu::maskz_loadu_epi32
#undef _mm512_mask_storeu_epi32
#define _mm512_mask_storeu_epi32 ::bnn::avx512_emu::mask_storeu_epi32
#undef _mm512_setzero_ps
#define _mm512_setzero_ps ::bnn::avx512_emu::setzero_ps
#undef _mm512_set1_ps
#define _mm512_set1_ps ::bnn::avx512_emu::set1_ps
#undef _mm512_loadu_ps
#define _mm512_loadu_ps ::bnn::avx512_emu::loadu_ps
#undef _mm512_storeu_ps
#define _mm512_storeu_ps ::bnn::avx512_emu::storeu_ps
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps ::bnn::avx512_emu::mask_storeu_ps
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps ::bnn::avx512_emu::fmadd_ps
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps ::bnn::avx512_emu::maskz_loadu_ps
#undef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps ::bnn::avx512_emu::cvtepi32_ps
#undef _mm512_add_ps
#define _mm512_add_ps ::bnn::avx512_emu::add_ps
#undef _mm512_mul_ps
#define _mm512_mul_ps ::bnn::avx512_emu::mul_ps
#undef _mm512_mask_add_ps
#define _mm512_mask_add_ps ::bnn::avx512_emu::mask_add_ps
#undef _mm512_mask_blend_ps
#define _mm512_mask_blend_ps ::bnn::avx512_emu::mask_blend_ps
#undef _mm512_cmp_ps_mask
#define _mm512_cmp_ps_mask ::bnn::avx512_emu::cmp_ps_mask
#undef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps ::bnn::avx512_emu::reduce_add_ps
