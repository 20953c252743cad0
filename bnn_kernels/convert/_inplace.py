"""Calls that write into their input through an argument of their own (``F.relu(x, inplace=True)``,
``F.hardtanh(x, -1, 1, True)``), which their names (relu, hardtanh) do not show: for the tracking in
_trace.py of modules that change their input tensor in place."""

from __future__ import annotations

import functools
import inspect

__all__ = ["inplace_arg"]


@functools.lru_cache(maxsize=None)
def _inplace_index(func) -> int:
    """Position of func's ``inplace`` parameter (F.relu, F.hardtanh, F.leaky_relu...), or -1."""
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return -1
    return params.index("inplace") if "inplace" in params else -1


def inplace_arg(func, args, kwargs) -> bool:
    """The call writes into its input through its own argument: F.relu(x, inplace=True)."""
    if kwargs.get("inplace") is True:
        return True
    try:
        i = _inplace_index(func)
    except TypeError:  # unhashable
        i = -1
    return 0 <= i < len(args) and args[i] is True
