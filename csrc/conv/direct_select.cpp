// Run-time choice between the direct conv kernels (conv/direct.h) and the implicit GEMM.
#include <cstdlib>
#include <cstring>

#include "conv/direct.h"
#include "gemm/microkernel.h"

namespace bnn::cpu {
namespace {

enum class DirectIsa { Avx512, Avx2, Scalar };

// The direct kernel of the instruction set the GEMM's micro-kernel choice (CPU and
// BNN_KERNELS_CPU_ISA) allows.
DirectIsa direct_isa() {
  const char* name = select_microkernel(BitOp::Xor).name;
  if (std::strncmp(name, "avx512", 6) == 0) return DirectIsa::Avx512;
  if (std::strcmp(name, "avx2") == 0) return DirectIsa::Avx2;
  return DirectIsa::Scalar;
}

}  // namespace

ConvPath select_conv_path(const ConvParams& p) {
  const char* v = std::getenv("BNN_KERNELS_CONV_PATH");
  if (v != nullptr && std::strcmp(v, "gemm") == 0) return ConvPath::Gemm;
  if (p.groups != 1 && p.group_channels() % 32 != 0) return ConvPath::Gemm;
  if (v != nullptr && std::strcmp(v, "direct") == 0) return ConvPath::Direct;
  // auto: the direct kernel on AVX2 and AVX-512 (measured 1.3x-3.6x and 1.25x-3.5x the implicit
  // GEMM at batch 1, benchmarks/README.md). The scalar kernel, slower than the scalar GEMM's
  // 64-bit POPCNT tiles, runs when forced.
  return direct_isa() == DirectIsa::Scalar ? ConvPath::Gemm : ConvPath::Direct;
}

const char* conv_path_name(const ConvParams& p) {
  if (select_conv_path(p) == ConvPath::Gemm) return select_microkernel(BitOp::Xor).name;
  switch (direct_isa()) {
    case DirectIsa::Avx512:
      return "direct-avx512";
    case DirectIsa::Avx2:
      return "direct-avx2";
    default:
      return "direct-scalar";
  }
}

void direct_conv(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, const Epilogue* e,
                 int num_threads) {
  switch (direct_isa()) {
    case DirectIsa::Avx512:
      return direct_conv_avx512(x, w, p, out, e, num_threads);
    case DirectIsa::Avx2:
      return direct_conv_avx2(x, w, p, out, e, num_threads);
    default:
      return direct_conv_scalar(x, w, p, out, e, num_threads);
  }
}

}  // namespace bnn::cpu
