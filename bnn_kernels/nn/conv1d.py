"""1-D packed convolutions (keyword spotting, audio, ECG / sensor BNNs): every packed 2-D conv
family as a convolution of height 1.

A 1-D convolution with kernel k, stride s, padding p and dilation d of an input (N, C, L) is the
2-D convolution with kernel (1, k), stride (1, s), padding (0, p) and dilation (1, d) of the
same input viewed as (N, C, 1, L). So each 1-D module is its 2-D family's module (a subclass:
the same buffers, epilogue, fused steps, ternary weights and padding modes, ``isinstance(m,
BinaryConv2d)`` holds for a BinaryConv1d) whose input is viewed as (N, C, 1, L) and whose output
is viewed back:

- float input (N, C, L) -> output (N, O, Lout), contiguous as F.conv1d's
  (BitSplitConv1d with reduce=False: (P, N, O, Lout));
- BinaryConv1d also takes and gives packed bits: input int32 [N, L, ceil(C/32)] (a previous
  layer's set_out_threshold output), output int32 [N, Lout, ceil(O/32)] after set_out_threshold;
- ``forward(x, residual)`` (BinaryConv1d): residual (N, O, Lout);
- ``int_forward`` / ``window_terms`` give the exact integers with the height dim dropped.

The constructors, ``from_weight`` (weight [O, C/groups, K]) and ``config()`` / ``from_config``
take and give the 1-D geometry (kernel_size, stride, padding, dilation as an int or a 1-tuple;
config lists of one int); ``from_float`` takes an nn.Conv1d (its padding_mode kept where the 2-D
family keeps it). The attributes ``kernel_size``, ``stride``, ``padding`` and ``dilation`` hold
the 2-D geometry the kernels run: (1, k), (1, s), (0, p), (1, d).
"""

from __future__ import annotations

import numbers
import operator

import torch
from torch import nn

from ._base import register_packed, words
from .binary import BinaryConv2d, _ConvGeometry
from .binary_weight import BinaryWeightConv2d
from .bitserial import BitSerialConv2d
from .bitsplit import BitSplitConv2d
from .offset import OffsetBinaryConv2d

__all__ = [
    "BinaryConv1d",
    "BinaryWeightConv1d",
    "BitSerialConv1d",
    "BitSplitConv1d",
    "OffsetBinaryConv1d",
    "single",
    "as_conv2d",
    "as_conv1d",
]

# the 1-D geometry and the height entry of its 2-D form
_HEIGHT = {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1}


def single(v, name: str) -> int:
    """An int or a sequence of one int (nn.Conv1d's kernel_size=(k,)) as an int: TypeError for
    other types (floats, bools included), ValueError for sequences of another length."""
    msg = f"{name} must be an int or a tuple of one int, got {v!r}"
    if isinstance(v, (bool, str, bytes)):
        raise TypeError(msg)
    if isinstance(v, numbers.Integral):
        return int(v)
    try:
        items = list(v)
    except TypeError:
        raise TypeError(msg) from None
    if len(items) != 1:
        raise ValueError(msg)
    if isinstance(items[0], bool):
        raise TypeError(msg)
    try:
        return operator.index(items[0])
    except TypeError:
        raise TypeError(msg) from None


def as_conv2d(conv: nn.Conv1d) -> nn.Conv2d:
    """The nn.Conv2d of height 1 computing what ``conv`` computes (its weight viewed as
    [O, C/groups, 1, K], its bias and padding_mode); no parameters are copied."""
    if not isinstance(conv, nn.Conv1d):
        raise TypeError(f"conv must be an nn.Conv1d, got {type(conv).__name__}")
    if isinstance(conv.padding, str):
        raise ValueError(f"string padding {conv.padding!r} is not supported; give explicit padding")
    w = conv.weight
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        (1, conv.kernel_size[0]),
        (1, conv.stride[0]),
        (0, conv.padding[0]),
        (1, conv.dilation[0]),
        conv.groups,
        bias=False,
        padding_mode=conv.padding_mode,
        device="meta",
        dtype=w.dtype,
    )
    out.weight = nn.Parameter(w.detach().unsqueeze(2), requires_grad=False)
    out.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)
    return out


