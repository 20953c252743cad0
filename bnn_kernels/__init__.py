"""bnn_kernels: bitwise inference kernels for binary neural networks.

Ops (torch.ops.bnn_kernels.*, wrapped here with typed signatures):
pack_bits, unpack_bits, to_bitplanes, xnor_gemm, binary_conv2d, bitserial_gemm,
binary_weight_linear. ``bnn_kernels.reference`` holds the plain-PyTorch oracle of each.
"""
from . import _native, reference
from ._native import cpu_gemm_isa, cuda_built
from .ops import (
    binary_conv2d,
    binary_weight_linear,
    bitserial_gemm,
    pack_bits,
    to_bitplanes,
    unpack_bits,
    xnor_gemm,
)

__version__ = "0.1.0"

__all__ = [
    "pack_bits",
    "unpack_bits",
    "to_bitplanes",
    "xnor_gemm",
    "binary_conv2d",
    "bitserial_gemm",
    "binary_weight_linear",
    "reference",
    "cuda_built",
    "cpu_gemm_isa",
]
