// CUDA side of the fused epilogue (common/epilogue.h): applies a bnn::Epilogue to the exact
// int32 accumulators a GEMM or conv kernel wrote, on a stream. Torch-free.
//
// Each output element runs epilogue_value() (the definition: __int2float_rn, __fmul_rn,
// __fadd_rn in the fixed order, never an FMA), so results equal the CPU epilogue bit for bit;
// float16 / bfloat16 outputs are rounded once, to nearest even (__float2half_rn,
// __float2bfloat16_rn; a NaN's payload may differ from the CPU's). Bits are packed 32
// channels per word with a warp ballot.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/epilogue.h"

namespace bnn::cuda {

// Writes e's outputs for rows [0, M) and channels [0, N) from acc (row m at acc + m * acc_ld).
// e must not be raw_int32(); e.out is the float output (null for bits only); acc and e's
// outputs must not overlap.
void launch_epilogue(const Epilogue& e, const int32_t* acc, int64_t acc_ld, int64_t M, int64_t N, cudaStream_t stream);

}  // namespace bnn::cuda