class _Conv1d:
    """The 1-D form of the packed 2-D conv family it is mixed into (the base after it)."""

    _base2d: type = None  # the 2-D family (set per subclass)
    _packed_io = False  # takes packed int32 input and may give packed output (BinaryConv2d)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._base2d = next(b for b in cls.__mro__ if issubclass(b, _ConvGeometry) and not issubclass(b, _Conv1d))

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, *a, **kw):
        geo = ((h, single(v, n)) for (n, h), v in zip(_HEIGHT.items(), (kernel_size, stride, padding, dilation)))
        super().__init__(in_channels, out_channels, *geo, groups, *a, **kw)

    def config(self) -> dict:
        """The 2-D family's config with the 1-D geometry: kernel_size, stride, padding and
        dilation as lists of one int."""
        out = super().config()
        for k in _HEIGHT:
            out[k] = out[k][1:]
        return out

    @classmethod
    def _from_2d(cls, m2) -> nn.Module:
        """The 1-D module of a 2-D module of height 1 (its config and buffers)."""
        cfg = m2.config()
        for k, h in _HEIGHT.items():
            if cfg[k][0] != h:
                raise ValueError(f"{cls.__name__}: a 2-D module with {k}={tuple(cfg[k])} is not of height 1")
            cfg[k] = cfg[k][1:]
        m = cls.from_config(cfg).to(m2.weight_bits.device)
        m.load_state_dict(m2.state_dict())
        return m.train(m2.training)

    @classmethod
    def from_weight(cls, weight, bias=None, *, stride=1, padding=0, dilation=1, **kwargs):
        """The 2-D family's from_weight for a weight [O, C/groups, K] and the 1-D geometry (the
        other arguments as there)."""
        if not hasattr(cls._base2d, "from_weight"):
            raise AttributeError(f"{cls.__name__} has no from_weight (use from_float or from_config)")
        if not isinstance(weight, torch.Tensor) or weight.dim() != 3:
            raise ValueError(f"weight must be a 3-D tensor [O, C/groups, K], got {getattr(weight, 'shape', weight)}")
        geo = {
            n: (_HEIGHT[n], single(v, n)) for n, v in (("stride", stride), ("padding", padding), ("dilation", dilation))
        }
        return cls._from_2d(cls._base2d.from_weight(weight.unsqueeze(2), bias, **geo, **kwargs))

    @classmethod
    def from_float(cls, conv: nn.Conv1d, *args, **kwargs):
        """The 2-D family's from_float for an nn.Conv1d (the other arguments as there)."""
        return cls._from_2d(cls._base2d.from_float(as_conv2d(conv), *args, **kwargs))

    # -- views between the 1-D and the 2-D forms ------------------------------------------
    def _in_2d(self, x) -> torch.Tensor:
        """Float (N, C, L) -> (N, C, 1, L); packed int32 [N, L, words] -> [N, 1, L, words]."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: input must be a tensor, got {type(x).__name__}")
        if self._packed_io and x.dtype == torch.int32:
            if x.dim() != 3:
                raise ValueError(
                    f"{name}: packed input must be int32 [N, L, {words(self.in_channels)}], got shape {tuple(x.shape)}"
                )
            return x.unsqueeze(1)
        if x.dim() != 3:
            raise ValueError(f"{name}: input must have 3 dims (N, C, L), got shape {tuple(x.shape)}")
        return x.unsqueeze(2)

    def _residual_2d(self, r):
        if r is None:
            return None
        if not isinstance(r, torch.Tensor) or r.dim() != 3:
            raise ValueError(
                f"{type(self).__name__}: residual must have the output's shape (N, O, Lout), "
                f"got {tuple(getattr(r, 'shape', ()))}"
            )
        return r.unsqueeze(2)

    def _out_1d(self, y: torch.Tensor) -> torch.Tensor:
        if "out_threshold" in getattr(self, "fused", ()):
            return y.squeeze(1)  # packed bits [N, 1, Lout, words]
        return y.squeeze(-2).contiguous()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The 2-D family's forward on x viewed as (N, C, 1, L), its output viewed back."""
        args = tuple(self._residual_2d(a) for a in args)
        kwargs = {k: self._residual_2d(v) for k, v in kwargs.items()}
        return self._out_1d(super().forward(self._in_2d(x), *args, **kwargs))

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integer part, int32 [N, O, Lout] ([P, N, O, Lout] for BitSplitConv1d)."""
        return self._int_forward_2d(self._in_2d(x)).squeeze(-2)


@register_packed
class BinaryConv1d(_Conv1d, BinaryConv2d):
    """Binary 1-D convolution, ``multiplier * conv1d(sign(x - threshold), sign(W)) + bias``: BinaryConv2d
    of height 1 (see the module docstring). Input (N, C, L) float or packed int32 [N, L, ceil(C/32)];
    output (N, O, Lout), or packed int32 [N, Lout, ceil(O/32)] after set_out_threshold."""

    _packed_io = True


@register_packed
class BinaryWeightConv1d(_Conv1d, BinaryWeightConv2d):
    """``F.conv1d(x, multiplier * sign(W), bias, ...)`` with W packed, x real: BinaryWeightConv2d of
    height 1 (see the module docstring)."""

    def unpacked_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """multiplier * sign(W) as a float [O, C/groups, K] tensor."""
        return super().unpacked_weight(dtype).squeeze(2)


@register_packed
class BitSerialConv1d(_Conv1d, BitSerialConv2d):
    """k-bit unsigned activations x binary weights, 1-D: BitSerialConv2d of height 1 (see the module
    docstring)."""


@register_packed
class BitSplitConv1d(_Conv1d, BitSplitConv2d):
    """Each activation bit its own binary 1-D conv path: BitSplitConv2d of height 1 (see the module
    docstring); output (P, N, O, Lout), or (N, O, Lout) with reduce=True."""


@register_packed
class OffsetBinaryConv1d(_Conv1d, OffsetBinaryConv2d):
    """Offset-binary 1-D convolution (AdaBin): OffsetBinaryConv2d of height 1 (see the module
    docstring)."""

    def window_terms(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integers int32 [4, N, O, Lout] (see OffsetBinaryConv2d.window_terms)."""
        return self._window_terms_2d(self._in_2d(x)).squeeze(-2)

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The exact binary core conv1d(sign(x - threshold), s_w), int32 [N, O, Lout]."""
        return self.window_terms(x)[0]


def as_conv1d(m2: nn.Module) -> nn.Module:
    """The 1-D packed module of a packed 2-D conv module of height 1 (kernel (1, k), stride (1, s),
    padding (0, p), dilation (1, d)): its config and buffers; what it computes on (N, C, 1, L) the
    1-D module computes on (N, C, L)."""
    for cls in (BinaryConv1d, BinaryWeightConv1d, BitSerialConv1d, BitSplitConv1d, OffsetBinaryConv1d):
        if type(m2) is cls._base2d:
            return cls._from_2d(m2)
    raise TypeError(f"no 1-D packed module for {type(m2).__name__}")
