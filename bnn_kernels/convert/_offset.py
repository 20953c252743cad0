"""Planning of offset-binary layers (AdaBin): activations beta +- alpha, weights beta_o +- alpha_o
per output channel (or +-alpha_o), packed as OffsetBinaryConv2d."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..nn import OffsetBinaryConv2d
from ._classify import TOL, detect_tol, fit_affine, geometry
from ._conv1d import as_2d, from_2d, packed_of
from ._fuse import apply_affine
from ._probe import probe_threshold
from ._report import Skip
from ._trace import _Invocation
from ._verify import Check, verify, verify_derived

__all__ = ["offset_pair", "plan_offset"]


def _two_values(v: torch.Tensor, dim=None):
    """(lo, hi) when every value (along dim, or all) is within tolerance of its min or max, else None."""
    lo = v.amin(dim) if dim is not None else v.min()
    hi = v.amax(dim) if dim is not None else v.max()
    span = torch.maximum(hi.abs(), lo.abs()).clamp(min=1e-300)
    tol = detect_tol(v.dtype) * span
    lo_, hi_, tol_ = (t.unsqueeze(-1) for t in (lo, hi, tol)) if dim is not None else (lo, hi, tol)
    if not bool((((v - lo_).abs() <= tol_) | ((v - hi_).abs() <= tol_)).all()):
        return None
    return lo.double(), hi.double()


def offset_pair(z: torch.Tensor):
    """(alpha, beta) when z takes two values beta +- alpha that are neither +-a nor {0, a}, else None."""
    if not z.dtype.is_floating_point or z.numel() == 0:
        return None
    two = _two_values(z.detach())
    if two is None:
        return None
    lo, hi = float(two[0]), float(two[1])
    tol = detect_tol(z.dtype) * max(abs(lo), abs(hi))
    if hi - lo <= tol or abs(lo + hi) <= tol or abs(lo) <= tol or abs(hi) <= tol:
        return None
    return (hi - lo) / 2, (hi + lo) / 2


def _weight_signs(w: torch.Tensor) -> torch.Tensor:
    """s_w = +-1 per element: above or below the middle of its output channel's two values."""
    wd = w.detach().double()
    mid = (wd.flatten(1).amax(1) + wd.flatten(1).amin(1)).view(-1, *[1] * (wd.dim() - 1)) / 2
    return torch.where(wd >= mid, 1.0, -1.0).double()


def _int_check(a: float, b: float):
    def check(new, inv: _Invocation) -> bool:
        c = inv.calls[0]
        s_a = torch.round((c.z.double() - b) / a)
        want = from_2d(c, F.conv2d(*as_2d(c, s_a, _weight_signs(c.w)), None, **geometry(c)))
        return torch.equal(new.int_forward(inv.args[0]).double(), want)

    return check


def plan_offset(invs: list[_Invocation], alpha: float, beta: float):
    """(OffsetBinaryConv2d, report entry, notes, its Check) for a layer whose call input is
    beta +- alpha; raises Skip."""
    first = invs[0]
    call, x = first.calls[0], first.args[0]
    if call.kind == "linear":
        raise Skip("offset-binary input (beta +- alpha) to a linear layer: not supported")
    if call.pad_border is not None:
        raise Skip("offset-binary input (beta +- alpha) with a constant F.pad of nonzero values: not supported")
    if call.padding_mode != "zeros":
        raise Skip(f"offset-binary input (beta +- alpha) with padding_mode={call.padding_mode!r}: not supported")
    if _two_values(call.w.detach().reshape(call.w.shape[0], -1), 1) is None:
        raise Skip("offset-binary input (beta +- alpha) but the weights are not two values per output channel")
    if x.shape != call.z.shape:
        raise Skip("the call's input is not an elementwise function of the module's input (shapes differ)")
    label, t = probe_threshold(
        x, call.z > beta, first.module, 1, [beta], lambda z: z >= beta, (beta - alpha, beta + alpha)
    )
    ga, gb = fit_affine(call.y, first.out, 1)
    new = OffsetBinaryConv2d.from_weight(
        *as_2d(call, call.w),
        call.b,
        act_scale=alpha,
        act_offset=beta,
        threshold=t,
        out_dtype=first.out.dtype,
        **geometry(call),
    )
    new = packed_of(call, new).eval()
    apply_affine(new, ga, gb)
    chk = Check(
        _int_check(alpha, beta),
        lambda z: offset_pair(z) is not None,
        new.multiplier.double().abs(),
        1,
        upstream=all(torch.equal(i.args[0], i.calls[0].z) for i in invs),
    )
    max_abs, max_rel, exact = verify(new, invs, chk)
    desc = f"offset-binary input {beta:.4g} +- {alpha:.4g} (x >= {label})"
    tol = TOL.get(first.out.dtype, 1e-4)
    if not exact:
        raise Skip(f"verification failed: the packed integer part differs from the call's ({desc})")
    if max_rel > tol:
        raise Skip(f"verification failed: packed output deviates by {max_rel:.3g} (relative) from the module's output")
    verify_derived(new, invs, chk, tol)
    layer = dict(module=type(new).__name__, kind=desc, max_abs=max_abs, max_rel=max_rel, int_exact=True)
    return new, layer, [], chk
