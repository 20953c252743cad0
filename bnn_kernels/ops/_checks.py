"""What the op wrappers share: the register_fake decorator and the checks the fake (meta)
kernels run, which mirror csrc/torch/checks.cpp so torch.compile rejects what the kernels
reject."""

from __future__ import annotations

import torch

from .. import _native
from .._args import words


def register_fake(name: str):
    """torch.library.register_fake for bnn_kernels::name, skipped when the build is missing."""

    def wrap(fn):
        if _native.available():
            torch.library.register_fake(f"bnn_kernels::{name}")(fn)
        return fn

    return wrap


def check_bits(t: torch.Tensor, name: str, dims: int) -> None:
    torch._check(t.dtype == torch.int32, lambda: f"{name} must be an int32 tensor of packed bits, got {t.dtype}")
    torch._check(t.dim() == dims, lambda: f"{name} must have {dims} dims, got shape {tuple(t.shape)}")


def check_k(k: int, t: torch.Tensor, name: str, kname: str = "k") -> None:
    torch._check(k >= 1, lambda: f"{kname} must be >= 1, got {k}")
    torch._check(
        t.shape[-1] == words(k),
        lambda: f"{kname}={k} needs {words(k)} words in the last dim of {name}, got shape {tuple(t.shape)}",
    )
