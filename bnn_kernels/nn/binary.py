"""Fully binary layers: binarized input x binary weights, XNOR-popcount, float epilogue.

    y = multiplier[o] * (sign(x - threshold) (*) sign(W))[o] + bias[o]

where sign maps 0 to +1 (bit 1 means +1), the integer part is computed exactly by
``xnor_gemm`` / ``binary_conv2d`` and the epilogue runs in float32 (float64 when
out_dtype is float64) before the cast to out_dtype.

For float32 / float16 / bfloat16 outputs of binary (not ternary) weights the epilogue runs
inside the kernel (the ops' fused epilogue, csrc/common/epilogue.h), and so can more steps:
``forward(x, residual)`` adds a residual, ``set_activation(slope, shift_in, shift_out)``
attaches PReLU / RPReLU, ``set_out_threshold(t)`` makes the layer return packed bits
(y >= t per channel) that a following binary layer takes as its input directly, so no
float tensor passes between them. Each step rounds as the unfused torch sequence does.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ..ops.conv import conv_out_size
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


# The optional fused steps after multiplier and bias, as buffers of the same names (float32
# [out]); config key ``fused`` lists those a module holds, so from_config rebuilds them.
FUSED_BUFFERS = ("act_slope", "act_shift_in", "act_shift_out", "out_threshold")


class _FusedSteps:
    """PReLU / RPReLU, residual and bit-packed output of BinaryLinear / BinaryConv2d, run in
    the kernel's fused epilogue (order and rounding of csrc/common/epilogue.h):

        y = float(acc) * multiplier + bias (+ residual)
        t = y + act_shift_in;  t = t if t > 0 else act_slope * t;  y = t + act_shift_out
        output y as out_dtype, or the packed bits of y >= out_threshold

    Available where the kernel runs the epilogue: binary (not ternary) weights and out_dtype
    float32, float16 or bfloat16."""

    def _init_fused(self, fused, channels: int) -> None:
        fused = tuple(fused)
        bad = [f for f in fused if f not in FUSED_BUFFERS]
        if bad or len(set(fused)) != len(fused):
            raise ValueError(f"fused must list distinct names of {FUSED_BUFFERS}, got {list(fused)}")
        if ("act_shift_in" in fused or "act_shift_out" in fused) and "act_slope" not in fused:
            raise ValueError("fused: act_shift_in / act_shift_out need act_slope")
        self.fused = tuple(f for f in FUSED_BUFFERS if f in fused)
        for f in self.fused:
            self.register_buffer(f, torch.zeros(channels, dtype=torch.float32))
        if self.fused:
            self._check_fusable("fused steps")

    def _fusable(self) -> bool:
        return not self.ternary and self.out_dtype in (torch.float32, torch.float16, torch.bfloat16)

    def _check_fusable(self, what: str) -> None:
        if not self._fusable():
            raise ValueError(
                f"{type(self).__name__}: {what} need(s) the kernel's fused epilogue, which runs for binary "
                f"(not ternary) weights and out_dtype float32, float16 or bfloat16 (this one: ternary="
                f"{self.ternary}, out_dtype={self.out_dtype})"
            )

    def _set_fused(self, name: str, value) -> None:
        n = self.multiplier.shape[0]
        if value is None:
            if name in self.fused:
                delattr(self, name)
            self.fused = tuple(f for f in self.fused if f != name)
            return
        t = per_channel(value, n, name, 0.0).to(self.multiplier.device)
        if name in self.fused:
            getattr(self, name).copy_(t)
        else:
            self.register_buffer(name, t)
            self.fused = tuple(f for f in FUSED_BUFFERS if f in self.fused or f == name)

    def set_activation(self, slope, shift_in=None, shift_out=None):
        """Attach PReLU (slope per output channel, a number or a tensor [out]) or RPReLU of
        ReActNet, ``prelu(y - gamma, slope) + zeta``: shift_in = -gamma, shift_out = zeta
        (either may be None: skipped, not added as 0). slope=None removes the activation.
        Returns self."""
        if slope is None:
            if shift_in is not None or shift_out is not None:
                raise ValueError("set_activation: shift_in / shift_out need a slope")
            for f in ("act_slope", "act_shift_in", "act_shift_out"):
                self._set_fused(f, None)
            return self
        self._check_fusable("an activation")
        self._set_fused("act_slope", slope)
        self._set_fused("act_shift_in", shift_in)
        self._set_fused("act_shift_out", shift_out)
        return self

    def set_out_threshold(self, threshold):
        """Return packed bits of y >= threshold (per output channel) instead of y: int32
        [..., ceil(out/32)] (BinaryLinear) or NHWC [N, Ho, Wo, ceil(O/32)] (BinaryConv2d), the
        input a following BinaryLinear / BinaryConv2d takes as it is (its own threshold is then
        not used: this one binarizes). None returns floats again. Returns self."""
        if threshold is not None:
            self._check_fusable("packed output")
        self._set_fused("out_threshold", threshold)
        return self

    def _fused_kwargs(self, residual) -> dict:
        kw = dict(multiplier=self.multiplier, bias=self.bias, residual=residual)
        for f in self.fused:
            kw[f] = getattr(self, f)
        if "out_threshold" not in self.fused:
            kw["out_dtype"] = self.out_dtype
        return kw

    def _residual(self, residual, shape) -> torch.Tensor | None:
        if residual is None:
            return None
        if not self._fusable():
            self._check_fusable("a residual")
        if not isinstance(residual, torch.Tensor) or tuple(residual.shape) != tuple(shape):
            raise ValueError(
                f"{type(self).__name__}: residual must have the output's shape {tuple(shape)}, "
                f"got {tuple(getattr(residual, 'shape', ()))}"
            )
        return residual.to(torch.float32)  # added in float32, before the one rounding to out_dtype


@register_packed
class BinaryLinear(_FusedSteps, PackedModule):
    """Binary weights x binarized input, as an XNOR-popcount GEMM.

    Computes ``multiplier * (sign(x - threshold) @ sign(W).T) + bias`` with W packed.

    ternary=True: W in {-1, 0, +1} (weight_rows), computed exactly by two binary products.

    Input: float [..., in], binarized here by ``x >= threshold``, or the packed bits int32
    [..., ceil(in/32)] of a previous layer's set_out_threshold.

    Buffers: weight_bits int32 [out (2 * out if ternary), ceil(in/32)], threshold float32 [in],
    multiplier float32 [out], bias float32 [out], and those of ``fused`` (act_slope,
    act_shift_in, act_shift_out, out_threshold: float32 [out]; see set_activation and
    set_out_threshold).
    """

    _config_keys = ("in_features", "out_features", "out_dtype", "ternary", "fused")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        out_dtype: str | torch.dtype = "float32",
        ternary: bool = False,
        fused=(),
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
        self._init_fused(fused, out_features)

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

    def _input_bits(self, x: torch.Tensor) -> torch.Tensor:
        """Packed input bits [..., ceil(in/32)]: x itself when int32 (packed), else x binarized."""
        if isinstance(x, torch.Tensor) and x.dtype == torch.int32:
            if x.dim() == 0 or x.shape[-1] != words(self.in_features):
                raise ValueError(
                    f"{type(self).__name__}: packed input must have {words(self.in_features)} int32 words in "
                    f"its last dim, got shape {tuple(x.shape)}"
                )
            return x
        check_float_input(x, type(self).__name__, None, self.in_features, -1)
        return ops.pack_bits(x, self.threshold)

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integer part sign(x - threshold) @ sign(W).T, int32 [..., out]."""
        bits = self._input_bits(x)
        y = ops.xnor_gemm(bits.reshape(-1, bits.shape[-1]), self.weight_bits, self.in_features)
        if self.ternary:
            y = combine_ternary(y, -1)
        return y.reshape(*bits.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """y [..., out] of out_dtype (+ residual [..., out], then the activation), or its packed
        bits [..., ceil(out/32)] after set_out_threshold."""
        if not self._fusable():
            self._residual(residual, ())  # raises for a residual
            return self._epilogue(self.int_forward(x), -1)
        bits = self._input_bits(x)
        lead = bits.shape[:-1]
        r = self._residual(residual, (*lead, self.out_features))
        kw = self._fused_kwargs(None if r is None else r.reshape(-1, self.out_features))
        y = ops.xnor_gemm(bits.reshape(-1, bits.shape[-1]), self.weight_bits, self.in_features, **kw)
        return y.reshape(*lead, y.shape[-1])


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
class BinaryConv2d(_FusedSteps, _ConvGeometry):
    """Binary 2-D convolution: ``multiplier * conv(sign(x - threshold), sign(W)) + bias``.

    Input NCHW float (any values: binarized here by ``x >= threshold[c]``), output NCHW of
    out_dtype (channels_last when the input is). pad_value 0 is zero padding of the +-1
    tensor (what ``F.conv2d(sign(x), ...)`` does); +1 / -1 pad with that value.
    padding_mode 'reflect' / 'replicate' / 'circular' pads x that way first, as nn.Conv2d does
    (pad_value must then be 0: it is not used).

    ternary=True: W in {-1, 0, +1}, computed exactly by two binary convolutions.

    Input may also be packed NHWC bits int32 [N, H, W, ceil(C/32)] (a previous layer's
    set_out_threshold output); the output is then channels_last.

    Buffers: weight_bits int32 [O (2 * O if ternary), KH, KW, ceil((C/groups)/32)], threshold
    float32 [C], multiplier float32 [O], bias float32 [O], and those of ``fused`` (act_slope,
    act_shift_in, act_shift_out, out_threshold: float32 [O]).
    """

    _config_keys = _ConvGeometry.geometry_keys + ("pad_value", "out_dtype", "ternary", "fused", "padding_mode")

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
        fused=(),
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
        self._init_fused(fused, out_channels)

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
            cg * groups,
            o,
            (kh, kw),
            stride,
            padding,
            dilation,
            groups,
            pad_value,
            out_dtype,
            ternary,
            padding_mode=padding_mode,
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

    def _input_bits(self, x: torch.Tensor) -> torch.Tensor:
        """Packed NHWC input bits: x itself when int32 (packed), else x binarized."""
        if isinstance(x, torch.Tensor) and x.dtype == torch.int32:
            if x.dim() != 4 or x.shape[-1] != words(self.in_channels):
                raise ValueError(
                    f"{type(self).__name__}: packed input must be NHWC int32 [N, H, W, {words(self.in_channels)}], "
                    f"got shape {tuple(x.shape)}"
                )
            if self.padding_mode != "zeros":
                raise ValueError(
                    f"{type(self).__name__}: packed input needs padding_mode='zeros' (the border copies of "
                    f"padding_mode={self.padding_mode!r} are made from float input), got packed int32 input"
                )
            return x
        self._check_input(x)
        return ops.pack_bits(self._pad_input(x).permute(0, 2, 3, 1), self.threshold)

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integer conv of the +-1 tensors, int32 [N, O, Ho, Wo] (channels_last storage)."""
        y = self._conv_bits(self._input_bits(x), self.pad_value)
        return combine_ternary(y, 1, self.groups) if self.ternary else y

    _int_forward_2d = int_forward  # what forward calls (the 1-D modules override int_forward only)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """y [N, O, Ho, Wo] of out_dtype (+ residual of that shape, then the activation), or
        its packed NHWC bits [N, Ho, Wo, ceil(O/32)] after set_out_threshold."""
        if not self._fusable():
            self._residual(residual, ())  # raises for a residual
            return conv_output_format(x, self._epilogue(self._int_forward_2d(x), 1))
        x_bits = self._input_bits(x)  # padded already unless padding_mode is 'zeros'
        padding = op_padding(self.padding, self.padding_mode)
        n, h, w = x_bits.shape[:3]
        ho, wo = (
            conv_out_size(s, k, st, p, d)
            for s, k, st, p, d in zip((h, w), self.kernel_size, self.stride, padding, self.dilation)
        )
        r = self._residual(residual, (n, self.out_channels, ho, wo))
        y = ops.binary_conv2d(
            x_bits,
            self.weight_bits,
            self.in_channels,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            self.pad_value,
            **self._fused_kwargs(r),
        )
        if "out_threshold" in self.fused or x.dtype == torch.int32:
            return y
        return conv_output_format(x, y)
