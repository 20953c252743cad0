// CUDA launcher of binary_weight_linear (see binary_weight_linear.h). Torch-free.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace bnn::cuda {

enum class LinearXType { F16, BF16, F32, F64 };

enum class LinearPath {
  Auto,   // GEMV for at most 8 rows of x, tiled otherwise
  Gemv,   // one warp per 4 output features, packed weights streamed with 16-byte loads
  Tiled,  // 64x64 shared-memory tiles: weights decoded to +-1, FMA (CUDA cores)
};

// "auto", "gemv" or "tiled" (nullptr or "" = auto); anything else returns false.
bool parse_linear_path(const char* s, LinearPath* out);

// out[m, n] = (sum_k sign(w[n, k]) * x[m, k]) * scale[n] + bias[n] for x [M, K] contiguous of
// `type`; scale, bias (nullable) and out are of the accumulation type: double for F64,
// float otherwise. w [N, ceil(K/32)] contiguous.
void launch_binary_weight_linear(LinearXType type, const void* x, int64_t M, int64_t K, const int32_t* w, int64_t N,
                                 const void* scale, const void* bias, void* out, LinearPath path, cudaStream_t stream);

}  // namespace bnn::cuda
