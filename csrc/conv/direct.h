// Direct binary conv2d (internal): the output channels along the vector lanes, no im2col.
//
// For each output pixel the taps' packed words are read where they lie in the input (a split
// copy, see below) and XORed with the weights of 8 output channels per 256-bit register; the
// bits are counted with the nibble lookup. Both operands are stored pre-split into their low
// and high nibbles (x & 0x0f0f0f0f, (x >> 4) & 0x0f0f0f0f), once per call: a count then costs
// 2 XOR, 2 lookups and 2 adds per 256 bits, against 8 operations when the nibbles are split in
// the inner loop, and no tile packing or gather pass is needed, which dominates small channel
// counts (C = 32: one word per tap) in the implicit GEMM.
#pragma once

#include <cstdint>

#include "common/epilogue.h"
#include "conv/binary_conv.h"

namespace bnn::cpu {

// Which kernel a binary_conv2d call runs (BNN_KERNELS_CONV_PATH=auto|gemm|direct, read at every
// call like BNN_KERNELS_CPU_ISA; tests force each one). "direct" where the direct kernel does
// not apply (no AVX2, or groups whose channels are not whole words) runs the implicit GEMM.
enum class ConvPath { Gemm, Direct };
ConvPath select_conv_path(const ConvParams& p);
// Name of the path a call with p runs ("direct-avx2", or the GEMM micro-kernel's name).
const char* conv_path_name(const ConvParams& p);

// The conv by the direct kernel: int32 results into out (NHWC, row stride out_channels), or,
// with an epilogue e, through e block by block (out unused). Requires select_conv_path(p) ==
// ConvPath::Direct.
void direct_conv(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                 int num_threads);

}  // namespace bnn::cpu
