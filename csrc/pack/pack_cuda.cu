// Packing kernels: one warp per 32-element word, built by __ballot_sync, so every load is
// coalesced across the warp and every word is written once by lane 0.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/cuda_common.cuh"
#include "pack/pack_cuda.h"

namespace bnn::cuda {
namespace {

// The comparison runs on convert_to<Thr>(x): the CPU converts half types to float32 (exact)
// and integers to float64 (round to nearest, as static_cast does on the host).
template <typename T, typename Thr, bool PerChannel>
__global__ void pack_bits_kernel(const T* __restrict__ x, int64_t rows, int64_t k, int64_t words,
                                 const Thr* __restrict__ thr, int32_t* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t total = rows * words;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  const Thr t0 = PerChannel ? Thr(0) : thr[0];
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; i < total; i += warps) {
    const int64_t r = i / words, w = i - r * words;
    const int64_t c = w * 32 + lane;
    bool bit = false;
    if (c < k) {
      const Thr v = convert_to<Thr>(x[r * k + c]);
      bit = v >= (PerChannel ? thr[c] : t0);  // NaN compares false: bit 0 (-1), as on the CPU
    }
    const uint32_t word = __ballot_sync(0xFFFFFFFFu, bit);
    if (lane == 0) out[i] = static_cast<int32_t>(word);
  }
}

template <typename T, typename Thr>
void pack_typed(const void* x, int64_t rows, int64_t k, const void* thr, int64_t thr_stride, int32_t* out,
                cudaStream_t stream) {
  const int64_t words = (k + 31) / 32;
  constexpr int kThreads = 256;
  const unsigned grid = grid_for(rows * words * 32, kThreads, 1 << 20);
  BOOL_SWITCH(thr_stride != 0, PerChannel, [&] {
    pack_bits_kernel<T, Thr, PerChannel>
        <<<grid, kThreads, 0, stream>>>(static_cast<const T*>(x), rows, k, words, static_cast<const Thr*>(thr), out);
  });
}

template <typename E>
__global__ void unpack_bits_kernel(const uint32_t* __restrict__ bits, int64_t rows, int64_t k, int64_t words, E plus,
                                   E minus, E* __restrict__ out) {
  const int64_t n = rows * k;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t r = i / k, c = i - r * k;
    out[i] = ((bits[r * words + (c >> 5)] >> (c & 31)) & 1u) ? plus : minus;
  }
}

template <typename E>
void unpack_typed(const int32_t* bits, int64_t rows, int64_t k, uint64_t plus, uint64_t minus, void* out,
                  cudaStream_t stream) {
  constexpr int kThreads = 256;
  const unsigned grid = grid_for(rows * k, kThreads, 1 << 20);
  unpack_bits_kernel<E><<<grid, kThreads, 0, stream>>>(reinterpret_cast<const uint32_t*>(bits), rows, k, (k + 31) / 32,
                                                       static_cast<E>(plus), static_cast<E>(minus),
                                                       static_cast<E*>(out));
}

__global__ void to_bitplanes_kernel(const int64_t* __restrict__ q, int64_t rows, int64_t k, int64_t words, int nbits,
                                    int64_t lo, int64_t hi, int32_t* __restrict__ out, unsigned long long* first_bad) {
  const int lane = threadIdx.x & 31;
  const int64_t total = rows * words, plane = rows * words;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; i < total; i += warps) {
    const int64_t r = i / words, w = i - r * words;
    const int64_t c = w * 32 + lane;
    uint64_t v = 0;
    if (c < k) {
      const int64_t val = q[r * k + c];
      if (val < lo || val > hi) atomicMin(first_bad, static_cast<unsigned long long>(r * k + c));
      v = static_cast<uint64_t>(val);
    }
    uint32_t mine = 0;  // lane p keeps the word of plane p
    for (int p = 0; p < nbits; ++p) {
      const uint32_t word = __ballot_sync(0xFFFFFFFFu, (v >> p) & 1u);
      if (lane == p) mine = word;
    }
    if (lane < nbits) out[lane * plane + i] = static_cast<int32_t>(mine);
  }
}

}  // namespace

void launch_pack_bits(PackType type, const void* x, int64_t rows, int64_t k, const void* thr, int64_t thr_stride,
                      int32_t* out, cudaStream_t stream) {
  if (rows <= 0 || k <= 0) return;
  switch (type) {
    case PackType::F16:
      return pack_typed<__half, float>(x, rows, k, thr, thr_stride, out, stream);
    case PackType::BF16:
      return pack_typed<__nv_bfloat16, float>(x, rows, k, thr, thr_stride, out, stream);
    case PackType::F32:
      return pack_typed<float, float>(x, rows, k, thr, thr_stride, out, stream);
    case PackType::F64:
      return pack_typed<double, double>(x, rows, k, thr, thr_stride, out, stream);
    case PackType::I8:
      return pack_typed<int8_t, double>(x, rows, k, thr, thr_stride, out, stream);
    case PackType::U8:
      return pack_typed<uint8_t, double>(x, rows, k, thr, thr_stride, out, stream);
    case PackType::I16:
      return pack_typed<int16_t, double>(x, rows, k, thr, thr_stride, out, stream);
    case PackType::I32:
      return pack_typed<int32_t, double>(x, rows, k, thr, thr_stride, out, stream);
    case PackType::I64:
      return pack_typed<int64_t, double>(x, rows, k, thr, thr_stride, out, stream);
  }
}

void launch_unpack_bits(const int32_t* bits, int64_t rows, int64_t k, int elem_bytes, uint64_t plus, uint64_t minus,
                        void* out, cudaStream_t stream) {
  if (rows <= 0 || k <= 0) return;
  switch (elem_bytes) {
    case 1:
      return unpack_typed<uint8_t>(bits, rows, k, plus, minus, out, stream);
    case 2:
      return unpack_typed<uint16_t>(bits, rows, k, plus, minus, out, stream);
    case 4:
      return unpack_typed<uint32_t>(bits, rows, k, plus, minus, out, stream);
    default:
      return unpack_typed<uint64_t>(bits, rows, k, plus, minus, out, stream);
  }
}

void launch_to_bitplanes(const int64_t* q, int64_t rows, int64_t k, int nbits, bool is_signed, int32_t* out,
                         int64_t* first_bad, cudaStream_t stream) {
  if (rows <= 0 || k <= 0) return;
  const int64_t lo = is_signed ? -(int64_t(1) << (nbits - 1)) : 0;
  const int64_t hi = is_signed ? (int64_t(1) << (nbits - 1)) - 1 : (int64_t(1) << nbits) - 1;
  const int64_t words = (k + 31) / 32;
  constexpr int kThreads = 256;
  to_bitplanes_kernel<<<grid_for(rows * words * 32, kThreads, 1 << 20), kThreads, 0, stream>>>(
      q, rows, k, words, nbits, lo, hi, out, reinterpret_cast<unsigned long long*>(first_bad));
}

}  // namespace bnn::cuda
