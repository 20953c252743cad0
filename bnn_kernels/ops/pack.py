"""Packing to and from the canonical bit format.

Canonical format: +1 where x >= threshold, else -1; bit 1 means +1, bit 0 means -1;
packed along the last dim, least significant bit first, into int32 words:
ceil(K/32) words per row, tail bits 0.
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import _native
from .._args import words
from ._checks import check_k, register_fake

__all__ = ["pack_bits", "unpack_bits", "to_bitplanes"]


def pack_bits(x: torch.Tensor, threshold: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Binarize and pack x [..., K] along its last dim into int32 words [..., ceil(K/32)].

    Args:
        x: float (float32/64/16, bfloat16) or integer tensor, any layout, at least 1 dim.
        threshold: a number, or a tensor of length K (one per element of the last dim).
            An element becomes bit 1 (+1) where ``x >= threshold``, compared in x's dtype
            (the threshold is rounded to it, as ``x >= t`` does in PyTorch); integer x is
            compared in float64. So 0 maps to +1 (``torch.sign`` gives 0) and NaN to -1.

    Returns:
        int32 tensor [..., ceil(K/32)] on x's device; tail bits of the last word are 0.
    """
    if isinstance(threshold, torch.Tensor):
        if threshold.dim() == 0:
            threshold = threshold.reshape(1).expand(x.shape[-1] if x.dim() else 1)
        return _native.ops().pack_bits(x, 0.0, threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a number or a tensor, got {type(threshold).__name__}")
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN (no value is >= NaN: every bit would be 0)")
    return _native.ops().pack_bits(x, float(threshold), None)


def unpack_bits(bits: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of pack_bits: int32 words [..., ceil(k/32)] to +-1 values [..., k] of dtype."""
    return _native.ops().unpack_bits(bits, k, dtype)


def to_bitplanes(q: torch.Tensor, nbits: int, signed: bool = False) -> torch.Tensor:
    """Split an integer tensor q [..., K] into bit planes [nbits, ..., ceil(K/32)].

    Plane p holds bit p of each value (LSB first), two's complement when ``signed``; values
    must lie in [0, 2^nbits) (unsigned) or [-2^(nbits-1), 2^(nbits-1)) (signed), else
    ValueError. Decode with coefficients 2^p (and -2^(nbits-1) for the top plane when
    signed) in bitserial_gemm. nbits is 1 to 16.
    """
    # The op's schema names this argument `is_signed`: `signed` is a C++ keyword.
    return _native.ops().to_bitplanes(q, nbits, signed)


@register_fake("pack_bits")
def _pack_bits_fake(x, threshold=0.0, channel_threshold=None):
    torch._check(x.dim() >= 1, lambda: "x must have at least 1 dim")
    k = x.shape[-1]
    return x.new_empty((*x.shape[:-1], words(k)), dtype=torch.int32)


@register_fake("unpack_bits")
def _unpack_bits_fake(bits, k, dtype=None):
    torch._check(bits.dim() >= 1, lambda: "bits must have at least 1 dim")
    check_k(k, bits, "bits")
    return bits.new_empty((*bits.shape[:-1], k), dtype=dtype or torch.float32)


@register_fake("to_bitplanes")
def _to_bitplanes_fake(q, nbits, is_signed=False):
    torch._check(q.dim() >= 1, lambda: "q must have at least 1 dim")
    torch._check(1 <= nbits <= 16, lambda: f"nbits must be in [1, 16], got {nbits}")
    return q.new_empty((nbits, *q.shape[:-1], words(q.shape[-1])), dtype=torch.int32)
