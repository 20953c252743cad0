// CUDA launcher of bitserial_gemm (see bitserial_gemm.h for the contract). Torch-free.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gemm/and_gemm_cuda.h"

namespace bnn::cuda {

// Device workspace (bytes) launch_bitserial_gemm needs.
int64_t bitserial_gemm_workspace_bytes(int64_t P, int64_t Q, int64_t M, int64_t N);

// a [P, M, words], w [Q, N, words] contiguous planes; a_coefs [P] and w_coefs [Q] are int64
// arrays in device memory. out [M, N] (reduce) or [P, M, N]. The caller guarantees every
// result fits int32 (checks.h). All weight planes are the GEMM's columns and the activation
// planes its batch: one AND-popcount GEMM per chunk of rows, then an integer epilogue pass
// applying coefficients, offsets and row/column popcounts.
void launch_bitserial_gemm(const int32_t* a, int64_t P, const int32_t* w, int64_t Q, int64_t M, int64_t N, int64_t k,
                           const int64_t* a_coefs, const int64_t* w_coefs, int64_t a_offset, int64_t w_offset,
                           bool reduce, int32_t* out, void* workspace, GemmPath path, cudaStream_t stream);

}  // namespace bnn::cuda
