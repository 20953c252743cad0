#include "pack/pack.h"

#include <cstring>
#include <type_traits>

#include "common/bits.h"
#include "pack/pack_simd.h"

namespace bnn::cpu {

template <typename T, typename Thr>
void pack_bits(const T* x, int64_t rows, int64_t k, const Thr* thr, int64_t thr_stride, int32_t* out, int num_threads) {
  if constexpr (std::is_same_v<T, float> && std::is_same_v<Thr, float>) {
    if (pack_bits_f32_simd(x, rows, k, thr, thr_stride, out, num_threads)) return;
  }
  const int64_t words = words_for_bits(k);
#pragma omp parallel for num_threads(sane_threads(num_threads)) schedule(static) if (rows * k > (1 << 20))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * k;
    int32_t* o = out + r * words;
    for (int64_t w = 0; w < words; ++w) {
      const int64_t c0 = w * 32;
      const int n = static_cast<int>(k - c0 < 32 ? k - c0 : 32);
      uint32_t word = 0;
      if (thr_stride == 0) {
        const Thr t = thr[0];
        for (int j = 0; j < n; ++j) word |= static_cast<uint32_t>(static_cast<Thr>(xr[c0 + j]) >= t) << j;
      } else {
        for (int j = 0; j < n; ++j) word |= static_cast<uint32_t>(static_cast<Thr>(xr[c0 + j]) >= thr[c0 + j]) << j;
      }
      o[w] = static_cast<int32_t>(word);
    }
  }
}

#define BNN_PACK_INST(T, Thr) \
  template void pack_bits<T, Thr>(const T*, int64_t, int64_t, const Thr*, int64_t, int32_t*, int);
BNN_PACK_INST(float, float)
BNN_PACK_INST(double, double)
BNN_PACK_INST(int8_t, double)
BNN_PACK_INST(uint8_t, double)
BNN_PACK_INST(int16_t, double)
BNN_PACK_INST(int32_t, double)
BNN_PACK_INST(int64_t, double)
#undef BNN_PACK_INST

namespace {
template <typename E>
void unpack_typed(const int32_t* bits, int64_t rows, int64_t k, E plus, E minus, E* out, int num_threads) {
  const int64_t words = words_for_bits(k);
#pragma omp parallel for num_threads(sane_threads(num_threads)) schedule(static) if (rows * k > (1 << 20))
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t* b = reinterpret_cast<const uint32_t*>(bits) + r * words;
    E* o = out + r * k;
    for (int64_t c = 0; c < k; ++c) o[c] = ((b[c >> 5] >> (c & 31)) & 1u) ? plus : minus;
  }
}
}  // namespace

void unpack_bits(const int32_t* bits, int64_t rows, int64_t k, int elem_bytes, uint64_t plus, uint64_t minus, void* out,
                 int num_threads) {
  switch (elem_bytes) {
    case 1:
      unpack_typed<uint8_t>(bits, rows, k, uint8_t(plus), uint8_t(minus), static_cast<uint8_t*>(out), num_threads);
      break;
    case 2:
      unpack_typed<uint16_t>(bits, rows, k, uint16_t(plus), uint16_t(minus), static_cast<uint16_t*>(out), num_threads);
      break;
    case 4:
      unpack_typed<uint32_t>(bits, rows, k, uint32_t(plus), uint32_t(minus), static_cast<uint32_t*>(out), num_threads);
      break;
    default:
      unpack_typed<uint64_t>(bits, rows, k, plus, minus, static_cast<uint64_t*>(out), num_threads);
      break;
  }
}

int64_t to_bitplanes(const int64_t* q, int64_t rows, int64_t k, int nbits, bool is_signed, int32_t* out,
                     int num_threads) {
  const int64_t lo = is_signed ? -(int64_t(1) << (nbits - 1)) : 0;
  const int64_t hi = is_signed ? (int64_t(1) << (nbits - 1)) - 1 : (int64_t(1) << nbits) - 1;
  const int64_t n = rows * k;
  int64_t first_bad = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (q[i] < lo || q[i] > hi) {
      first_bad = i;
      break;
    }
  }
  if (first_bad >= 0) return first_bad;
  const int64_t words = words_for_bits(k);
  const int64_t plane = rows * words;
#pragma omp parallel for num_threads(sane_threads(num_threads)) schedule(static) if (n > (1 << 20))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t* qr = q + r * k;
    for (int64_t w = 0; w < words; ++w) {
      const int64_t c0 = w * 32;
      const int cnt = static_cast<int>(k - c0 < 32 ? k - c0 : 32);
      uint32_t acc[32] = {0};
      for (int j = 0; j < cnt; ++j) {
        const uint64_t v = static_cast<uint64_t>(qr[c0 + j]);
        for (int p = 0; p < nbits; ++p) acc[p] |= static_cast<uint32_t>((v >> p) & 1u) << j;
      }
      for (int p = 0; p < nbits; ++p) out[p * plane + r * words + w] = static_cast<int32_t>(acc[p]);
    }
  }
  return -1;
}

}  // namespace bnn::cpu
