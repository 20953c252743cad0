// AVX2 and AVX-512 value kernels of the CPU epilogue: one template over the vector width,
// each step one vector instruction that rounds like the scalar step of epilogue_value()
// (the file is compiled with -ffp-contract=off, so mul and add are never fused). Columns
// past the last whole vector run through epilogue_value() itself. The bits kernels compare
// a vector of y with the thresholds (ordered >=) and gather the lane mask into the word.
#include "gemm/epilogue_simd.h"

#include "common/avx512.h"

#ifdef BNN_HAVE_AVX512_INTRINSICS
// The template's vector returns are inlined into the target functions (no ABI crossing), and
// GCC 12's _mm512_cvtepi32_ps starts from an "undefined" register it then warns about.
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define BNN_HAVE_EPILOGUE_SIMD 1
#endif

namespace bnn::cpu {

#ifdef BNN_HAVE_EPILOGUE_SIMD
namespace {

#define BNN_AVX2 __attribute__((target("avx2")))
#define BNN_AVX512 BNN_TARGET_AVX512F

struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  BNN_AVX2 static V cvt(const int32_t* p) {
    return _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  BNN_AVX2 static V load(const float* p) { return _mm256_loadu_ps(p); }
  BNN_AVX2 static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  BNN_AVX2 static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  BNN_AVX2 static V add(V a, V b) { return _mm256_add_ps(a, b); }
  // t > 0 ? t : neg (ordered compare: NaN takes neg, as in the scalar form)
  BNN_AVX2 static V select_positive(V t, V neg) {
    return _mm256_blendv_ps(neg, t, _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GT_OQ));
  }
  // lane l of the result = (y[l] >= t[l]), ordered (NaN: 0)
  BNN_AVX2 static uint32_t ge_mask(const float* y, const float* t) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(load(y), load(t), _CMP_GE_OQ)));
  }
};

struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  BNN_AVX512 static V cvt(const int32_t* p) { return _mm512_cvtepi32_ps(_mm512_loadu_si512(p)); }
  BNN_AVX512 static V load(const float* p) { return _mm512_loadu_ps(p); }
  BNN_AVX512 static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  BNN_AVX512 static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  BNN_AVX512 static V add(V a, V b) { return _mm512_add_ps(a, b); }
  BNN_AVX512 static V select_positive(V t, V neg) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_GT_OQ), neg, t);
  }
  BNN_AVX512 static uint32_t ge_mask(const float* y, const float* t) {
    return static_cast<uint32_t>(_mm512_cmp_ps_mask(load(y), load(t), _CMP_GE_OQ));
  }
};

template <class S>
__attribute__((always_inline)) inline void values(const Epilogue& e, int64_t m, int64_t n0, int64_t len,
                                                  const int32_t* acc, float* y) {
  const float* res = e.residual ? e.residual + m * e.residual_ld + n0 : nullptr;
  int64_t j = 0;
  for (; j + S::kLanes <= len; j += S::kLanes) {
    const int64_t n = n0 + j;
    typename S::V v = S::cvt(acc + j);
    if (e.multiplier) v = S::mul(v, S::load(e.multiplier + n));
    if (e.bias) v = S::add(v, S::load(e.bias + n));
    if (res) v = S::add(v, S::load(res + j));
    if (e.act_slope) {
      typename S::V t = e.act_shift_in ? S::add(v, S::load(e.act_shift_in + n)) : v;
      t = S::select_positive(t, S::mul(S::load(e.act_slope + n), t));
      v = e.act_shift_out ? S::add(t, S::load(e.act_shift_out + n)) : t;
    }
    S::store(y + j, v);
  }
  for (; j < len; ++j) y[j] = epilogue_value(e, m, n0 + j, acc[j]);
}

// Whole words by vector compares and lane masks (32 / kLanes per word), the partial last word
// by threshold_word().
template <class S>
__attribute__((always_inline)) inline void bits(const float* y, const float* thr, int64_t len, int32_t* o) {
  int64_t w = 0;
  for (; (w + 1) * 32 <= len; ++w) {
    uint32_t word = 0;
    for (int l = 0; l < 32; l += S::kLanes) word |= S::ge_mask(y + w * 32 + l, thr + w * 32 + l) << l;
    o[w] = static_cast<int32_t>(word);
  }
  if (w * 32 < len) o[w] = threshold_word(y + w * 32, thr + w * 32, len - w * 32);
}

template <class S>
__attribute__((always_inline)) inline void rows(const Epilogue& e, int64_t m0, int64_t nrows, int64_t n0, int64_t len,
                                                const int32_t* acc, int64_t acc_ld, float* y, int64_t y_ld,
                                                const float* thr, int32_t* o, int64_t o_ld) {
  for (int64_t r = 0; r < nrows; ++r) {
    values<S>(e, m0 + r, n0, len, acc + r * acc_ld, y + r * y_ld);
    if (o) bits<S>(y + r * y_ld, thr, len, o + r * o_ld);
  }
}

BNN_AVX2 void bits_avx2(const float* y, const float* thr, int64_t len, int32_t* o) { bits<Avx2>(y, thr, len, o); }

BNN_AVX512 void bits_avx512(const float* y, const float* thr, int64_t len, int32_t* o) { bits<Avx512>(y, thr, len, o); }

BNN_AVX2 void values_avx2(const Epilogue& e, int64_t m, int64_t n0, int64_t len, const int32_t* acc, float* y) {
  values<Avx2>(e, m, n0, len, acc, y);
}

BNN_AVX512 void values_avx512(const Epilogue& e, int64_t m, int64_t n0, int64_t len, const int32_t* acc, float* y) {
  values<Avx512>(e, m, n0, len, acc, y);
}

BNN_AVX2 void rows_avx2(const Epilogue& e, int64_t m0, int64_t nrows, int64_t n0, int64_t len, const int32_t* acc,
                        int64_t acc_ld, float* y, int64_t y_ld, const float* thr, int32_t* o, int64_t o_ld) {
  rows<Avx2>(e, m0, nrows, n0, len, acc, acc_ld, y, y_ld, thr, o, o_ld);
}

BNN_AVX512 void rows_avx512(const Epilogue& e, int64_t m0, int64_t nrows, int64_t n0, int64_t len, const int32_t* acc,
                            int64_t acc_ld, float* y, int64_t y_ld, const float* thr, int32_t* o, int64_t o_ld) {
  rows<Avx512>(e, m0, nrows, n0, len, acc, acc_ld, y, y_ld, thr, o, o_ld);
}

}  // namespace

const ValuesFn epilogue_values_avx2 = values_avx2;
const ValuesFn epilogue_values_avx512 = values_avx512;
const BitsFn epilogue_bits_avx2 = bits_avx2;
const BitsFn epilogue_bits_avx512 = bits_avx512;
const RowsFn epilogue_rows_avx2 = rows_avx2;
const RowsFn epilogue_rows_avx512 = rows_avx512;
#else
const ValuesFn epilogue_values_avx2 = nullptr;
const ValuesFn epilogue_values_avx512 = nullptr;
const BitsFn epilogue_bits_avx2 = nullptr;
const BitsFn epilogue_bits_avx512 = nullptr;
const RowsFn epilogue_rows_avx2 = nullptr;
const RowsFn epilogue_rows_avx512 = nullptr;
#endif

}  // namespace bnn::cpu
