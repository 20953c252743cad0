"""Fully binary layers: binarized input x binary weights, XNOR-popcount, float epilogue.

    y = multiplier[o] * (sign(x - threshold) (*) sign(W))[o] + bias[o]

where sign maps 0 to +1 (bit 1 means +1), the integer part is computed exactly by
``xnor_gemm`` / ``binary_conv2d`` and the epilogue runs in float32 (float64 when
out_dtype is float64) before the cast to out_dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ._base import (
    PackedModule,
    check_bool,
    check_float_input,
    combine_ternary,
    dtype_from_name,
    pair,
    per_channel,
    positive_int,
    register_packed,
    resolve_scale,
    weight_rows,
    words,
)
from ._padding import check_padding_mode, op_padding, pad_input

__all__ = ["BinaryLinear", "BinaryConv2d", "pack_conv_weight", "conv_output_format"]


def pack_conv_weight(weight: torch.Tensor, ternary: bool = False, groups: int = 1) -> torch.Tensor:
    """Float [O, C/g, KH, KW] -> packed sign bits int32 [O, KH, KW, ceil((C/g)/32)] (w >= 0 is +1);
    ternary: [2 * O, ...] rows of weight_rows."""
    return ops.pack_bits(weight_rows(weight, ternary, groups).permute(0, 2, 3, 1), 0.0)


def conv_output_format(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Match PyTorch conv: channels_last output for channels_last input, else contiguous."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return y.contiguous(memory_format=torch.channels_last)
    return y.contiguous()


class _EpilogueBuffers:
    @staticmethod
    def init(module: nn.Module, out_features: int) -> None:
        module.register_buffer("multiplier", torch.ones(out_features, dtype=torch.float32))
        module.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32))


@register_packed
class BinaryLinear(PackedModule):
    """Binary weights x binarized input, as an XNOR-popcount GEMM.

    Computes ``multiplier * (sign(x - threshold) @ sign(W).T) + bias`` with W packed.

    ternary=True: W in {-1, 0, +1} (weight_rows), computed exactly by two binary products.

    Buffers: weight_bits int32 [out (2 * out if ternary), ceil(in/32)], threshold float32 [in],
    multiplier float32 [out], bias float32 [out].
    """

    _config_keys = ("in_features", "out_features", "out_dtype", "ternary")

    def __init__(
        self, in_features: int, out_features: int, out_dtype: str | torch.dtype = "float32", ternary: bool = False
    ):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.out_dtype = dtype_from_name(out_dtype)
        self.ternary = check_bool(ternary, "ternary")
        rows = out_features * (2 if ternary else 1)
        self.register_buffer("weight_bits", torch.zeros(rows, words(in_features), dtype=torch.int32))
        self.register_buffer("threshold", torch.zeros(in_features, dtype=torch.float32))
        _EpilogueBuffers.init(self, out_features)

    @classmethod
    def from_weight(cls, weight, bias=None, *, multiplier=None, threshold=0.0, out_dtype="float32", ternary=False):
        """Pack ``weight`` [out, in] by sign (w >= 0 is +1; ternary: sign with 0 kept); multiplier/bias
        per output, threshold per input."""
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(f"weight must be a 2-D tensor [out, in], got {getattr(weight, 'shape', weight)}")
        out_f, in_f = weight.shape
        m = cls(in_f, out_f, out_dtype, ternary).to(weight.device)
        m.weight_bits.copy_(ops.pack_bits(weight_rows(weight, ternary), 0.0))
        m.threshold.copy_(per_channel(threshold, in_f, "threshold", 0.0))
        m.multiplier.copy_(per_channel(multiplier, out_f, "multiplier", 1.0))
        m.bias.copy_(per_channel(bias, out_f, "bias", 0.0))
        return m

    @classmethod
    def from_float(cls, linear: nn.Linear, *, scale=None, input_threshold=0.0, input_scale=1.0, out_dtype=None):
        """Pack an nn.Linear whose float equivalent is
        ``F.linear(input_scale * sign(x - input_threshold), scale * sign(linear.weight), linear.bias)``.

        scale: None (1), 'mean_abs' (XNOR-Net, mean |w| per output), a number or a tensor [out].
        """
        w = linear.weight
        mult = resolve_scale(scale, w) * float(input_scale)
        return cls.from_weight(
            w,
            linear.bias,
            multiplier=mult,
            threshold=input_threshold,
            out_dtype=out_dtype or (w.dtype if w.dtype.is_floating_point else torch.float32),
        )

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integer part sign(x - threshold) @ sign(W).T, int32 [..., out]."""
        check_float_input(x, type(self).__name__, None, self.in_features, -1)
        bits = ops.pack_bits(x, self.threshold)
        y = ops.xnor_gemm(bits.reshape(-1, bits.shape[-1]), self.weight_bits, self.in_features)
        if self.ternary:
            y = combine_ternary(y, -1)
        return y.reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._epilogue(self.int_forward(x), -1)


