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


# The fused epilogue's keyword arguments of xnor_gemm and binary_conv2d, in schema order.
EPILOGUE_ARGS = (
    "multiplier",
    "bias",
    "residual",
    "act_slope",
    "act_shift_in",
    "act_shift_out",
    "out_dtype",
    "out_threshold",
)
_FLOAT_OUT = (torch.float32, torch.float16, torch.bfloat16)


def check_epilogue(like: torch.Tensor, n: int, float_shape, **kw) -> tuple[str, torch.dtype]:
    """Mirrors check_epilogue of csrc/torch/checks.cpp. Returns what the op returns: ("int32",
    torch.int32), ("float", dtype) or ("bits", torch.int32)."""
    for name in ("multiplier", "bias", "act_slope", "act_shift_in", "act_shift_out", "out_threshold"):
        t = kw.get(name)
        if t is None:
            continue
        torch._check(t.dtype == torch.float32, lambda: f"{name} must be a float32 tensor, got {t.dtype}")
        torch._check(t.dim() == 1 and t.shape[0] == n, lambda: f"{name} must have shape [{n}], got {tuple(t.shape)}")
        torch._check(t.device == like.device, lambda: f"{name} must be on the device of the packed inputs")
    torch._check(
        kw.get("act_slope") is not None or (kw.get("act_shift_in") is None and kw.get("act_shift_out") is None),
        lambda: "act_shift_in and act_shift_out need act_slope",
    )
    r = kw.get("residual")
    if r is not None:
        torch._check(r.dtype == torch.float32, lambda: f"residual must be a float32 tensor, got {r.dtype}")
        torch._check(tuple(r.shape) == tuple(float_shape), lambda: f"residual must have shape {tuple(float_shape)}")
        torch._check(r.device == like.device, lambda: "residual must be on the device of the packed inputs")
    float_steps = any(kw.get(a) is not None for a in ("multiplier", "bias", "residual", "act_slope"))
    out_dtype = kw.get("out_dtype")
    if kw.get("out_threshold") is not None:
        torch._check(out_dtype is None, lambda: "out_dtype and out_threshold exclude each other")
        return "bits", torch.int32
    if out_dtype is not None:
        ok = out_dtype in _FLOAT_OUT or (out_dtype == torch.int32 and not float_steps)
        torch._check(ok, lambda: f"out_dtype must be torch.float32, torch.float16 or torch.bfloat16, got {out_dtype}")
        if out_dtype != torch.int32:
            return "float", out_dtype
    elif float_steps:
        return "float", torch.float32
    return "int32", torch.int32


def check_epilogue_dual(like: torch.Tensor, n: int, float_shape, **kw) -> torch.dtype:
    """Mirrors check_epilogue_dual of csrc/torch/checks.cpp (xnor_gemm_dual, binary_conv2d_dual):
    out_threshold is required, the float output's dtype (returned) float32 by default."""
    thr, out_dtype = kw.get("out_threshold"), kw.get("out_dtype")
    torch._check(thr is not None, lambda: "out_threshold is required: the dual ops return the float output and bits")
    torch._check(
        out_dtype is None or out_dtype in _FLOAT_OUT,
        lambda: f"out_dtype must be torch.float32, torch.float16 or torch.bfloat16, got {out_dtype}",
    )
    check_epilogue(like, n, float_shape, **{**kw, "out_threshold": None})  # the float output's arguments
    check_epilogue(like, n, float_shape, out_threshold=thr)
    return out_dtype or torch.float32
