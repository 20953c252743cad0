// Bitwise GEMM on packed rows: the CPU engine behind xnor_gemm, binary_conv2d and
// bitserial_gemm. Torch-free: raw pointers, sizes and a thread count.
//
// Names: `xnor_gemm` is the op users call (+-1 values: sign(A) @ sign(B).T). Its engines are
// named by the bit operation they count: `popcount_gemm` here on the CPU (XOR for +-1 data,
// AND for the {0,1} planes of bitserial_gemm), `and_gemm` on CUDA (the b1 tensor cores only
// count AND, so the XNOR result is derived from AND counts and row popcounts).
#pragma once

#include <cstdint>

#include "common/epilogue.h"

namespace bnn::cpu {

enum class BitOp { Xor, And };

// C[m * ldc + n] = alpha * popcount(op(A[m, :], B[n, :])) + beta, for m < M, n < N.
// Rows of A and B hold `words` 32-bit words (leading dims lda, ldb in words); bits of the
// last word outside `last_mask` are ignored, so tails need not be clean.
void popcount_gemm(BitOp op, const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, int64_t M, int64_t N,
                   int64_t words, uint32_t last_mask, int32_t alpha, int32_t beta, int32_t* C, int64_t ldc,
                   int num_threads);

// C[m, n] = sum_k sign(a[m, k]) * sign(b[n, k]) = k - 2 * popcount(a[m] ^ b[n]) for packed
// rows of k bits (ceil(k/32) words each).
void xnor_gemm(const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, int64_t M, int64_t N, int64_t k,
               int32_t* C, int64_t ldc, int num_threads);

// xnor_gemm with the fused epilogue e (common/epilogue.h) applied to each C[m, n]: writes
// e's outputs (the int32 C itself at e.out when e.raw_int32()).
void xnor_gemm(const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, int64_t M, int64_t N, int64_t k,
               const Epilogue& e, int num_threads);

// Name of the micro-kernel the run-time dispatch picks now ("avx512-vpopcntdq", "avx2",
// "scalar-popcnt" or "scalar"): the best the CPU has, capped by BNN_KERNELS_CPU_ISA (read at
// every call, see common/cpu_features.h). Python: bnn_kernels.cpu_gemm_isa().
const char* gemm_isa();

}  // namespace bnn::cpu
