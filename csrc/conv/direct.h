// Direct binary conv2d (internal): the output channels along the vector lanes, no im2col.
//
// For each output pixel the taps' packed words are read where they lie in the input (a copy
// with the channel tail masked, split into nibbles for AVX2) and counted against the weights
// of a chunk of output channels held in vector registers. No tile packing or gather pass is
// needed, which dominates small channel counts (C = 32: one word per tap) in the implicit
// GEMM, and zero-padded border taps are skipped rather than corrected afterwards.
// One kernel per instruction set (direct_avx2.cpp, direct_avx512.cpp, direct_scalar.cpp),
// their shared logic in direct_impl.h.
#pragma once

#include <cstdint>

#include "common/epilogue.h"
#include "conv/binary_conv.h"

namespace bnn::cpu {

// Which kernel a binary_conv2d call runs (BNN_KERNELS_CONV_PATH=auto|gemm|direct, read at every
// call like BNN_KERNELS_CPU_ISA; tests force each one). The direct kernel needs groups that
// start at whole words (groups == 1 or C/groups a multiple of 32); otherwise, or with "gemm",
// the implicit GEMM runs. "auto" picks the direct kernel where it is the faster (see
// select_conv_path in direct_select.cpp).
enum class ConvPath { Gemm, Direct };
ConvPath select_conv_path(const ConvParams& p);
// Name of the path a call with p runs: "direct-avx2", "direct-avx512", "direct-scalar", or the
// GEMM micro-kernel's name.
const char* conv_path_name(const ConvParams& p);

// The conv by the direct kernel of the instruction set in effect: int32 results into out
// (NHWC, row stride out_channels), or, with an epilogue e, through e block by block (out
// unused). Requires select_conv_path(p) == ConvPath::Direct.
void direct_conv(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                 int num_threads);

// The kernel of each instruction set (the AVX ones only where the CPU has it).
void direct_conv_avx2(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                      int num_threads);
void direct_conv_avx512(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                        int num_threads);
void direct_conv_scalar(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                        int num_threads);

}  // namespace bnn::cpu
