"""Plain-PyTorch reference of every op: the oracle the kernels are tested against.

Slow and simple on purpose: every function states the contract directly (unpack to
+-1 / integer values, compute in float64, which is exact for these integer results).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._args import pair, words

__all__ = [
    "binarize",
    "pack_bits",
    "unpack_bits",
    "to_bitplanes",
    "decode_bitplanes",
    "xnor_gemm",
    "binary_conv2d",
    "bitserial_gemm",
    "binary_weight_linear",
    "epilogue",
    "binary_weight_conv2d",
    "xnor_gemm_dual",
    "binary_conv2d_dual",
]

_SHIFTS = torch.arange(32, dtype=torch.int64)


def binarize(x: torch.Tensor, threshold: float | torch.Tensor = 0.0) -> torch.Tensor:
    """+1 where x >= threshold (compared in x's dtype, integers in float64), else -1, as float64."""
    if x.dtype.is_floating_point:
        t = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
        ge = x >= t
    else:
        ge = x.double() >= torch.as_tensor(threshold, dtype=torch.float64, device=x.device)
    return ge.double() * 2 - 1


def _pack01(bits01: torch.Tensor) -> torch.Tensor:
    """{0,1} [..., K] -> int32 words [..., ceil(K/32)], LSB first, tail 0."""
    k = bits01.shape[-1]
    w = words(k)
    padded = F.pad(bits01.to(torch.int64), (0, 32 * w - k))
    packed = (padded.reshape(*bits01.shape[:-1], w, 32) << _SHIFTS.to(bits01.device)).sum(-1)
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)
    return packed.to(torch.int32)


def _unpack01(bits: torch.Tensor, k: int) -> torch.Tensor:
    """int32 words [..., W] -> {0,1} int64 [..., k]."""
    b = (bits.to(torch.int64).unsqueeze(-1) >> _SHIFTS.to(bits.device)) & 1
    return b.reshape(*bits.shape[:-1], bits.shape[-1] * 32)[..., :k]


def pack_bits(x: torch.Tensor, threshold: float | torch.Tensor = 0.0) -> torch.Tensor:
    return _pack01(binarize(x, threshold) > 0)


