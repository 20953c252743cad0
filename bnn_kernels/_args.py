"""Argument normalization shared by the op wrappers, the reference and the packed modules.

Pure Python (no build needed), so ``bnn_kernels.reference`` can use it too.
"""

from __future__ import annotations

import numbers
import operator

__all__ = ["words", "pair"]


def words(k: int) -> int:
    """32-bit words holding k packed bits: ceil(k / 32)."""
    return (k + 31) // 32


def pair(v, name: str) -> tuple[int, int]:
    """An int or a pair of ints (height, width) as a pair: TypeError for other types (floats,
    bools included), ValueError for sequences that are not of length 2."""
    msg = f"{name} must be an int or a pair of ints, got {v!r}"
    if isinstance(v, (bool, str, bytes)):
        raise TypeError(msg)
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    try:
        items = list(v)
    except TypeError:
        raise TypeError(msg) from None
    if len(items) != 2:
        raise ValueError(msg)
    if any(isinstance(e, bool) for e in items):
        raise TypeError(msg)
    try:
        return (operator.index(items[0]), operator.index(items[1]))
    except TypeError:
        raise TypeError(msg) from None
