"""Multi-bit activations x binary weights, bit-serial: one exact integer result per layer (BitSplit, one result per bit, is in bitsplit.py).

Activation modes (see check_act in _base):
  "round": q = clamp(round(x * in_mul), 0, 2**nbits - 1), the unsigned integer of a k-bit grid
           (DoReFa / PACT: the float layer sees q / in_mul);
  "step":  q = (x >= threshold[c]), one {0, 1} bit (nbits = 1).

The integer part ``q (*) sign(W)`` is exact. Linear layers use ``bitserial_gemm``; conv layers
run ``binary_conv2d`` once per bit plane (all planes in one call) and correct for {0, 1}
planes: with zero padding, conv(b, w) = (conv(2b - 1, w) + conv(1, w)) / 2 where conv(1, w)
is the same convolution of an all-ones image (one extra batch element).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ._base import (
    PackedModule,
    check_act,
    check_bool,
    check_float_input,
    combine_ternary,
    dtype_from_name,
    per_channel,
    planes_of,
    positive_int,
    register_packed,
    resolve_scale,
    weight_rows,
    words,
)
from .binary import _ConvGeometry, _EpilogueBuffers, conv_output_format, pack_conv_weight

__all__ = ["BitSerialLinear", "BitSerialConv2d"]


def _planes_conv(m: _ConvGeometry, planes: torch.Tensor, zero_one: bool) -> torch.Tensor:
    """planes int32 [P, N, H, W, words] -> int32 [P, N, O, Ho, Wo]: conv of each plane with sign(W).

    zero_one: the planes hold {0,1} values (else +-1)."""
    p, n, h, w, words = planes.shape
    flat = planes.reshape(p * n, h, w, words)
    if zero_one:
        ones = torch.full((1, h, w, 1), 1.0, device=planes.device).expand(1, h, w, m.in_channels)
        flat = torch.cat([flat, ops.pack_bits(ones, 0.0)], 0)
    y = m._conv_bits(flat, 0)
    if not zero_one:
        return y.reshape(p, n, *y.shape[1:])
    ones_conv = y[p * n :]
    y = y[: p * n].reshape(p, n, *y.shape[1:])
    return torch.div(y + ones_conv.unsqueeze(0), 2, rounding_mode="floor")


def _pow2(nbits: int, device) -> torch.Tensor:
    return torch.tensor([1 << i for i in range(nbits)], dtype=torch.int32, device=device)


class _ActBuffers:
    @staticmethod
    def init(module: nn.Module, channels: int) -> None:
        module.register_buffer("threshold", torch.zeros(channels, dtype=torch.float32))
        module.register_buffer("in_mul", torch.ones(1, dtype=torch.float32))

    @staticmethod
    def set(module: nn.Module, channels: int, threshold, in_mul) -> None:
        module.threshold.copy_(per_channel(threshold, channels, "threshold", 0.0))
        module.in_mul.copy_(per_channel(in_mul, 1, "in_mul", 1.0))


@register_packed
class BitSerialLinear(PackedModule):
    """k-bit unsigned activations x binary weights: ``multiplier * (q @ sign(W).T) + bias``.

    q comes from the input by ``act`` ("round": clamp(round(x * in_mul), 0, 2**nbits - 1);
    "step": x >= threshold). The float layer it replaces sees ``q / in_mul`` (round) or q
    (step), so multiplier = weight scale / in_mul for round.

    ternary=True: W in {-1, 0, +1} (weight_rows), exact.

    Buffers: weight_bits int32 [out (2 * out if ternary), ceil(in/32)], threshold float32 [in],
    in_mul float32 [1], multiplier float32 [out], bias float32 [out].
    """

    _config_keys = ("in_features", "out_features", "nbits", "act", "out_dtype", "ternary")

    def __init__(self, in_features, out_features, nbits=2, act="round", out_dtype="float32", ternary=False):
        super().__init__()
        check_act(act, nbits, ("round", "step"))
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.nbits, self.act = nbits, act
        self.out_dtype = dtype_from_name(out_dtype)
        self.ternary = check_bool(ternary, "ternary")
        rows = out_features * (2 if ternary else 1)
        self.register_buffer("weight_bits", torch.zeros(rows, words(in_features), dtype=torch.int32))
        _ActBuffers.init(self, in_features)
        _EpilogueBuffers.init(self, out_features)

    @classmethod
    def from_weight(
        cls,
        weight,
        bias=None,
        *,
        nbits=2,
        act="round",
        multiplier=None,
        threshold=0.0,
        in_mul=1.0,
        out_dtype="float32",
        ternary=False,
    ):
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(f"weight must be a 2-D tensor [out, in], got {getattr(weight, 'shape', weight)}")
        out_f, in_f = weight.shape
        m = cls(in_f, out_f, nbits, act, out_dtype, ternary).to(weight.device)
        m.weight_bits.copy_(ops.pack_bits(weight_rows(weight, ternary), 0.0))
        _ActBuffers.set(m, in_f, threshold, in_mul)
        m.multiplier.copy_(per_channel(multiplier, out_f, "multiplier", 1.0))
        m.bias.copy_(per_channel(bias, out_f, "bias", 0.0))
        return m

    @classmethod
    def from_float(cls, linear: nn.Linear, *, nbits=2, scale=None, out_dtype=None):
        """Pack an nn.Linear whose float equivalent is ``F.linear(Q(x), scale * sign(W), b)`` with
        the DoReFa quantizer Q(x) = round(clamp(x, 0, 1) * n) / n, n = 2**nbits - 1."""
        n = 2**nbits - 1
        w = linear.weight
        return cls.from_weight(
            w,
            linear.bias,
            nbits=nbits,
            act="round",
            multiplier=resolve_scale(scale, w) / n,
            in_mul=float(n),
            out_dtype=out_dtype or w.dtype,
        )

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Exact q @ sign(W).T, int32 [..., out]."""
        check_float_input(x, type(self).__name__, None, self.in_features, -1)
        planes = planes_of(x, self.act, self.threshold, self.in_mul, self.nbits)
        planes = planes.reshape(planes.shape[0], -1, planes.shape[-1])
        coefs = [1 << p for p in range(planes.shape[0])]
        y = ops.bitserial_gemm(planes, self.weight_bits.unsqueeze(0), self.in_features, coefs, [2], 0, -1)
        if self.ternary:
            y = combine_ternary(y, -1)
        return y.reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._epilogue(self.int_forward(x), -1)


