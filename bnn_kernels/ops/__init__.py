"""Typed wrappers over torch.ops.bnn_kernels.*, each with its register_fake."""

from .binary_weight_conv import binary_weight_conv2d
from .bitserial import bitserial_gemm
from .conv import binary_conv2d, binary_conv2d_dual
from .gemm import xnor_gemm, xnor_gemm_dual
from .linear import binary_weight_linear
from .pack import pack_bits, to_bitplanes, unpack_bits

__all__ = [
    "pack_bits",
    "unpack_bits",
    "to_bitplanes",
    "xnor_gemm",
    "binary_conv2d",
    "bitserial_gemm",
    "binary_weight_linear",
    "binary_weight_conv2d",
    "xnor_gemm_dual",
    "binary_conv2d_dual",
]
