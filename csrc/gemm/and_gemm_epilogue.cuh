// The integer epilogue shared by every AND-popcount GEMM path (see and_gemm_cuda.h).
#pragma once

#include "gemm/and_gemm_cuda.h"

namespace bnn::cuda {

// Stores C[b][m, n] for one AND-popcount `cnt`, in modulo-2^32 arithmetic (well defined in
// unsigned; the true result fits int32, intermediate alpha * cnt need not).
__device__ __forceinline__ void epilogue_store(const AndGemmArgs& p, int b, int64_t m, int64_t n, int32_t cnt) {
  uint32_t v = static_cast<uint32_t>(p.alpha) * static_cast<uint32_t>(cnt) + static_cast<uint32_t>(p.beta);
  if (p.row_add) v += static_cast<uint32_t>(p.row_add[b * p.row_batch + m]);
  if (p.col_add) v += static_cast<uint32_t>(p.col_add[b * p.col_batch + n]);
  p.C[b * p.c_batch + m * p.ldc + n] = static_cast<int32_t>(v);
}

}  // namespace bnn::cuda
