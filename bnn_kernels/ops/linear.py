"""Binary weights with real activations (binary-weight networks)."""

from __future__ import annotations

import torch

from .. import _native
from ._checks import check_bits, check_k, register_fake

__all__ = ["binary_weight_linear"]


def binary_weight_linear(
    x: torch.Tensor,
    w_bits: torch.Tensor,
    k: int,
    scale: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x @ (scale[:, None] * sign(W)).T + bias`` with W packed.

    Args:
        x: float32, float64, float16 or bfloat16 [..., k].
        w_bits: int32 [N, ceil(k/32)], packed sign(W).
        scale, bias: optional float tensors [N].

    Returns:
        [..., N] of x's dtype. Accumulates in float32 (float64 for float64 x), so results
        agree with the float computation up to float rounding.
    """
    return _native.ops().binary_weight_linear(x, w_bits, k, scale, bias)


@register_fake("binary_weight_linear")
def _binary_weight_linear_fake(x, w_bits, k, scale=None, bias=None):
    check_bits(w_bits, "w_bits", 2)
    check_k(k, w_bits, "w_bits")
    torch._check(x.dim() >= 1 and x.shape[-1] == k, lambda: f"x must have k={k} features in its last dim")
    return x.new_empty((*x.shape[:-1], w_bits.shape[0]))
