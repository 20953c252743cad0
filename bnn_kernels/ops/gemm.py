"""XNOR-popcount GEMM on packed rows."""

from __future__ import annotations

import torch

from .. import _native
from ._checks import check_bits, check_k, register_fake

__all__ = ["xnor_gemm"]


def xnor_gemm(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    """sign(A) @ sign(B).T exactly, for packed A [M, W] and B [N, W] of k bits per row.

    Args:
        a_bits: int32 [M, ceil(k/32)], rows packed by pack_bits.
        b_bits: int32 [N, ceil(k/32)].
        k: number of valid bits per row (1 <= k <= 32 * W). Bits past k are ignored.

    Returns:
        int32 [M, N] with entries k - 2 * popcount(a ^ b), in [-k, k].
    """
    return _native.ops().xnor_gemm(a_bits, b_bits, k)


@register_fake("xnor_gemm")
def _xnor_gemm_fake(a_bits, b_bits, k):
    check_bits(a_bits, "a_bits", 2)
    check_bits(b_bits, "b_bits", 2)
    torch._check(a_bits.shape[1] == b_bits.shape[1], lambda: "a_bits and b_bits must have the same words per row")
    check_k(k, a_bits, "a_bits")
    return a_bits.new_empty((a_bits.shape[0], b_bits.shape[0]), dtype=torch.int32)
