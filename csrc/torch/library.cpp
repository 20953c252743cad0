// Every op of the library, declared once. Kernels are registered per dispatch key in
// cpu_ops.cpp, cuda/*.cpp (CUDA builds) or no_cuda.cpp (CPU-only builds).
#include <torch/library.h>

TORCH_LIBRARY(bnn_kernels, m) {
  m.def("pack_bits(Tensor x, float threshold=0., Tensor? channel_threshold=None) -> Tensor");
  m.def("unpack_bits(Tensor bits, int k, ScalarType? dtype=None) -> Tensor");
  m.def("to_bitplanes(Tensor q, int nbits, bool is_signed=False) -> Tensor");
  // xnor_gemm and binary_conv2d end in the keyword-only fused epilogue (common/epilogue.h).
  m.def(
      "xnor_gemm(Tensor a_bits, Tensor b_bits, int k, "
      "*, Tensor? multiplier=None, Tensor? bias=None, Tensor? residual=None, Tensor? act_slope=None, "
      "Tensor? act_shift_in=None, Tensor? act_shift_out=None, ScalarType? out_dtype=None, "
      "Tensor? out_threshold=None) -> Tensor");
  m.def(
      "binary_conv2d(Tensor x_bits, Tensor w_bits, int in_channels, int[2] stride=1, "
      "int[2] padding=0, int[2] dilation=1, int groups=1, int pad_value=0, "
      "*, Tensor? multiplier=None, Tensor? bias=None, Tensor? residual=None, Tensor? act_slope=None, "
      "Tensor? act_shift_in=None, Tensor? act_shift_out=None, ScalarType? out_dtype=None, "
      "Tensor? out_threshold=None) -> Tensor");
  // The dual ops: the same computation with the float output (out_dtype, float32 by default) AND
  // the packed bits of y >= out_threshold, from one pass of the epilogue.
  m.def(
      "xnor_gemm_dual(Tensor a_bits, Tensor b_bits, int k, "
      "*, Tensor? multiplier=None, Tensor? bias=None, Tensor? residual=None, Tensor? act_slope=None, "
      "Tensor? act_shift_in=None, Tensor? act_shift_out=None, ScalarType? out_dtype=None, "
      "Tensor out_threshold) -> (Tensor, Tensor)");
  m.def(
      "binary_conv2d_dual(Tensor x_bits, Tensor w_bits, int in_channels, int[2] stride=1, "
      "int[2] padding=0, int[2] dilation=1, int groups=1, int pad_value=0, "
      "*, Tensor? multiplier=None, Tensor? bias=None, Tensor? residual=None, Tensor? act_slope=None, "
      "Tensor? act_shift_in=None, Tensor? act_shift_out=None, ScalarType? out_dtype=None, "
      "Tensor out_threshold) -> (Tensor, Tensor)");
  m.def(
      "bitserial_gemm(Tensor a_planes, Tensor w_planes, int k, int[] a_coefs, int[] w_coefs, "
      "int a_offset=0, int w_offset=0, bool reduce=True) -> Tensor");
  m.def(
      "binary_weight_linear(Tensor x, Tensor w_bits, int k, Tensor? scale=None, "
      "Tensor? bias=None) -> Tensor");
  m.def(
      "binary_weight_conv2d(Tensor x, Tensor w_bits, int in_channels, int[2] stride=1, int[2] padding=0, "
      "int[2] dilation=1, int groups=1, Tensor? multiplier=None, Tensor? bias=None) -> Tensor");
}
