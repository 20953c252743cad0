// CUDA launcher of binary_weight_conv2d (see binary_weight_conv.h for the contract). Torch-free.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "conv/binary_conv.h"

namespace bnn::cuda {

enum class WconvType { F32, F64 };

// out [batch, out_h, out_w, O] (NHWC) = conv2d(x, multiplier * sign(w)) + bias, zero padding;
// x [batch, in_h, in_w, C] (NHWC) contiguous, of float (F32) or double (F64), as are
// multiplier and bias [O] (nullable) and out; w [O, KH, KW, ceil(Cg/32)] contiguous.
// Each output is summed in the order of the CPU scalar path (one sequential sum over
// k = tap * Cg + c from +0, then * multiplier and + bias, each rounded once): the results
// equal cpu::binary_weight_conv2d's with BNN_KERNELS_CPU_ISA=scalar bit for bit.
void launch_binary_weight_conv2d(WconvType type, const void* x, const int32_t* w, const ConvParams& p,
                                 const void* multiplier, const void* bias, void* out, cudaStream_t stream);

}  // namespace bnn::cuda
