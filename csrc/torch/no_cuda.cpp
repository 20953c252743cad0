// CPU-only builds: every op still has a CUDA kernel, one that explains why it cannot run.
#include <torch/library.h>

namespace {

void not_built(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK(false, op.schema().name(),
              " was called with CUDA tensors, but bnn_kernels was built without CUDA kernels "
              "(torch without CUDA, no CUDA toolkit, or BNN_KERNELS_CUDA=0 at build time). "
              "Rebuild with a CUDA build of torch and CUDA_HOME set, or move the tensors to the CPU.");
}

}  // namespace

TORCH_LIBRARY_IMPL(bnn_kernels, CUDA, m) {
  for (const char* name : {"pack_bits", "unpack_bits", "to_bitplanes", "xnor_gemm", "binary_conv2d", "bitserial_gemm",
                           "binary_weight_linear", "binary_weight_conv2d", "xnor_gemm_dual", "binary_conv2d_dual"})
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&not_built>());
}
