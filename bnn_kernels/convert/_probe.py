"""Checks of a planned layer beyond the examples: the module's own rule at values exactly at its
threshold, and its agreement with the packed module on inputs derived from the examples."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn._base import quantize_round
from ._classify import channel_view, detect_tol, find_threshold, strict_threshold
from ._report import Skip
from ._trace import _Invocation, _trace

__all__ = ["run_module", "tie_threshold", "derived_inputs", "probe_threshold", "rounding_holds"]

_MAX_DISTINCT = 16  # inputs with at most this many distinct values are also resampled from them


def run_module(module: nn.Module, x: torch.Tensor) -> _Invocation | None:
    """The recorded invocation of ``module`` alone on ``x`` (eval, no grad)."""
    rec, _ = _trace(module, (x,))
    invs = [i for i in rec.invocations if i.module is module]
    return invs[-1] if invs else None


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _at_sides(z: torch.Tensor, sides: tuple[float, float]) -> bool:
    """Every value of z is one of the two binary values or their midpoint (torch.sign's 0)."""
    lo, hi = sides
    tol = detect_tol(z.dtype) * max(abs(lo), abs(hi), 1e-300)
    zd = z.double()
    return bool(torch.stack([(zd - v).abs() <= tol for v in (lo, hi, (lo + hi) / 2)]).any(0).all())


def tie_threshold(module, x, t, ch_dim, output_of, high, sides=None):
    """The packed threshold that reproduces the module at x == t: t (the module maps t high, as
    ``x >= t``), strict_threshold(t) (low, as ``x > t``), or None (mixed, or not representable, or
    with sides (lo, hi): a value at x == t that is neither side nor their midpoint, as
    heaviside(x, 0.25) gives).

    output_of(module, x) -> the tensor the module binarized; high(tensor) -> bool tensor."""
    c = x.shape[ch_dim]
    tb = channel_view(t.to(device=x.device, dtype=x.dtype), ch_dim, c, x.dim()).expand_as(x)
    mask = (torch.rand(x.shape, generator=_generator(1)) < 0.25).to(x.device)
    if not bool(mask.any()):
        mask.view(-1)[0] = True
    xt = torch.where(mask, tb, x)
    with torch.no_grad():
        z = output_of(module, xt)
    if sides is not None and not _at_sides(z[mask], sides):
        return None
    h = high(z)[mask]
    if bool(h.all()):
        return t.clone()
    if not bool(h.any()):
        return strict_threshold(t, x.dtype)
    return None


def derived_inputs(x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Inputs derived from the examples: noise, rescaled and shifted per sample (so per-sample
    statistics change), and, for inputs with few distinct values, those values resampled with a
    different mix per sample."""
    if not x.dtype.is_floating_point or x.numel() == 0:
        return []
    g = _generator()
    n = x.shape[0]
    d = x.detach().double().cpu()
    shape = [n] + [1] * (x.dim() - 1)
    flat = d.reshape(n, -1)
    spread = (flat.std(1, unbiased=False) + flat.abs().mean(1)).clamp(min=1e-6).view(shape)
    out = [
        ("noise", d + 0.3 * spread * torch.randn(d.shape, generator=g, dtype=torch.float64)),
        ("rescaled", d * (0.25 + 2.0 * torch.rand(n, generator=g, dtype=torch.float64)).view(shape)),
        ("shifted per sample", d + spread * (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1).view(shape)),
    ]
    vals = torch.unique(d)
    if 1 < vals.numel() <= _MAX_DISTINCT:
        probs = torch.rand(n, vals.numel(), generator=g, dtype=torch.float64) ** 3 + 1e-3
        idx = torch.multinomial(probs, flat.shape[1], replacement=True, generator=g)
        out.append(("values resampled per sample", vals[idx].reshape(d.shape)))
    return [(name, t.to(device=x.device, dtype=x.dtype)) for name, t in out]


def _call_input(module, x):
    inv = run_module(module, x)
    if inv is None or len(inv.calls) != 1:
        raise Skip("the module makes a different number of calls on other inputs")
    return inv.calls[0].z


def probe_threshold(x, pos, module, ch_in, extra, high, sides):
    """(label, packed threshold) reproducing ``pos`` on the examples and the module's own rule at
    values exactly at the threshold (x >= t, or x > t as in sign(relu(x)) or x > t); raises Skip.
    high(z): the call's input z counts as the high value; sides: its two values (lo, hi), the
    only values (or their midpoint, as torch.sign's 0) it may take at the threshold."""
    found = find_threshold(x, pos, module, ch_in, extra)
    if found is None:
        raise Skip("input binarization threshold not identified (not 0 and not +- a parameter of the module)")
    t = tie_threshold(module, x, found[1], ch_in, _call_input, high, sides)
    if t is None:
        raise Skip(
            f"the comparison at the threshold {found[0]} (x >= t or x > t) is not one rule, or it gives a value "
            f"there that is neither of its two values nor their midpoint, or x > t cannot be held by a float32 "
            f"threshold for {x.dtype} input"
        )
    return found[0], t


_BOUNDARY_ULPS = 8  # values probed on each side of every rounding decision boundary


def rounding_holds(module, x, m: float, nbits: int, step: float) -> bool:
    """The module's k-bit quantizer equals clamp(round(x * m), 0, 2**nbits - 1) (computed as the
    packed module computes it) at and within a few ulps of every decision boundary (k + 1/2) / m:
    where a module rounds another expression (y / alpha * n against y * (n / alpha)) the two differ
    only there, on inputs the examples almost never hold. Probes the module passes on off the grid
    are not judged (its input is quantized upstream, as in verify_derived)."""
    n = 2**nbits - 1
    b = ((torch.arange(n + 2, dtype=torch.float64) - 0.5) / m).to(x.dtype)
    vals, up, down = [b], b, b
    for _ in range(_BOUNDARY_ULPS):
        up = torch.nextafter(up, torch.full_like(up, math.inf))
        down = torch.nextafter(down, torch.full_like(down, -math.inf))
        vals += [up, down]
    v = torch.cat(vals)
    size = x.numel()
    v = torch.cat([v, v[:1].expand((-v.numel()) % size)])  # whole module inputs
    mt = torch.tensor([m], dtype=torch.float32, device=x.device)
    for chunk in v.to(x.device).split(size):
        xp = chunk.reshape(x.shape)
        try:
            z = _call_input(module, xp)
        except Skip:
            return False
        q = z.double() / step
        on_grid = (q - q.round()).abs() <= detect_tol(z.dtype) * max(1.0, float(q.abs().max()))
        if not torch.equal(q.round()[on_grid], quantize_round(xp, mt, nbits).double()[on_grid]):
            return False
    return True
