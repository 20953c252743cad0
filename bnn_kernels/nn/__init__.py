"""Packed inference modules for binary neural networks.

One module per layer family; each owns packed int32 weights and float32 scales, biases and
thresholds as buffers, has ``from_float(...)`` constructors, ``config()`` /
``from_config()``, and round-trips through ``state_dict`` and ``bnn_kernels.save`` / ``load``.

- BinaryLinear, BinaryConv2d: binarized input x binary weights (XNOR-popcount), float epilogue.
- BitSerialLinear, BitSerialConv2d: k-bit unsigned activations x binary weights.
- BitSplitLinear, BitSplitConv2d: each activation bit its own binary path.
- BinaryWeightLinear, BinaryWeightConv2d: real activations x binary weights.
- OffsetBinaryConv2d: offset-binary activations and weights (AdaBin), binary conv + window sums.
- BinaryConv1d, BinaryWeightConv1d, BitSerialConv1d, BitSplitConv1d, OffsetBinaryConv1d: the
  1-D convolutions (input (N, C, L)), each its 2-D family's module of height 1 (conv1d.py).
"""

from ._base import PACKED_MODULES, Folded, PackedModule
from .binary import BinaryConv2d, BinaryLinear
from .binary_weight import BinaryWeightConv2d, BinaryWeightLinear
from .bitserial import BitSerialConv2d, BitSerialLinear
from .bitsplit import BitSplitConv2d, BitSplitLinear
from .conv1d import BinaryConv1d, BinaryWeightConv1d, BitSerialConv1d, BitSplitConv1d, OffsetBinaryConv1d
from .offset import OffsetBinaryConv2d

__all__ = [
    "PackedModule",
    "Folded",
    "PACKED_MODULES",
    "BinaryLinear",
    "BinaryConv2d",
    "BitSerialLinear",
    "BitSerialConv2d",
    "BitSplitLinear",
    "BitSplitConv2d",
    "BinaryWeightLinear",
    "BinaryWeightConv2d",
    "OffsetBinaryConv2d",
    "BinaryConv1d",
    "BinaryWeightConv1d",
    "BitSerialConv1d",
    "BitSplitConv1d",
    "OffsetBinaryConv1d",
]
