"""Multi-bit GEMM on bit planes (bit-serial, BitSplit)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _native
from ._checks import check_bits, check_k, register_fake

__all__ = ["bitserial_gemm"]


def _int_list(v, name: str) -> list[int]:
    if isinstance(v, torch.Tensor):
        if v.dtype.is_floating_point or v.dtype.is_complex or v.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got a {v.dtype} tensor")
        return [int(e) for e in v.reshape(-1).tolist()]
    if not isinstance(v, Sequence) or isinstance(v, str):
        raise TypeError(f"{name} must be a sequence of ints, got {type(v).__name__}")
    out = []
    for e in v:
        if isinstance(e, bool) or not isinstance(e, int):
            raise TypeError(f"{name} must hold ints, got {e!r}")
        out.append(e)
    return out


def bitserial_gemm(
    a_planes: torch.Tensor,
    w_planes: torch.Tensor,
    k: int,
    a_coefs: Sequence[int],
    w_coefs: Sequence[int],
    a_offset: int = 0,
    w_offset: int = 0,
    reduce: bool = True,
) -> torch.Tensor:
    """A @ W.T exactly, for values stored as packed {0,1} bit planes.

    Values are ``a = sum_p a_coefs[p] * bit_p + a_offset`` and likewise for w, so one contract
    covers +-1 binary (coefs [2], offset -1), unsigned k-bit (coefs [1, 2, 4, ...]),
    two's complement (top coefficient negative) and ternary (planes +, -: coefs [1, -1]).

    Args:
        a_planes: int32 [P, M, ceil(k/32)].
        w_planes: int32 [Q, N, ceil(k/32)].
        k: valid bits per row.
        a_coefs, w_coefs: P and Q integers.
        reduce: True gives [M, N]. False gives [P, M, N]: each {0,1} activation plane times
            the decoded W (a_coefs and a_offset unused), so BitSplit paths stay separate;
            ``sum_p a_coefs[p] * out[p] + a_offset * W.sum(1)`` is the reduced result.

    Raises ValueError when a result could overflow int32.
    """
    return _native.ops().bitserial_gemm(
        a_planes, w_planes, k, _int_list(a_coefs, "a_coefs"), _int_list(w_coefs, "w_coefs"), a_offset, w_offset, reduce
    )


@register_fake("bitserial_gemm")
def _bitserial_gemm_fake(a_planes, w_planes, k, a_coefs, w_coefs, a_offset=0, w_offset=0, reduce=True):
    check_bits(a_planes, "a_planes", 3)
    check_bits(w_planes, "w_planes", 3)
    check_k(k, a_planes, "a_planes")
    torch._check(len(a_coefs) == a_planes.shape[0], lambda: "a_coefs must have one coefficient per plane")
    torch._check(len(w_coefs) == w_planes.shape[0], lambda: "w_coefs must have one coefficient per plane")
    m, n = a_planes.shape[1], w_planes.shape[1]
    shape = (m, n) if reduce else (a_planes.shape[0], m, n)
    return a_planes.new_empty(shape, dtype=torch.int32)