class _ConvGeometry(PackedModule):
    """Conv hyper-parameters shared by the packed conv modules."""

    geometry_keys = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups")

    def _init_geometry(
        self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, out_dtype, ternary=False
    ):
        self.ternary = check_bool(ternary, "ternary")
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        self.groups = positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError("kernel_size, stride and dilation must be >= 1 and padding >= 0")
        self.out_dtype = dtype_from_name(out_dtype)

    def _conv_bits(self, x_bits: torch.Tensor, pad_value: int) -> torch.Tensor:
        """binary_conv2d of packed NHWC input with this module's weights and geometry."""
        return ops.binary_conv2d(
            x_bits,
            self.weight_bits,
            self.in_channels,
            self.stride,
            op_padding(self.padding, self.padding_mode),
            self.dilation,
            self.groups,
            pad_value,
        )

    # 'zeros' unless a module supports other modes (_init_padding_mode): see _padding.py
    padding_mode = "zeros"

    def _init_padding_mode(self, padding_mode: str) -> None:
        self.padding_mode = check_padding_mode(padding_mode)

    def _pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """x padded in padding_mode when that is not 'zeros' (then the kernel pads nothing)."""
        return pad_input(x, self.padding, self.padding_mode)

    def _weight_bits_shape(self):
        kh, kw = self.kernel_size
        return (self.out_channels * (2 if self.ternary else 1), kh, kw, words(self.in_channels // self.groups))

    def _check_weight(self, weight: torch.Tensor) -> None:
        want = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != want:
            raise ValueError(f"weight must have shape {want}, got {getattr(weight, 'shape', weight)}")

    @staticmethod
    def _geometry_of(conv, padding_modes: bool = False) -> dict:
        """conv's geometry; with padding_modes, its padding_mode too (else only 'zeros' passes)."""
        if not isinstance(conv.padding, tuple) or isinstance(conv.padding, str):
            raise ValueError(f"string padding {conv.padding!r} is not supported; give explicit padding")
        mode = getattr(conv, "padding_mode", "zeros")
        if mode != "zeros" and not padding_modes:
            raise ValueError(f"padding_mode={conv.padding_mode!r} is not supported (zero padding only)")
        extra = dict(padding_mode=mode) if padding_modes else {}
        return dict(
            **extra,
            in_channels=conv.in_channels,
            out_channels=conv.out_channels,
            kernel_size=tuple(conv.kernel_size),
            stride=tuple(conv.stride),
            padding=tuple(conv.padding),
            dilation=tuple(conv.dilation),
            groups=conv.groups,
        )

    def _check_input(self, x: torch.Tensor) -> None:
        check_float_input(x, type(self).__name__, 4, self.in_channels, 1)


@register_packed
class BinaryConv2d(_ConvGeometry):
    """Binary 2-D convolution: ``multiplier * conv(sign(x - threshold), sign(W)) + bias``.

    Input NCHW float (any values: binarized here by ``x >= threshold[c]``), output NCHW of
    out_dtype (channels_last when the input is). pad_value 0 is zero padding of the +-1
    tensor (what ``F.conv2d(sign(x), ...)`` does); +1 / -1 pad with that value.
    padding_mode 'reflect' / 'replicate' / 'circular' pads x that way first, as nn.Conv2d does
    (pad_value must then be 0: it is not used).

    ternary=True: W in {-1, 0, +1}, computed exactly by two binary convolutions.

    Buffers: weight_bits int32 [O (2 * O if ternary), KH, KW, ceil((C/groups)/32)], threshold
    float32 [C], multiplier float32 [O], bias float32 [O].
    """

    _config_keys = _ConvGeometry.geometry_keys + ("pad_value", "out_dtype", "ternary", "padding_mode")

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        pad_value=0,
        out_dtype="float32",
        ternary=False,
        padding_mode="zeros",
    ):
        super().__init__()
        self._init_geometry(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, out_dtype, ternary
        )
        self._init_padding_mode(padding_mode)
        if pad_value not in (0, 1, -1) or isinstance(pad_value, bool):
            raise ValueError(f"pad_value must be 0, 1 or -1, got {pad_value!r}")
        if pad_value != 0 and padding_mode != "zeros":
            raise ValueError(f"pad_value={pad_value} needs padding_mode='zeros', got {padding_mode!r}")
        self.pad_value = int(pad_value)
        self.register_buffer("weight_bits", torch.zeros(self._weight_bits_shape(), dtype=torch.int32))
        self.register_buffer("threshold", torch.zeros(in_channels, dtype=torch.float32))
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
        threshold=0.0,
        pad_value=0,
        out_dtype="float32",
        ternary=False,
        padding_mode="zeros",
    ):
        """Pack ``weight`` [O, C/groups, KH, KW] by sign (w >= 0 is +1; ternary: sign with 0 kept)."""
        if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
            raise ValueError(
                f"weight must be a 4-D tensor [O, C/groups, KH, KW], got {getattr(weight, 'shape', weight)}"
            )
        o, cg, kh, kw = weight.shape
        m = cls(
            cg * groups, o, (kh, kw), stride, padding, dilation, groups, pad_value, out_dtype, ternary, padding_mode
        ).to(weight.device)
        m.weight_bits.copy_(pack_conv_weight(weight, ternary, groups))
        m.threshold.copy_(per_channel(threshold, cg * groups, "threshold", 0.0))
        m.multiplier.copy_(per_channel(multiplier, o, "multiplier", 1.0))
        m.bias.copy_(per_channel(bias, o, "bias", 0.0))
        return m

    @classmethod
    def from_float(
        cls, conv: nn.Conv2d, *, scale=None, input_threshold=0.0, input_scale=1.0, pad_value=0, out_dtype=None
    ):
        """Pack an nn.Conv2d whose float equivalent is
        ``F.conv2d(input_scale * sign(x - input_threshold), scale * sign(conv.weight), conv.bias, ...)``
        (zero padding for pad_value=0; conv.padding_mode is kept). scale: None, 'mean_abs', a number
        or a tensor [O].
        """
        g = cls._geometry_of(conv, padding_modes=True)
        w = conv.weight
        return cls.from_weight(
            w,
            conv.bias,
            stride=g["stride"],
            padding=g["padding"],
            dilation=g["dilation"],
            groups=g["groups"],
            multiplier=resolve_scale(scale, w) * float(input_scale),
            threshold=input_threshold,
            pad_value=pad_value,
            out_dtype=out_dtype or w.dtype,
            padding_mode=g["padding_mode"],
        )

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integer conv of the +-1 tensors, int32 [N, O, Ho, Wo] (channels_last storage)."""
        self._check_input(x)
        x_bits = ops.pack_bits(self._pad_input(x).permute(0, 2, 3, 1), self.threshold)
        y = self._conv_bits(x_bits, self.pad_value)
        return combine_ternary(y, 1, self.groups) if self.ternary else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_output_format(x, self._epilogue(self.int_forward(x), 1))
