"""BitSplit: each activation bit its own binary path (BitSplit-Net).

Plane p of the input is ``x >= thresholds[p, c]``, valued {0, 1} or +-1 (plane_values), and
goes through sign(W) as its own binary product; reduce=False keeps the paths apart
([P, ...] outputs, each with its own multiplier and bias), reduce=True sums them.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ._base import (
    PackedModule,
    check_float_input,
    dtype_from_name,
    positive_int,
    register_packed,
    resolve_scale,
    words,
)
from .binary import BinaryConv2d, _ConvGeometry, conv_output_format, pack_conv_weight
from .bitserial import _planes_conv

__all__ = ["BitSplitLinear", "BitSplitConv2d"]


class _BitSplitMixin:
    """Paths: plane p is ``x >= thresholds[p, c]``, valued {0, 1} or +-1 (plane_values)."""

    def _init_paths(self, paths, plane_values, reduce, channels, outputs):
        self.paths = positive_int(paths, "paths")
        if plane_values not in ("01", "pm1"):
            raise ValueError(f"plane_values must be '01' or 'pm1', got {plane_values!r}")
        if not isinstance(reduce, bool):
            raise TypeError(f"reduce must be a bool, got {reduce!r}")
        self.plane_values, self.reduce = plane_values, reduce
        self.register_buffer("thresholds", torch.zeros(paths, channels, dtype=torch.float32))
        self.register_buffer("multiplier", torch.ones(paths, outputs, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(paths, outputs, dtype=torch.float32))

    def _set_paths(self, thresholds, multiplier, bias, channels, outputs):
        p = self.paths
        t = torch.as_tensor(thresholds, dtype=torch.float32)
        if t.dim() <= 1:
            t = t.reshape(-1, 1).expand(p, channels) if t.numel() == p else t.expand(p, channels)
        if tuple(t.shape) != (p, channels):
            raise ValueError(f"thresholds must have {p} values or shape [{p}, {channels}], got {tuple(t.shape)}")
        self.thresholds.copy_(t)
        for name, v, default in (("multiplier", multiplier, 1.0), ("bias", bias, 0.0)):
            v = torch.as_tensor(default if v is None else v, dtype=torch.float32)
            if v.dim() <= 1 and v.numel() in (1, p) and not (v.numel() == outputs and v.numel() != p):
                v = v.reshape(-1, 1).expand(p, outputs)
            elif v.dim() == 1 and v.numel() == outputs:
                v = v.reshape(1, -1).expand(p, outputs)
            if tuple(v.shape) != (p, outputs):
                raise ValueError(
                    f"{name} must be a number, [{p}], [{outputs}] or [{p}, {outputs}], got {tuple(v.shape)}"
                )
            getattr(self, name).copy_(v)

    def _planes(self, x_last: torch.Tensor) -> torch.Tensor:
        return torch.stack([ops.pack_bits(x_last, self.thresholds[p]) for p in range(self.paths)])


@register_packed
class BitSplitLinear(_BitSplitMixin, PackedModule):
    """Each activation bit its own binary path: plane p = (x >= thresholds[p]) through sign(W).

    reduce=False returns [P, ..., out] with path p = multiplier[p] * (b_p @ sign(W).T) + bias[p];
    reduce=True returns their sum [..., out].
    """

    _config_keys = ("in_features", "out_features", "paths", "plane_values", "reduce", "out_dtype")

    def __init__(self, in_features, out_features, paths=2, plane_values="01", reduce=False, out_dtype="float32"):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.out_dtype = dtype_from_name(out_dtype)
        self.register_buffer("weight_bits", torch.zeros(out_features, words(in_features), dtype=torch.int32))
        self._init_paths(paths, plane_values, reduce, in_features, out_features)

    @classmethod
    def from_float(
        cls, linear: nn.Linear, thresholds, *, plane_values="01", coefs=None, scale=None, reduce=False, out_dtype=None
    ):
        """Path p's float equivalent: ``F.linear(coefs[p] * b_p(x), scale * sign(W))``; the layer bias
        is added to path 0. thresholds: [P] or [P, in]."""
        w = linear.weight
        t = torch.as_tensor(thresholds, dtype=torch.float32)
        p = t.shape[0]
        m = cls(w.shape[1], w.shape[0], p, plane_values, reduce, out_dtype or w.dtype).to(w.device)
        m.weight_bits.copy_(ops.pack_bits(w.detach(), 0.0))
        c = torch.ones(p) if coefs is None else torch.as_tensor(coefs, dtype=torch.float32).reshape(p)
        mult = c.reshape(p, 1) * resolve_scale(scale, w).cpu().reshape(1, -1)
        bias = torch.zeros(p, w.shape[0])
        if linear.bias is not None:
            bias[0] = linear.bias.detach().float().cpu()
        m._set_paths(t, mult, bias, w.shape[1], w.shape[0])
        return m

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Exact per-path integer results, int32 [P, ..., out]."""
        check_float_input(x, type(self).__name__, None, self.in_features, -1)
        planes = self._planes(x)
        planes = planes.reshape(self.paths, -1, planes.shape[-1])
        if self.plane_values == "pm1":
            y = ops.xnor_gemm(planes.reshape(-1, planes.shape[-1]), self.weight_bits, self.in_features)
        else:
            y = ops.bitserial_gemm(
                planes, self.weight_bits.unsqueeze(0), self.in_features, [1] * self.paths, [2], 0, -1, reduce=False
            )
        return y.reshape(self.paths, *x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._epilogue(self.int_forward(x), -1, path_dim=0, reduce=self.reduce)


@register_packed
class BitSplitConv2d(_BitSplitMixin, _ConvGeometry):
    """Each activation bit its own binary conv path (BitSplit-Net style), zero padding.

    Plane p = (x >= thresholds[p, c]) with values {0, 1} or +-1; path p =
    ``multiplier[p] * conv(b_p, sign(W)) + bias[p]``. reduce=False returns [P, N, O, Ho, Wo],
    reduce=True the sum over paths [N, O, Ho, Wo]. All paths run in one binary_conv2d call.
    """

    _config_keys = _ConvGeometry.geometry_keys + ("paths", "plane_values", "reduce", "out_dtype")

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        paths=2,
        plane_values="01",
        reduce=False,
        out_dtype="float32",
    ):
        super().__init__()
        self._init_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, out_dtype)
        self.register_buffer("weight_bits", torch.zeros(self._weight_bits_shape(), dtype=torch.int32))
        self._init_paths(paths, plane_values, reduce, in_channels, out_channels)

    @classmethod
    def from_float(
        cls, conv: nn.Conv2d, thresholds, *, plane_values="01", coefs=None, scale=None, reduce=False, out_dtype=None
    ):
        """Path p's float equivalent: ``F.conv2d(coefs[p] * b_p(x), scale * sign(W), ...)``; the conv bias
        is added to path 0. thresholds: [P] or [P, C]."""
        g = BinaryConv2d._geometry_of(conv)
        w = conv.weight
        t = torch.as_tensor(thresholds, dtype=torch.float32)
        p = t.shape[0]
        m = cls(**g, paths=p, plane_values=plane_values, reduce=reduce, out_dtype=out_dtype or w.dtype).to(w.device)
        m.weight_bits.copy_(pack_conv_weight(w))
        c = torch.ones(p) if coefs is None else torch.as_tensor(coefs, dtype=torch.float32).reshape(p)
        mult = c.reshape(p, 1) * resolve_scale(scale, w).cpu().reshape(1, -1)
        bias = torch.zeros(p, w.shape[0])
        if conv.bias is not None:
            bias[0] = conv.bias.detach().float().cpu()
        m._set_paths(t, mult, bias, g["in_channels"], g["out_channels"])
        return m

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Exact per-path integer convs, int32 [P, N, O, Ho, Wo]."""
        self._check_input(x)
        return _planes_conv(self, self._planes(x.permute(0, 2, 3, 1)), zero_one=self.plane_values == "01")

    _int_forward_2d = int_forward  # what forward calls (the 1-D modules override int_forward only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._epilogue(self._int_forward_2d(x), 2, path_dim=0, reduce=self.reduce)
        if self.reduce:
            return conv_output_format(x, y)
        return y.contiguous()
