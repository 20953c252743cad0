// The fused epilogue on the CPU (see epilogue_cpu.h): a row is processed in chunks of
// kChunk columns (a multiple of 32, so each chunk packs whole bit words): y of the chunk is
// computed into a float buffer in L1 by the ISA's value kernel, then stored in the output
// dtype and/or thresholded and packed 32 channels per word (by the ISA's bits kernel: vector
// compares whose lane masks form the words).
#include "gemm/epilogue_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/bits.h"
#include "common/cpu_features.h"

namespace bnn::cpu {
namespace {

constexpr int64_t kChunk = 256;
static_assert(kChunk % 32 == 0, "a chunk packs whole bit words");

// y[j] = epilogue_value(e, m, n0 + j, acc[j]) for j < len: the definition itself.
void values_scalar(const Epilogue& e, int64_t m, int64_t n0, int64_t len, const int32_t* acc, float* y) {
  for (int64_t j = 0; j < len; ++j) y[j] = epilogue_value(e, m, n0 + j, acc[j]);
}

// Stores y[0, len) as columns [n0, n0 + len) of row m of a float16 / bfloat16 output
// (epilogue_block computes a float32 output in place).
void store_float(const Epilogue& e, int64_t m, int64_t n0, int64_t len, const float* y) {
  switch (e.out_dtype) {
    case OutDtype::Float16: {
      uint16_t* o = static_cast<uint16_t*>(e.out) + m * e.out_ld + n0;
      for (int64_t j = 0; j < len; ++j) o[j] = float_to_half_bits(y[j]);
      break;
    }
    case OutDtype::BFloat16: {
      uint16_t* o = static_cast<uint16_t*>(e.out) + m * e.out_ld + n0;
      for (int64_t j = 0; j < len; ++j) o[j] = float_to_bfloat16_bits(y[j]);
      break;
    }
    case OutDtype::Float32:  // written in place
    case OutDtype::Int32:    // no float output (bits only)
      break;
  }
}

// The scalar bits kernel (BitsFn, epilogue_simd.h): word by word through the definition.
void bits_scalar(const float* y, const float* thr, int64_t len, int32_t* o) {
  for (int64_t w = 0; w * 32 < len; ++w)
    o[w] = threshold_word(y + w * 32, thr + w * 32, std::min<int64_t>(32, len - w * 32));
}

// The scalar RowsFn: each row through values_scalar and bits_scalar.
void rows_scalar(const Epilogue& e, int64_t m0, int64_t rows, int64_t n0, int64_t len, const int32_t* acc,
                 int64_t acc_ld, float* y, int64_t y_ld, const float* thr, int32_t* o, int64_t o_ld) {
  for (int64_t r = 0; r < rows; ++r) {
    values_scalar(e, m0 + r, n0, len, acc + r * acc_ld, y + r * y_ld);
    if (o) bits_scalar(y + r * y_ld, thr, len, o + r * o_ld);
  }
}

// The bits and rows kernels of the ISA whose value kernel the caller picked (no second look at
// the CPU or BNN_KERNELS_CPU_ISA, so every step always runs on the same path).
struct StepKernels {
  BitsFn bits;
  RowsFn rows;
};

StepKernels kernels_for(ValuesFn values) {
  if (values == epilogue_values_avx512 && epilogue_bits_avx512) return {epilogue_bits_avx512, epilogue_rows_avx512};
  if (values == epilogue_values_avx2 && epilogue_bits_avx2) return {epilogue_bits_avx2, epilogue_rows_avx2};
  return {bits_scalar, rows_scalar};
}

}  // namespace

ValuesFn select_epilogue_values() {
  if (use_avx512() && epilogue_values_avx512) return epilogue_values_avx512;
  if (use_avx2() && epilogue_values_avx2) return epilogue_values_avx2;
  return values_scalar;
}

void epilogue_block(const Epilogue& e, ValuesFn values, const int32_t* acc, int64_t acc_ld, int64_t m0, int64_t rows,
                    int64_t n0, int64_t cols) {
  alignas(64) float buf[kChunk];
  const StepKernels steps = kernels_for(values);
  const BitsFn bits = e.bits_out ? steps.bits : nullptr;
  // float32 outputs take the values in place (the bits step then reads them from there), the
  // whole block of rows a chunk of columns at a time
  if (e.out && e.out_dtype == OutDtype::Float32) {
    float* const out32 = static_cast<float*>(e.out) + m0 * e.out_ld + n0;
    for (int64_t c = 0; c < cols; c += kChunk) {
      const int64_t len = std::min(kChunk, cols - c);
      // bit words (n0 + c)/32 ... of each row: bit j of a word = (y >= out_threshold) of its channel
      int32_t* const words = bits ? e.bits_out + m0 * e.bits_ld + (n0 + c) / 32 : nullptr;
      const float* const thr = bits ? e.out_threshold + n0 + c : nullptr;
      steps.rows(e, m0, rows, n0 + c, len, acc + c, acc_ld, out32 + c, e.out_ld, thr, words, e.bits_ld);
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t m = m0 + r;
    for (int64_t c = 0; c < cols; c += kChunk) {
      const int64_t len = std::min(kChunk, cols - c);
      values(e, m, n0 + c, len, acc + r * acc_ld + c, buf);
      if (e.out) store_float(e, m, n0 + c, len, buf);
      if (bits) bits(buf, e.out_threshold + n0 + c, len, e.bits_out + m * e.bits_ld + (n0 + c) / 32);
    }
  }
}

void epilogue_rows(const Epilogue& e, const int32_t* acc, int64_t acc_ld, int64_t m0, int64_t rows, int64_t n) {
  epilogue_block(e, select_epilogue_values(), acc, acc_ld, m0, rows, 0, n);
}

void apply_epilogue(const Epilogue& e, const int32_t* acc, int64_t acc_ld, int64_t M, int64_t n, int num_threads) {
  if (M <= 0 || n <= 0) return;
  const int nt = M * n < (int64_t(1) << 15) ? 1 : sane_threads(num_threads);
  const ValuesFn values = select_epilogue_values();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t m = 0; m < M; ++m) epilogue_block(e, values, acc + m * acc_ld, acc_ld, m, 1, 0, n);
}

const char* epilogue_isa() {
  const ValuesFn v = select_epilogue_values();
  return v == values_scalar ? "scalar" : v == epilogue_values_avx2 ? "avx2" : "avx512";
}

uint16_t float_to_half_bits(float f) {
  // Rounding to nearest even through float arithmetic (the FP16 library's method, which
  // c10::Half uses): scaling to the half range makes the float adder do the rounding.
  uint32_t w;
  std::memcpy(&w, &f, 4);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  if (shl1_w > 0xFF000000u) return static_cast<uint16_t>((sign >> 16) | 0x7E00u);  // NaN
  const float scale_to_inf = 0x1.0p+112f, scale_to_zero = 0x1.0p-110f;
  float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  const uint32_t bias_bits = (bias >> 1) + 0x07800000u;
  float bias_f;
  std::memcpy(&bias_f, &bias_bits, 4);
  base = bias_f + base;
  uint32_t bits;
  std::memcpy(&bits, &base, 4);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  return static_cast<uint16_t>((sign >> 16) | (exp_bits + mantissa_bits));
}

uint16_t float_to_bfloat16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace bnn::cpu
