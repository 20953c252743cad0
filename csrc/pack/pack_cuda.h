// CUDA launchers of the packing ops (canonical format: see common/bits.h). Torch-free.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace bnn::cuda {

// Element types pack_bits reads on the device. Half types are compared in float32,
// integers in float64, float32/float64 in their own type (as the CPU kernel does).
enum class PackType { F16, BF16, F32, F64, I8, U8, I16, I32, I64 };

// out[r, w]: bit j of word w is 1 where x[r, 32w+j] >= thr[(32w+j) * thr_stride].
// x is contiguous [rows, k] of `type`; thr is float for F16/BF16/F32, double otherwise;
// thr_stride is 0 (one threshold) or 1 (one per column). One warp ballot per word.
void launch_pack_bits(PackType type, const void* x, int64_t rows, int64_t k, const void* thr, int64_t thr_stride,
                      int32_t* out, cudaStream_t stream);

// out[r, c] (rows x k elements of elem_bytes in {1, 2, 4, 8}) = plus where bit c of row r is
// 1, else minus (element bit patterns in the low elem_bytes bytes).
void launch_unpack_bits(const int32_t* bits, int64_t rows, int64_t k, int elem_bytes, uint64_t plus, uint64_t minus,
                        void* out, cudaStream_t stream);

// Bit planes out[p, r, w] of q (int64 [rows, k]); values outside the nbits range lower
// *first_bad (an int64 on the device that the caller sets to INT64_MAX) to their flat
// index; the caller reads it back and raises. out is complete only when none is bad.
void launch_to_bitplanes(const int64_t* q, int64_t rows, int64_t k, int nbits, bool is_signed, int32_t* out,
                         int64_t* first_bad, cudaStream_t stream);

}  // namespace bnn::cuda
