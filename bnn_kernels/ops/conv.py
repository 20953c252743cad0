"""Binary 2-D convolution over packed NHWC activations."""

from __future__ import annotations

import torch

from .. import _native
from .._args import pair, words
from ._checks import check_bits, check_epilogue, check_epilogue_dual, check_k, register_fake
from .gemm import DUAL_DOC, EPILOGUE_DOC

__all__ = ["binary_conv2d", "binary_conv2d_dual"]


def binary_conv2d(
    x_bits: torch.Tensor,
    w_bits: torch.Tensor,
    in_channels: int,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    pad_value: int = 0,
    *,
    multiplier: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    act_slope: torch.Tensor | None = None,
    act_shift_in: torch.Tensor | None = None,
    act_shift_out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    out_threshold: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.conv2d(sign(x), sign(w), None, stride, padding, dilation, groups)`` exactly, then
    the optional fused epilogue (channel n = output channel, row m = output pixel).

    Args:
        x_bits: int32 [N, H, W, ceil(C/32)], packed NHWC activations (pack_bits of x in NHWC).
        w_bits: int32 [O, KH, KW, ceil((C/groups)/32)], packed weights (pack_bits of
            w.permute(0, 2, 3, 1)).
        in_channels: C, the number of valid channel bits of x_bits.
        stride, padding, dilation: an int or a pair (height, width).
        groups: divides C and O; channels per group need not be a multiple of 32.
        pad_value: 0 (padded taps contribute 0, like zero padding of a +-1 tensor, what
            training code almost always does), or +1 / -1 (padding with that value).

    Returns:
        Without epilogue arguments: int32 [N, O, Ho, Wo] in channels_last memory format
        (NHWC storage). With float steps or out_dtype: [N, O, Ho, Wo] of out_dtype, also
        channels_last. With out_threshold: packed NHWC bits int32 [N, Ho, Wo, ceil(O/32)], the
        x_bits of a following binary_conv2d. residual is float32 [N, O, Ho, Wo] (the float
        output's shape) in any memory format; channels_last saves a copy.
    """
    return _native.ops().binary_conv2d(
        x_bits,
        w_bits,
        in_channels,
        *conv_args(stride, padding, dilation),
        groups,
        int_pad_value(pad_value),
        multiplier=multiplier,
        bias=bias,
        residual=residual,
        act_slope=act_slope,
        act_shift_in=act_shift_in,
        act_shift_out=act_shift_out,
        out_dtype=out_dtype,
        out_threshold=out_threshold,
    )


binary_conv2d.__doc__ += EPILOGUE_DOC


def binary_conv2d_dual(
    x_bits: torch.Tensor,
    w_bits: torch.Tensor,
    in_channels: int,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    pad_value: int = 0,
    *,
    multiplier: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    act_slope: torch.Tensor | None = None,
    act_shift_in: torch.Tensor | None = None,
    act_shift_out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    out_threshold: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """binary_conv2d with its epilogue, returning both (float [N, O, Ho, Wo] of out_dtype in
    channels_last memory format, packed NHWC bits int32 [N, Ho, Wo, ceil(O/32)]: the x_bits of
    the next binary_conv2d). Arguments as binary_conv2d's; out_threshold (float32 [O]) is
    required and out_dtype is a float dtype (default torch.float32).
    """
    return _native.ops().binary_conv2d_dual(
        x_bits,
        w_bits,
        in_channels,
        *conv_args(stride, padding, dilation),
        groups,
        int_pad_value(pad_value),
        multiplier=multiplier,
        bias=bias,
        residual=residual,
        act_slope=act_slope,
        act_shift_in=act_shift_in,
        act_shift_out=act_shift_out,
        out_dtype=out_dtype,
        out_threshold=out_threshold,
    )


binary_conv2d_dual.__doc__ += DUAL_DOC + EPILOGUE_DOC


def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def int_pad_value(pad_value) -> int:
    """pad_value as the schemas take it (an int; a bool or other type raises naming it; the
    kernels check the value)."""
    if isinstance(pad_value, bool) or not isinstance(pad_value, int):
        raise TypeError(f"pad_value must be the int 0, 1 or -1, got {pad_value!r}")
    return pad_value


_MAX_GEOMETRY = 2**31 - 1  # as the kernels' checks: sizes derived from the geometry stay in int64


def _check_geometry_bound(values, name: str, given) -> None:
    """ValueError naming the argument when one of its values is beyond 2^31 - 1 (given: as passed)."""
    if max(values) > _MAX_GEOMETRY:
        raise ValueError(f"{name} must be at most 2^31 - 1, got {given!r}")


def conv_args(stride, padding, dilation) -> list[list[int]]:
    """[stride, padding, dilation] as the schemas' int[2] lists (each an int or a pair; a bad
    value raises naming the argument, also one beyond 2^31 - 1, which no tensor could use)."""
    out = []
    for v, name in ((stride, "stride"), (padding, "padding"), (dilation, "dilation")):
        p = pair(v, name)
        _check_geometry_bound(p, name, v)
        out.append(list(p))
    return out


def fake_conv_out(h: int, w: int, w_bits, in_channels: int, stride, padding, dilation, groups: int) -> tuple:
    """(Ho, Wo) of a conv with packed weights w_bits [O, KH, KW, words] on an h x w input, after
    the fakes' shared checks of groups and of w_bits' words. The schema's int[2] may hand over
    one value for both dims."""
    torch._check(
        groups >= 1 and in_channels % groups == 0, lambda: f"groups={groups} must divide in_channels={in_channels}"
    )
    torch._check(w_bits.shape[3] == words(in_channels // groups), lambda: "w_bits has the wrong number of words")
    s, p, d = (list(v) * (2 // len(v)) for v in (stride, padding, dilation))
    for v, name in ((s, "stride"), (p, "padding"), (d, "dilation")):
        _check_geometry_bound(v, name, v)
    ho = conv_out_size(h, w_bits.shape[1], s[0], p[0], d[0])
    wo = conv_out_size(w, w_bits.shape[2], s[1], p[1], d[1])
    torch._check(ho >= 1 and wo >= 1, lambda: "kernel is larger than the padded input")
    torch._check_value(
        ho * wo <= 2**53, lambda: f"padding {p} gives an output of {ho}x{wo} pixels per channel, too large"
    )
    return ho, wo


@register_fake("binary_conv2d")
def _binary_conv2d_fake(
    x_bits, w_bits, in_channels, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, pad_value=0, **epilogue
):
    b, o, ho, wo = _conv_fake_shape(x_bits, w_bits, in_channels, stride, padding, dilation, groups)
    kind, dtype = check_epilogue(x_bits, o, (b, o, ho, wo), **epilogue)
    if kind == "bits":
        return x_bits.new_empty((b, ho, wo, words(o)), dtype=torch.int32)
    return x_bits.new_empty((b, o, ho, wo), dtype=dtype).contiguous(memory_format=torch.channels_last)


def _conv_fake_shape(x_bits, w_bits, in_channels, stride, padding, dilation, groups):
    """The geometry checks of binary_conv2d's fakes; the float output's shape [N, O, Ho, Wo]."""
    check_bits(x_bits, "x_bits", 4)
    check_bits(w_bits, "w_bits", 4)
    check_k(in_channels, x_bits, "x_bits", "in_channels")
    ho, wo = fake_conv_out(x_bits.shape[1], x_bits.shape[2], w_bits, in_channels, stride, padding, dilation, groups)
    return x_bits.shape[0], w_bits.shape[0], ho, wo


@register_fake("binary_conv2d_dual")
def _binary_conv2d_dual_fake(
    x_bits, w_bits, in_channels, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, pad_value=0, **epilogue
):
    b, o, ho, wo = _conv_fake_shape(x_bits, w_bits, in_channels, stride, padding, dilation, groups)
    dtype = check_epilogue_dual(x_bits, o, (b, o, ho, wo), **epilogue)
    out = x_bits.new_empty((b, o, ho, wo), dtype=dtype).contiguous(memory_format=torch.channels_last)
    return out, x_bits.new_empty((b, ho, wo, words(o)), dtype=torch.int32)
