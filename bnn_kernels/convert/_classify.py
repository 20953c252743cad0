"""Classification of one recorded conv/linear call: what its weights and its input are, how the
input derives from the module's input, and how the module's output derives from the call's."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn._base import quantize_round
from ._conv1d import CONV1D, geometry_1d
from ._report import RealWeights, Skip
from ._trace import _Call

_DETECT_TOL = 1e-3  # relative distance to +-alpha / the grid still counted as on it, float16 / bfloat16
_DETECT_ULPS = 32  # the same for float32 / float64, in units of eps: STE rounding, never a learned factor
_MAX_GRID_BITS = 4

# Accepted per-channel relative deviation of a packed module's output; the epilogue parameters
# are stored as float32, so float64 models are matched to float32 precision.
TOL = {torch.float32: 1e-4, torch.float64: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}


def detect_tol(dtype: torch.dtype) -> float:
    """Relative distance of a value to +-alpha or to a grid point still counted as on it: the float
    rounding of straight-through estimators written as ``out.detach() - s.detach() + s`` (a few
    ulps), never a deviation a model computes on purpose (e.g. a per-channel activation scale of
    1 + 1e-4, which packed as +-1 would be off by more than rounding). float16 / bfloat16 keep
    _DETECT_TOL, widened to 2 eps (bfloat16 rounds 1/3 by 2e-3)."""
    if dtype in (torch.float32, torch.float64):
        return _DETECT_ULPS * torch.finfo(dtype).eps
    return max(_DETECT_TOL, 2 * torch.finfo(dtype).eps) if dtype.is_floating_point else _DETECT_TOL


def weight_alpha(w: torch.Tensor):
    """-> (alpha float64 [O] >= 0, number of exact zeros); raises RealWeights when some output
    channel is not +-alpha. A channel of zeros only (pruned, or torch.sign of a dead channel) has
    alpha 0: its zeros count, so it is packed as ternary zeros, exactly."""
    if not w.dtype.is_floating_point:
        raise Skip(f"weight has dtype {w.dtype}, not floating point")
    tol = detect_tol(w.dtype)
    a = w.detach().double().abs().reshape(w.shape[0], -1)
    nz = a > 0
    cnt = nz.sum(1)
    alpha = torch.where(cnt > 0, (a * nz).sum(1) / cnt.clamp(min=1), torch.zeros_like(cnt, dtype=torch.float64))
    dev = ((a - alpha[:, None]).abs() * nz).amax(1) / alpha.clamp(min=1e-300)
    if bool((dev > tol).any()):
        srt = w.detach().reshape(w.shape[0], -1).sort(1).values
        levels = int((1 + (srt[:, 1:] != srt[:, :-1]).sum(1)).max()) if srt.shape[1] else 0
        if 2 < levels <= 2**_MAX_GRID_BITS and srt.shape[1] > 2**_MAX_GRID_BITS:
            raise RealWeights(
                f"weights are not +-alpha per output channel: they take up to {levels} values per channel "
                "(multi-bit weights, as DoReFa's k-bit weights, are not packed; the layer stays float)"
            )
        raise RealWeights("weights are not +-alpha per output channel (a real-valued layer)")
    zeros = int((~nz).sum())
    return alpha, zeros


def _grid_kind(zd: torch.Tensor, v: torch.Tensor, amax: float, tol: float):
    """("round", step, nbits) for non-negative values on a k-bit grid (k <= 4), else None."""
    for k in range(1, _MAX_GRID_BITS + 1):  # the canonical DoReFa grid on [0, 1] first
        q = zd * (2**k - 1)
        if amax <= 1 + tol and float((q - q.round()).abs().max()) <= tol:
            return ("round", 1.0 / (2**k - 1), k)
    vmin = float(v.min())
    for j in range(1, 2**_MAX_GRID_BITS):  # else the largest step that fits
        s = vmin / j
        q = v / s
        if float(q.max()) > 2**_MAX_GRID_BITS - 1 + 0.5:
            break
        if float((q - q.round()).abs().max()) <= tol:
            return ("round", s, max(1, math.ceil(math.log2(float(q.round().max()) + 1))))
    return None


def input_kind(z: torch.Tensor):
    """-> ("sign", a, zeros) | ("step", a) | ("round", step, nbits) | ("real",).

    "sign" with zeros > 0: values in {-a, 0, +a} with both signs, the zeros being torch.sign(0)."""
    if not z.dtype.is_floating_point or z.numel() == 0:
        return ("real",)
    tol = detect_tol(z.dtype)
    zd = z.detach().double()
    za = zd.abs()
    amax = float(za.max())
    if amax == 0:
        return ("real",)
    nz = za[za > amax * tol]
    has_zero = bool((za <= amax * tol).any())
    a = float(nz.mean())
    if float((nz - a).abs().max()) <= tol * a and (not has_zero or float(zd.min()) < -amax * tol):
        return ("sign", a, int((za <= amax * tol).sum()))
    if float(zd.min()) < -amax * tol:
        return ("real",)
    v = zd[zd > amax * tol]
    if float((v - a).abs().max()) <= tol * a:
        return ("step", a)
    return _grid_kind(zd, v, amax, tol) or ("real",)


def channel_view(t: torch.Tensor, ch_dim: int, c: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[ch_dim] = c
    return t.reshape(shape)


def _threshold_candidates(module: nn.Module, c: int, extra: list[float]):
    """0, then +- the module's own parameters and buffers of 1 or c values, then the extra values
    (the module's parameters first: when the examples cannot tell two candidates apart, the
    threshold the module learned is the likely one; the derived inputs check the choice)."""
    yield "0", torch.zeros(c)
    for pname, p in list(module.named_parameters()) + list(module.named_buffers()):
        if not p.dtype.is_floating_point or p.numel() not in (1, c):
            continue
        t = p.detach().float().reshape(-1).expand(c)
        yield pname, t.clone()
        yield f"-{pname}", -t
    for v in extra:
        if isinstance(v, tuple):  # (label, float64 [C]): a threshold computed from the module's parameters
            yield v[0], v[1].float()
            yield f"-{v[0]}", -v[1].float()
        else:
            yield f"{v:g}", torch.full((c,), v)


def bn_thresholds(pre_bn: list, c: int) -> list:
    """[(label, float64 [C])]: the zero crossing x = mean - bias * sqrt(var + eps) / weight of each
    eval-mode batch_norm over c channels recorded before the call (a BatchNorm before the sign,
    as in XNOR-Net; a negative weight flips the side). Computed in float64: the module rounds
    otherwise, so the probes move each channel to the exact value where it flips (_probe)."""
    out = []
    for i, bn in enumerate(pre_bn):
        mean, var, w, b = (bn[k] for k in ("running_mean", "running_var", "weight", "bias"))
        if bn["training"] or mean is None or var is None or mean.numel() != c:
            continue
        w = torch.ones(c, dtype=torch.float64) if w is None else w.detach().double().reshape(-1).cpu()
        b = torch.zeros(c, dtype=torch.float64) if b is None else b.detach().double().reshape(-1).cpu()
        t = mean.double().cpu() - b * torch.sqrt(var.double().cpu() + float(bn["eps"])) / w
        if bool(torch.isfinite(t).all()):
            out.append((f"{BN_LABEL}{i or ''}", t))
    return out


BN_LABEL = "batch_norm_zero"


def strict_threshold(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """float32 t' with ``x >= t'`` == ``x > t`` for every x of dtype (the packed comparison runs in
    x's dtype with the threshold rounded to it), or None where float32 cannot hold it (float64)."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return None
    td = t.to(dtype)
    return torch.nextafter(td, torch.full_like(td, math.inf)).float()


def find_thresholds(x, pos, module, ch_dim, extra, signs=None):
    """Every (label, t [C]) among the candidates such that ``x >= t`` or ``x > t`` equals pos on the
    examples, in candidate order (which of the two holds at x == t is probed by the caller).
    signs: +-1 [C], each candidate multiplied by it (x negated in some channels)."""
    c = x.shape[ch_dim]
    for label, t in _threshold_candidates(module, c, extra):
        t = t if signs is None else t * signs.to(t.device)
        tb = channel_view(t.to(device=x.device, dtype=x.dtype), ch_dim, c, x.dim())
        if torch.equal(x >= tb, pos) or torch.equal(x > tb, pos):
            yield label, t


def find_threshold(x, pos, module, ch_dim, extra):
    """The first of find_thresholds, or None."""
    return next(find_thresholds(x, pos, module, ch_dim, extra), None)


def find_in_mul(x, q_expected, step, nbits, module, holds=None):
    """The multiplier m with clamp(round(x * m), 0, 2**nbits - 1) == q_expected and holds(m) (the
    module's own rounding at the grid's decision boundaries), or None. Candidates: 1 / step, its
    nearest integer, and n / p for the module's scalar parameters p, computed in p's dtype (as the
    module computes n / alpha) and in float64."""
    n = 2**nbits - 1
    cands = [1.0 / step]
    if abs(1.0 / step - round(1.0 / step)) <= 1e-3:
        cands.append(float(round(1.0 / step)))
    for _, p in list(module.named_parameters()) + list(module.named_buffers()):
        if p.dtype.is_floating_point and p.numel() == 1 and float(p.detach()) != 0:
            cands += [float(n / p.detach().reshape(())), n / float(p.detach())]
    for m in dict.fromkeys(cands):
        q = quantize_round(x, torch.tensor([m], dtype=torch.float32, device=x.device), nbits)
        if torch.equal(q, q_expected) and (holds is None or holds(m)):
            return m
    return None


def negate_inputs(w: torch.Tensor, neg: torch.Tensor, groups: int) -> torch.Tensor:
    """w [O, C / groups, ...] (conv) or [O, C] (linear) with the weights that read an input channel c
    where neg[c] (bool [C]) negated: in every output row of c's group, the column of c."""
    o, cg = w.shape[0], w.shape[1]
    s = torch.where(neg.to(w.device), -1.0, 1.0).to(w.dtype).view(groups, 1, cg)
    return w * s.expand(groups, o // groups, cg).reshape(o, cg, *[1] * (w.dim() - 2))


def fit_affine(y: torch.Tensor, o: torch.Tensor, ch_dim: int, fixed: torch.Tensor | None = None):
    """Per-channel a, b with o ~= a * y + b (float64 [C]); raises Skip. fixed: bool [C], channels
    whose y is constant by construction (weights all zero): a = 1 there, b the mean of o - y."""
    c = y.shape[ch_dim]
    yc = y.double().movedim(ch_dim, -1).reshape(-1, c)
    oc = o.double().movedim(ch_dim, -1).reshape(-1, c)
    if torch.equal(yc, oc):
        return torch.ones(c, dtype=torch.float64, device=y.device), torch.zeros(c, dtype=torch.float64, device=y.device)
    my, mo = yc.mean(0), oc.mean(0)
    vy = ((yc - my) ** 2).mean(0)
    cov = ((yc - my) * (oc - mo)).mean(0)
    fixed = torch.zeros(c, dtype=torch.bool, device=y.device) if fixed is None else fixed.to(y.device)
    if bool(((vy == 0) & ~fixed).any()):
        raise Skip(
            "some output channel is constant on the examples: cannot identify its scale (use more varied inputs)"
        )
    a = torch.where(fixed, 1.0, cov / vy.clamp(min=1e-300))
    return a, mo - a * my


def geometry(call: _Call) -> dict:
    """stride / padding / dilation pairs and groups of a conv2d call (of the conv2d of height 1 a
    conv1d call is); raises Skip."""
    if call.kind == CONV1D:
        return geometry_1d(call)
    kh, kw = call.w.shape[2], call.w.shape[3]
    st = (call.stride, call.stride) if isinstance(call.stride, int) else tuple(call.stride)
    dl = (call.dilation, call.dilation) if isinstance(call.dilation, int) else tuple(call.dilation)
    pd = call.padding
    if isinstance(pd, str):
        if pd == "valid":
            pd = (0, 0)
        elif pd == "same":
            tot = (dl[0] * (kh - 1), dl[1] * (kw - 1))
            if tot[0] % 2 or tot[1] % 2:
                raise Skip("padding='same' with an even kernel pads asymmetrically (not supported)")
            pd = (tot[0] // 2, tot[1] // 2)
        else:
            raise Skip(f"padding={pd!r} not understood")
    pd = (pd, pd) if isinstance(pd, int) else tuple(pd)
    st, pd, dl = (tuple(st) * 2)[:2], (tuple(pd) * 2)[:2], (tuple(dl) * 2)[:2]
    return dict(stride=st, padding=pd, dilation=dl, groups=int(call.groups))


def deviation(got: torch.Tensor, want: torch.Tensor, ch_dim: int, step: torch.Tensor):
    """(max abs, max over channels of abs / (max |want_c| + step_c)); step_c is one unit of the
    channel's integer result, so channels whose outputs are all ~0 are not judged by rounding noise."""
    d = (got.double() - want.double()).abs()
    c = want.shape[ch_dim]
    dc = d.movedim(ch_dim, -1).reshape(-1, c).amax(0)
    wc = want.double().abs().movedim(ch_dim, -1).reshape(-1, c).amax(0) + step.abs()
    rel = torch.where(wc > 0, dc / wc.clamp(min=1e-300), torch.where(dc > 0, torch.inf, 0.0))
    return float(d.max()) if d.numel() else 0.0, float(rel.max()) if rel.numel() else 0.0
