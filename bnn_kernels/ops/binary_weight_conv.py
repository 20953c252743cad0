"""Binary weights with real activations: 2-D convolution (binary-weight networks)."""

from __future__ import annotations

import torch

from .. import _native
from ._checks import check_bits, register_fake
from .conv import conv_args, fake_conv_out

__all__ = ["binary_weight_conv2d"]


def binary_weight_conv2d(
    x: torch.Tensor,
    w_bits: torch.Tensor,
    in_channels: int,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    multiplier: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.conv2d(x, multiplier[:, None, None, None] * sign(W), bias, stride, padding, dilation, groups)``
    with W packed: additions and subtractions of x only, then one multiply and one add per output.

    Args:
        x: float32, float64, float16 or bfloat16 [N, C, H, W], any memory format. The kernels
            read NHWC: a channels_last x is used as it is, any other is copied to channels_last
            first.
        w_bits: int32 [O, KH, KW, ceil((C/groups)/32)], packed sign(W) in binary_conv2d's
            layout (pack_bits of w.permute(0, 2, 3, 1)); tail bits are ignored.
        in_channels: C.
        stride, padding, dilation: an int or a pair (height, width). Padding is zeros
            (exact: a padded tap adds +-0); other padding modes pad x first (F.pad).
        groups: divides C and O.
        multiplier, bias: optional float tensors [O].

    Returns:
        [N, O, Ho, Wo] of x's dtype, in x's memory format (channels_last for a channels_last
        x, contiguous otherwise), as F.conv2d does.

    Rounding: accumulates in float32 (float64 for float64 x; float16 and bfloat16 are read
    as float32 and the result rounded once to their dtype); each output is a sum of +-x over
    its K = KH * KW * C/groups taps, then ``* multiplier`` and ``+ bias``, each rounded once
    (no FMA). The summation order is fixed per CPU path (see csrc/wconv/binary_weight_conv.h;
    the CUDA kernel sums in the CPU scalar path's order, bit for bit), so the error against
    the exact result is at most about ``3 * K * 2^-24 * |multiplier| * sum |x|`` over the taps,
    and the result is exact (on every path and device alike) whenever every partial sum is,
    e.g. for integer-valued x.
    """
    return _native.ops().binary_weight_conv2d(
        x,
        w_bits,
        in_channels,
        *conv_args(stride, padding, dilation),
        groups,
        multiplier,
        bias,
    )


@register_fake("binary_weight_conv2d")
def _binary_weight_conv2d_fake(
    x, w_bits, in_channels, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, multiplier=None, bias=None
):
    torch._check(x.dim() == 4, lambda: f"x must have 4 dims [N, C, H, W], got shape {tuple(x.shape)}")
    torch._check(x.dtype.is_floating_point, lambda: f"x must be a floating point tensor, got {x.dtype}")
    torch._check(x.shape[1] == in_channels, lambda: f"x must have in_channels={in_channels} channels in dim 1")
    check_bits(w_bits, "w_bits", 4)
    ho, wo = fake_conv_out(x.shape[2], x.shape[3], w_bits, in_channels, stride, padding, dilation, groups)
    fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format
    return x.new_empty((x.shape[0], w_bits.shape[0], ho, wo)).contiguous(memory_format=fmt)


def _channels_last(x: torch.Tensor) -> bool:
    """x.suggest_memory_format() == channels_last, as the kernels decide it."""
    return torch._prims_common.suggest_memory_format(x) == torch.channels_last