def unpack_bits(bits: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (_unpack01(bits, k) * 2 - 1).to(dtype)


def to_bitplanes(q: torch.Tensor, nbits: int, signed: bool = False) -> torch.Tensor:
    lo, hi = (-(2 ** (nbits - 1)), 2 ** (nbits - 1) - 1) if signed else (0, 2**nbits - 1)
    q = q.to(torch.int64)
    if q.numel() and (q.min() < lo or q.max() > hi):
        raise ValueError(f"q has values outside [{lo}, {hi}]")
    return torch.stack([_pack01((q >> p) & 1) for p in range(nbits)])


def decode_bitplanes(planes: torch.Tensor, k: int, coefs: Sequence[int], offset: int = 0) -> torch.Tensor:
    """[P, ..., W] planes -> float64 values sum_p coefs[p] * bit_p + offset, [..., k]."""
    vals = torch.zeros(planes.shape[1:-1] + (k,), dtype=torch.float64, device=planes.device)
    for p, c in enumerate(coefs):
        vals += c * _unpack01(planes[p], k).double()
    return vals + offset


def epilogue(
    acc: torch.Tensor,
    multiplier=None,
    bias=None,
    residual=None,
    act_slope=None,
    act_shift_in=None,
    act_shift_out=None,
    out_dtype=None,
    out_threshold=None,
    channel_dim: int = -1,
) -> torch.Tensor:
    """The fused epilogue of xnor_gemm / binary_conv2d as the unfused torch sequence (the
    order and rounding of csrc/common/epilogue.h): int32 acc with its channels in dim
    channel_dim (1 for conv's [N, O, Ho, Wo]); per-channel vectors [C]; residual of acc's shape.
    Returns acc itself without float steps, out_dtype or out_threshold; the packed bits of
    y >= out_threshold with channels moved last ([..., ceil(C/32)]) with out_threshold; else y
    as out_dtype (float32 by default)."""
    float_steps = any(t is not None for t in (multiplier, bias, residual, act_slope))
    if out_threshold is None and out_dtype in (None, torch.int32) and not float_steps:
        return acc
    shape = [1] * acc.dim()
    shape[channel_dim] = -1

    def ch(v):
        return v.reshape(shape)

    y = acc.float()
    if multiplier is not None:
        y = y * ch(multiplier)
    if bias is not None:
        y = y + ch(bias)
    if residual is not None:
        y = y + residual
    if act_slope is not None:
        t = y + ch(act_shift_in) if act_shift_in is not None else y
        t = torch.where(t > 0, t, ch(act_slope) * t)
        y = t + ch(act_shift_out) if act_shift_out is not None else t
    if out_threshold is not None:
        return _pack01((y >= ch(out_threshold)).movedim(channel_dim, -1))
    return y.to(out_dtype or torch.float32)


def xnor_gemm(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int, **epilogue_args) -> torch.Tensor:
    acc = (unpack_bits(a_bits, k, torch.float64) @ unpack_bits(b_bits, k, torch.float64).T).to(torch.int32)
    return epilogue(acc, **epilogue_args)


def binary_conv2d(x_bits, w_bits, in_channels, stride=1, padding=0, dilation=1, groups=1, pad_value=0, **epilogue_args):
    x = unpack_bits(x_bits, in_channels, torch.float64).permute(0, 3, 1, 2)
    w = unpack_bits(w_bits, in_channels // groups, torch.float64).permute(0, 3, 1, 2)
    ph, pw = pair(padding, "padding")
    if pad_value != 0:
        x = F.pad(x, (pw, pw, ph, ph), value=float(pad_value))
        ph = pw = 0
    y = F.conv2d(x, w, None, pair(stride, "stride"), (ph, pw), pair(dilation, "dilation"), groups)
    return epilogue(y.to(torch.int32), channel_dim=1, **epilogue_args)


def _dual(op, args, epilogue_args):
    """(float output, bits) of a dual op: the op with out_dtype (float32 by default), then with
    out_threshold (the bits of the float32 y, never of the rounded output)."""
    kw = dict(epilogue_args)
    thr, out_dtype = kw.pop("out_threshold"), kw.pop("out_dtype", None)
    return op(*args, **kw, out_dtype=out_dtype or torch.float32), op(*args, **kw, out_threshold=thr)


def xnor_gemm_dual(a_bits, b_bits, k, **epilogue_args):
    return _dual(xnor_gemm, (a_bits, b_bits, k), epilogue_args)


def binary_conv2d_dual(x_bits, w_bits, in_channels, stride=1, padding=0, dilation=1, groups=1, pad_value=0, **kw):
    return _dual(binary_conv2d, (x_bits, w_bits, in_channels, stride, padding, dilation, groups, pad_value), kw)


def bitserial_gemm(a_planes, w_planes, k, a_coefs, w_coefs, a_offset=0, w_offset=0, reduce=True):
    w = decode_bitplanes(w_planes, k, w_coefs, w_offset)
    if reduce:
        return (decode_bitplanes(a_planes, k, a_coefs, a_offset) @ w.T).to(torch.int32)
    return torch.stack([_unpack01(a_planes[p], k).double() @ w.T for p in range(a_planes.shape[0])]).to(torch.int32)


def binary_weight_linear(x, w_bits, k, scale=None, bias=None):
    """Computed in float64 and cast to x's dtype."""
    w = unpack_bits(w_bits, k, torch.float64)
    if scale is not None:
        w = w * scale.double()[:, None]
    y = x.double() @ w.T
    if bias is not None:
        y = y + bias.double()
    return y.to(x.dtype)


def binary_weight_conv2d(x, w_bits, in_channels, stride=1, padding=0, dilation=1, groups=1, multiplier=None, bias=None):
    """F.conv2d(x, multiplier * sign(W), bias) computed in float64 and cast to x's dtype."""
    w = unpack_bits(w_bits, in_channels // groups, torch.float64).permute(0, 3, 1, 2)
    if multiplier is not None:
        w = w * multiplier.double().view(-1, 1, 1, 1)
    b = None if bias is None else bias.double()
    s, p, d = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    return F.conv2d(x.double(), w, b, s, p, d, groups).to(x.dtype)
