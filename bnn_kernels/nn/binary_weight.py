"""Binary weights with real-valued activations (BinaryConnect / BWN).

    y = x (*) (multiplier[o] * sign(W)) + bias[o]

The per-output multiplier and bias are the same epilogue buffers every packed module has
(files written when they were named ``scale`` still load).

BinaryWeightLinear runs the ``binary_weight_linear`` kernel and BinaryWeightConv2d the
``binary_weight_conv2d`` kernel: the weights stay packed (32x less storage) and the products
are additions and subtractions of x. Results equal the float layer up to float rounding of the
accumulation (see the ops for the rounding contract).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ._base import (
    PackedModule,
    check_bool,
    check_float_input,
    per_channel,
    positive_int,
    register_packed,
    resolve_scale,
    weight_rows,
    words,
)
from ._padding import op_padding
from .binary import _ConvGeometry, _EpilogueBuffers, conv_output_format, pack_conv_weight

__all__ = ["BinaryWeightLinear", "BinaryWeightConv2d"]


class _LegacyScaleName:
    """Loads state dicts written when the multiplier buffer was named ``scale``."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old, new = prefix + "scale", prefix + "multiplier"
        if old in state_dict and new not in state_dict:
            state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register_packed
class BinaryWeightLinear(_LegacyScaleName, PackedModule):
    """``x @ (multiplier * sign(W)).T + bias`` with W packed; x real (float32/64/16, bfloat16).

    The output has x's dtype (the kernel accumulates in float32, float64 for float64 x).

    ternary=True: W in {-1, 0, +1} (weight_rows).

    Buffers: weight_bits int32 [out (2 * out if ternary), ceil(in/32)], multiplier float32 [out],
    bias float32 [out].
    """

    _config_keys = ("in_features", "out_features", "ternary")

    def __init__(self, in_features: int, out_features: int, ternary: bool = False):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.ternary = check_bool(ternary, "ternary")
        rows = out_features * (2 if ternary else 1)
        self.register_buffer("weight_bits", torch.zeros(rows, words(in_features), dtype=torch.int32))
        _EpilogueBuffers.init(self, out_features)

    @classmethod
    def from_weight(cls, weight, bias=None, *, multiplier=None, ternary=False):
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(f"weight must be a 2-D tensor [out, in], got {getattr(weight, 'shape', weight)}")
        out_f, in_f = weight.shape
        m = cls(in_f, out_f, ternary).to(weight.device)
        m.weight_bits.copy_(ops.pack_bits(weight_rows(weight, ternary), 0.0))
        m.multiplier.copy_(per_channel(multiplier, out_f, "multiplier", 1.0))
        m.bias.copy_(per_channel(bias, out_f, "bias", 0.0))
        return m

    @classmethod
    def from_float(cls, linear: nn.Linear, *, scale="mean_abs"):
        """Float equivalent: ``F.linear(x, scale * sign(linear.weight), linear.bias)``.
        scale: 'mean_abs' (default, BWN), None (1), a number or a tensor [out]."""
        return cls.from_weight(linear.weight, linear.bias, multiplier=resolve_scale(scale, linear.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_input(x, type(self).__name__, None, self.in_features, -1)
        if not self.ternary:
            return ops.binary_weight_linear(x, self.weight_bits, self.in_features, self.multiplier, self.bias)
        y = ops.binary_weight_linear(x, self.weight_bits, self.in_features, None, None)  # x @ [P; N].T
        o = self.out_features
        half = (self.multiplier * 0.5).to(y.dtype)
        return torch.addcmul(self.bias.to(y.dtype), y[..., :o] - y[..., o:], half)


@register_packed
class BinaryWeightConv2d(_LegacyScaleName, _ConvGeometry):
    """``F.conv2d(x, multiplier * sign(W), bias, ...)`` with W stored packed, x real.

    Runs the ``binary_weight_conv2d`` kernel (float32 accumulation, float64 for float64 x;
    float16 / bfloat16 x are computed in float32 and rounded once). The output has x's dtype
    and x's memory format (channels_last for a channels_last x). padding_mode 'zeros',
    'reflect', 'replicate' or 'circular', as nn.Conv2d.

    ternary=True: W in {-1, 0, +1} (weight_rows): one kernel call over the [P; N] rows, then
    ``(y_P - y_N) * multiplier / 2 + bias``.

    Buffers: weight_bits int32 [O (2 * O if ternary), KH, KW, ceil((C/groups)/32)], multiplier
    float32 [O], bias float32 [O].
    """

    _config_keys = (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "ternary",
        "padding_mode",
    )

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        ternary=False,
        padding_mode="zeros",
    ):
        super().__init__()
        self._init_geometry(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, "float32", ternary
        )
        self._init_padding_mode(padding_mode)
        self.register_buffer("weight_bits", torch.zeros(self._weight_bits_shape(), dtype=torch.int32))
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
        multiplier=None,
        ternary=False,
        padding_mode="zeros",
    ):
        if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
            raise ValueError(
                f"weight must be a 4-D tensor [O, C/groups, KH, KW], got {getattr(weight, 'shape', weight)}"
            )
        o, cg, kh, kw = weight.shape
        m = cls(cg * groups, o, (kh, kw), stride, padding, dilation, groups, ternary, padding_mode).to(weight.device)
        m.weight_bits.copy_(pack_conv_weight(weight, ternary, groups))
        m.multiplier.copy_(per_channel(multiplier, o, "multiplier", 1.0))
        m.bias.copy_(per_channel(bias, o, "bias", 0.0))
        return m

    @classmethod
    def from_float(cls, conv: nn.Conv2d, *, scale="mean_abs"):
        """Float equivalent: ``F.conv2d(x, scale * sign(conv.weight), conv.bias, ...)`` (with
        conv.padding_mode)."""
        g = cls._geometry_of(conv, padding_modes=True)
        return cls.from_weight(
            conv.weight,
            conv.bias,
            stride=g["stride"],
            padding=g["padding"],
            dilation=g["dilation"],
            groups=g["groups"],
            multiplier=resolve_scale(scale, conv.weight),
            padding_mode=g["padding_mode"],
        )

    def unpacked_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """multiplier * sign(W) as a float [O, C/groups, KH, KW] tensor."""
        w = ops.unpack_bits(self.weight_bits, self.in_channels // self.groups, dtype).permute(0, 3, 1, 2)
        if self.ternary:
            g = w.unflatten(0, (self.groups, 2, -1))
            w = ((g[:, 0] - g[:, 1]) * 0.5).flatten(0, 1)
        return w * self.multiplier.to(dtype).view(-1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_input(x, type(self).__name__, 4, self.in_channels, 1)
        if not x.dtype.is_floating_point:
            raise TypeError(f"BinaryWeightConv2d: input must be a floating point tensor, got {x.dtype}")
        xp = self._pad_input(x)
        geo = (self.in_channels, self.stride, op_padding(self.padding, self.padding_mode), self.dilation, self.groups)
        if not self.ternary:
            y = ops.binary_weight_conv2d(xp, self.weight_bits, *geo, self.multiplier, self.bias)
            return conv_output_format(x, y)
        y = ops.binary_weight_conv2d(xp, self.weight_bits, *geo)  # [N, 2 * O, Ho, Wo]: P and N rows per group
        g = y.unflatten(1, (self.groups, 2, -1))
        d = (g[:, :, 0] - g[:, :, 1]).flatten(1, 2)
        half = (self.multiplier * 0.5).to(y.dtype).view(-1, 1, 1)
        return conv_output_format(x, torch.addcmul(self.bias.to(y.dtype).view(-1, 1, 1), d, half))
