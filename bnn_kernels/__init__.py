"""bnn_kernels: bitwise inference kernels for binary neural networks.

Ops (torch.ops.bnn_kernels.*, wrapped here with typed signatures):
pack_bits, unpack_bits, to_bitplanes, xnor_gemm, binary_conv2d, bitserial_gemm,
binary_weight_linear, binary_weight_conv2d; xnor_gemm_dual and binary_conv2d_dual return the
float output and the packed bits from one call. ``bnn_kernels.reference`` holds the plain-PyTorch oracle of each.

Models: ``bnn_kernels.nn`` holds packed modules (BinaryConv2d, BitSerialLinear, ...),
``bnn_kernels.convert(model, example_inputs)`` swaps the binary layers of a trained float
BNN for them, ``bnn_kernels.save`` / ``load`` write and read packed models as safetensors.
``bnn_kernels.export`` / ``load_exported`` write and run a converted model as one .pt2
package (AOTInductor) that a C++ program can run too. ``bnn_kernels.compile(model)`` is
torch.compile with ``bnn_kernels.fusion`` moving the float glue around the binary ops into
their fused epilogue (export does the same by default).
"""

from . import _native, nn, reference  # noqa: F401  (_native: the build state `bnn-kernels info` reports)
from ._native import cpu_conv_path, cpu_gemm_isa, cuda_built, op_library_path
from ._version import __version__  # noqa: F401
from .convert import ConversionError, ConversionReport, convert
from .cuda_paths import cuda_gemm_path, get_cuda_gemm_path, set_cuda_gemm_path
from .export_pt2 import ExportError, export, load_exported
from .fusion import FusionReport, fuse_graph
from .ops import (
    binary_conv2d,
    binary_conv2d_dual,
    binary_weight_conv2d,
    binary_weight_linear,
    bitserial_gemm,
    pack_bits,
    to_bitplanes,
    unpack_bits,
    xnor_gemm,
    xnor_gemm_dual,
)
from .serialization import load, save

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
    "reference",
    "nn",
    "convert",
    "ConversionReport",
    "ConversionError",
    "save",
    "load",
    "export",
    "load_exported",
    "ExportError",
    "compile",
    "fuse_graph",
    "FusionReport",
    "FusionPass",
    "op_library_path",
    "cuda_built",
    "cpu_conv_path",
    "cpu_gemm_isa",
    "set_cuda_gemm_path",
    "get_cuda_gemm_path",
    "cuda_gemm_path",
]


def __getattr__(name):
    # compile and FusionPass need torch._inductor, which takes seconds to import: loaded on use
    if name in ("compile", "FusionPass"):
        from . import compile_fused

        return getattr(compile_fused, name)
    raise AttributeError(f"module 'bnn_kernels' has no attribute {name!r}")