@register_packed
class BitSerialConv2d(_ConvGeometry):
    """k-bit unsigned activations x binary weights, 2-D conv; padding_mode 'zeros' (padded
    q is 0) or 'reflect' / 'replicate' / 'circular' (x padded that way first, as nn.Conv2d does).

    ``multiplier * conv(q, sign(W)) + bias`` with q from the input by ``act`` (see
    BitSerialLinear). Runs one binary conv per bit plane plus one all-ones image.

    ternary=True: W in {-1, 0, +1} (weight_rows), exact.

    Buffers: weight_bits int32 [O (2 * O if ternary), KH, KW, ceil((C/groups)/32)], threshold
    float32 [C], in_mul float32 [1], multiplier float32 [O], bias float32 [O].
    """

    _config_keys = _ConvGeometry.geometry_keys + ("nbits", "act", "out_dtype", "ternary", "padding_mode")

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        nbits=2,
        act="round",
        out_dtype="float32",
        ternary=False,
        padding_mode="zeros",
    ):
        super().__init__()
        check_act(act, nbits, ("round", "step"))
        self._init_geometry(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, out_dtype, ternary
        )
        self._init_padding_mode(padding_mode)
        self.nbits, self.act = nbits, act
        self.register_buffer("weight_bits", torch.zeros(self._weight_bits_shape(), dtype=torch.int32))
        _ActBuffers.init(self, in_channels)
        _EpilogueBuffers.init(self, out_channels)

    @classmethod
    def from_weight(
        cls,
        weight,
        bias=None,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        nbits=2,
        act="round",
        multiplier=None,
        threshold=0.0,
        in_mul=1.0,
        out_dtype="float32",
        ternary=False,
        padding_mode="zeros",
    ):
        if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
            raise ValueError(
                f"weight must be a 4-D tensor [O, C/groups, KH, KW], got {getattr(weight, 'shape', weight)}"
            )
        o, cg, kh, kw = weight.shape
        m = cls(
            cg * groups, o, (kh, kw), stride, padding, dilation, groups, nbits, act, out_dtype, ternary, padding_mode
        ).to(weight.device)
        m.weight_bits.copy_(pack_conv_weight(weight, ternary, groups))
        _ActBuffers.set(m, cg * groups, threshold, in_mul)
        m.multiplier.copy_(per_channel(multiplier, o, "multiplier", 1.0))
        m.bias.copy_(per_channel(bias, o, "bias", 0.0))
        return m

    @classmethod
    def from_float(cls, conv: nn.Conv2d, *, nbits=2, scale=None, out_dtype=None):
        """Pack an nn.Conv2d whose float equivalent is ``F.conv2d(Q(x), scale * sign(W), b, ...)`` with
        the DoReFa quantizer Q(x) = round(clamp(x, 0, 1) * n) / n, n = 2**nbits - 1 (conv.padding_mode
        is kept)."""
        g = cls._geometry_of(conv, padding_modes=True)
        n = 2**nbits - 1
        w = conv.weight
        return cls.from_weight(
            w,
            conv.bias,
            stride=g["stride"],
            padding=g["padding"],
            dilation=g["dilation"],
            groups=g["groups"],
            nbits=nbits,
            act="round",
            multiplier=resolve_scale(scale, w) / n,
            in_mul=float(n),
            out_dtype=out_dtype or w.dtype,
            padding_mode=g["padding_mode"],
        )

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Exact conv(q, sign(W)), int32 [N, O, Ho, Wo]."""
        self._check_input(x)
        planes = planes_of(self._pad_input(x).permute(0, 2, 3, 1), self.act, self.threshold, self.in_mul, self.nbits)
        y = _planes_conv(self, planes, zero_one=True)
        if y.shape[0] == 1:
            y = y[0]
        else:
            y = (y * _pow2(y.shape[0], y.device).view(-1, 1, 1, 1, 1)).sum(0, dtype=torch.int32)
        return combine_ternary(y, 1, self.groups) if self.ternary else y

    _int_forward_2d = int_forward  # what forward calls (the 1-D modules override int_forward only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_output_format(x, self._epilogue(self._int_forward_2d(x), 1))
