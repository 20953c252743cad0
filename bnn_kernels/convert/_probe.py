"""Checks of a planned layer beyond the examples: the module's own rule at values exactly at its
threshold, and its agreement with the packed module on inputs derived from the examples."""
from __future__ import annotations

import torch
from torch import nn

from ._classify import channel_view, strict_threshold
from ._trace import _Invocation, _trace

__all__ = ["run_module", "tie_threshold", "derived_inputs"]

_MAX_DISTINCT = 16  # inputs with at most this many distinct values are also resampled from them


def run_module(module: nn.Module, x: torch.Tensor) -> _Invocation | None:
    """The recorded invocation of ``module`` alone on ``x`` (eval, no grad)."""
    rec, _ = _trace(module, (x,))
    invs = [i for i in rec.invocations if i.module is module]
    return invs[-1] if invs else None


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tie_threshold(module, x, t, ch_dim, output_of, high):
    """The packed threshold that reproduces the module at x == t: t (the module maps t high, as
    ``x >= t``), strict_threshold(t) (low, as ``x > t``), or None (mixed, or not representable).

    output_of(module, x) -> the tensor the module binarized; high(tensor) -> bool tensor."""
    c = x.shape[ch_dim]
    tb = channel_view(t.to(device=x.device, dtype=x.dtype), ch_dim, c, x.dim()).expand_as(x)
    mask = (torch.rand(x.shape, generator=_generator(1)) < 0.25).to(x.device)
    if not bool(mask.any()):
        mask.view(-1)[0] = True
    xt = torch.where(mask, tb, x)
    with torch.no_grad():
        h = high(output_of(module, xt))[mask]
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
