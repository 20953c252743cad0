// CUDA launcher of binary_conv2d (see binary_conv.h for the contract). Torch-free.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "conv/binary_conv.h"
#include "gemm/and_gemm_cuda.h"

namespace bnn::cuda {

// Device workspace (bytes) launch_binary_conv2d needs for p.
int64_t binary_conv2d_workspace_bytes(const ConvParams& p);

// out [batch, out_h, out_w, out_channels] (NHWC, contiguous) = conv2d(sign(x), sign(w))
// exactly; x [batch, in_h, in_w, ceil(C/32)] and w [O, KH, KW, ceil(Cg/32)] contiguous.
// Bit im2col of a chunk of output pixels (all groups), one batched AND-popcount GEMM over
// the groups with the xnor terms in its epilogue, then a border correction for zero padding.
void launch_binary_conv2d(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, void* workspace,
                          GemmPath path, cudaStream_t stream);

}  // namespace bnn::cuda
