"""Checks of a planned layer beyond the examples: the module's own rule at values exactly at its
threshold, and its agreement with the packed module on inputs derived from the examples."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn._base import quantize_round
from ._classify import BN_LABEL, channel_view, detect_tol, find_thresholds, strict_threshold
from ._report import Skip
from ._trace import _Invocation, _trace

__all__ = [
    "run_module",
    "run_quietly",
    "tie_threshold",
    "derived_inputs",
    "reshaped_inputs",
    "probe_threshold",
    "probe_signed_threshold",
    "directions",
    "rounding_holds",
]

_MAX_DISTINCT = 16  # inputs with at most this many distinct values are also resampled from them


def run_module(module: nn.Module, x: torch.Tensor) -> _Invocation | None:
    """The recorded invocation of ``module`` alone on ``x`` (eval, no grad)."""
    rec, _ = _trace(module, (x,))
    invs = [i for i in rec.invocations if i.module is module]
    return invs[-1] if invs else None


def run_quietly(module: nn.Module, x: torch.Tensor) -> _Invocation | None:
    """run_module, or None where the module raises on x (a shape it does not take)."""
    try:
        return run_module(module, x)
    except Exception:
        return None


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _at_sides(z: torch.Tensor, sides: tuple[float, float], midpoint: bool = True) -> bool:
    """Every value of z is one of the two binary values or (midpoint) their midpoint (torch.sign's 0)."""
    lo, hi = sides
    tol = detect_tol(z.dtype) * max(abs(lo), abs(hi), 1e-300)
    zd = z.double()
    vals = (lo, hi, (lo + hi) / 2) if midpoint else (lo, hi)
    return bool(torch.stack([(zd - v).abs() <= tol for v in vals]).any(0).all())


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
        tp = t.clone()
    elif not bool(h.any()):
        tp = strict_threshold(t, x.dtype)
    else:
        return None
    return tp if tp is not None and _gap_holds(module, x, tp, ch_dim, output_of, high, sides) else None


_GAP_LINEAR = 64  # evenly spaced probes across the interval the examples leave open
_GAP_HALVINGS = 24  # probes at t +- width / 2**k


def _gap_values(x: torch.Tensor, tp: torch.Tensor, ch_dim: int) -> torch.Tensor:
    """Per channel, float64 [C, V]: values across the interval (lo, hi) the examples leave open
    around the threshold (lo: the largest example below it, hi: the smallest at or above it),
    evenly spaced and closing in on tp geometrically."""
    c = x.shape[ch_dim]
    xc = x.detach().double().movedim(ch_dim, 0).reshape(c, -1)
    td = tp.double().to(x.device)
    high = xc >= td[:, None]
    lo = torch.where(high, -math.inf, xc).amax(1)
    hi = torch.where(high, xc, math.inf).amin(1)
    pad = td.abs().clamp(min=1.0)
    lo = torch.where(torch.isfinite(lo), lo, td - pad)
    hi = torch.where(torch.isfinite(hi), hi, td + pad)
    w = (hi - lo)[:, None]
    frac = torch.linspace(0, 1, _GAP_LINEAR + 2, dtype=torch.float64, device=x.device)
    halv = 2.0 ** -torch.arange(1, _GAP_HALVINGS + 1, dtype=torch.float64, device=x.device)
    geo = torch.cat([td[:, None] + w * halv, td[:, None] - w * halv], 1)
    geo = torch.minimum(torch.maximum(geo, lo[:, None]), hi[:, None])
    return torch.cat([lo[:, None] + w * frac, geo, td[:, None], _far_values(xc, td, x.dtype)], 1)


# probes beyond the examples on both sides, 2**k times as far out: up to 4096 times (far enough for
# every level of a 4-bit quantizer, not so far that an STE written as sign(x) - x + x cancels)
_FAR_DOUBLINGS = 13


def _far_values(xc: torch.Tensor, td: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per channel, float64 [C, 2 * _FAR_DOUBLINGS]: values beyond the examples on both sides of td,
    within the finite values of dtype (the packed binarizer keeps its value there; a
    quantizer with more levels than the examples reach, LSQ's round(clamp(x / s, 0, 3)) * s seen
    at levels 0 and 1 only, does not)."""
    reach = torch.maximum((xc - td[:, None]).abs().amax(1), td.abs()).clamp(min=1.0)
    far = reach[:, None] * 2.0 ** torch.arange(_FAR_DOUBLINGS, dtype=torch.float64, device=xc.device)
    big = torch.finfo(dtype).max / 4 if dtype.is_floating_point else math.inf
    far = torch.minimum(far, torch.full_like(far, big))
    return torch.cat([td[:, None] + far, td[:, None] - far], 1).clamp(-big, big)


def _gap_holds(module, x, tp, ch_dim, output_of, high, sides=None) -> bool:
    """The module binarizes as ``x >= tp`` (tp in x's dtype, as packed) across the interval the
    examples leave open around the threshold, so that no other threshold in that interval (a
    small learned one the examples never separate from 0, a constant in the code) is taken for
    it, and far beyond the examples on both sides; with sides (lo, hi), every value off the
    threshold is one of the two (a third level out there is not binary). Modules that fail on
    the probes count as not holding."""
    c = x.shape[ch_dim]
    vals = _gap_values(x, tp, ch_dim).to(x.dtype)
    xm = x.detach().movedim(ch_dim, 0)
    per = xm[0].numel()
    total = -(-vals.shape[1] // per) * per  # whole module inputs
    vals = vals.repeat(1, -(-total // vals.shape[1]))[:, :total]
    tb = channel_view(tp.to(device=x.device, dtype=x.dtype), ch_dim, c, x.dim())
    xps = [chunk.reshape(xm.shape).movedim(0, ch_dim).contiguous() for chunk in vals.split(per, 1)]
    if len(xps) > 1:  # one call on them all, batched; where the module wants its own batch size, one each
        xps = [torch.cat(xps)] + xps
    for i, xp in enumerate(xps):
        try:
            with torch.no_grad():
                z = output_of(module, xp)
        except (Skip, RuntimeError):
            if i == 0 and len(xps) > 1:
                continue
            return False
        if z.shape != xp.shape:
            if i == 0 and len(xps) > 1:
                continue
            return False
        if not torch.equal(high(z), xp >= tb):
            return False
        # judged: values off the threshold (x == t may give a midpoint) that the module changed (one that
        # passes its input on, binarized upstream, packs the value it sees as one side)
        judged = (xp != tb) & (torch.nextafter(xp, torch.full_like(xp, math.inf)) != tb) & (z != xp)
        if sides is not None and not _at_sides(z[judged], sides, midpoint=False):
            return False
        if i == 0:
            return True
    return True


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


def reshaped_inputs(x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The examples at other shapes: one sample more (and the first sample alone, when there are
    several), one longer along each other dim (its first slice repeated at the end: little
    more work), and, for inputs with spatial dims (dims 2 and on), those dims all doubled (the
    sample tiled) and all halved. A module whose arithmetic reads its input's shape
    (y / y.shape[-1], a threshold scaled by the batch size) or branches on it (pools inputs
    larger than some size) differs there from a packed layer fitted at the examples' shape,
    which the examples cannot show. The callers do not judge a module on a shape it does not
    take (it raises, or makes other calls)."""
    if not x.dtype.is_floating_point or x.numel() == 0 or x.dim() == 0:
        return []
    d = x.detach()
    out = [("one sample more", torch.cat([d, d[:1].flip(-1)]))]
    if d.shape[0] > 1:
        out.append(("one sample", d[:1].clone()))
    out += [(f"dim {k} one longer", torch.cat([d, d.narrow(k, 0, 1)], k)) for k in range(1, d.dim())]
    if d.dim() > 2:
        out.append(("spatial dims doubled", d.repeat(1, 1, *[2] * (d.dim() - 2))))
        if min(d.shape[2:]) > 1:
            half = d[(slice(None),) * 2 + tuple(slice(0, s // 2) for s in d.shape[2:])]
            out.append(("spatial dims halved", half.clone()))  # a copy: a module may change its input in place
    return out


def _call_input(module, x):
    inv = run_module(module, x)
    if inv is None or len(inv.calls) != 1:
        raise Skip("the module makes a different number of calls on other inputs")
    return inv.calls[0].z


def probe_threshold(x, pos, module, ch_in, extra, high, sides):
    """(label, packed threshold) reproducing ``pos`` on the examples and the module's own rule at
    values exactly at the threshold (x >= t, or x > t as in sign(relu(x)) or x > t); raises Skip.
    high(z): the call's input z counts as the high value; sides: its two values (lo, hi), the
    only values (or their midpoint, as torch.sign's 0) it may take at the threshold.
    A binarizer that maps low inputs high in some channel (x <= t) is refused here: its
    complemented bit is a negated value only for +-a inputs (probe_signed_threshold)."""
    neg = directions(x, pos, module, ch_in, high)
    if bool(neg.any()):
        raise Skip(
            f"the input binarizer maps low inputs high (x <= t: a negative scale, sign(-x), x < t) in {int(neg.sum())} "
            f"channel(s), with {sides[0]:.4g} / {sides[1]:.4g} values: its complemented bit is not a negated value "
            "(only +-a inputs are packed so, by negating the weights reading those channels)"
        )
    return _probe_increasing(x, pos, module, ch_in, extra, high, sides, _call_input)


def probe_signed_threshold(x, pos, module, ch_in, extra, high, sides):
    """(label, packed threshold, neg bool [C]) for a +-a input: probe_threshold, where a channel
    whose binarizer maps low inputs high (neg: ``x <= t`` or ``x < t``, as sign(-x), sign(x * s)
    with s < 0, a BatchNorm with a negative gamma before the sign) is probed on -x with the same
    probes (gap, tie, far beyond the examples), and packed as the complement of ``x >= t'``:
    x <= t is NOT(x > t), so its threshold is strict_threshold(t) and its bit is the negated
    input value, exact with the weights reading that channel negated (the caller's part)."""
    neg = directions(x, pos, module, ch_in, high)
    if not bool(neg.any()):
        return (*_probe_increasing(x, pos, module, ch_in, extra, high, sides, _call_input), neg)
    c = x.shape[ch_in]
    d = channel_view(torch.where(neg, -1.0, 1.0).to(device=x.device, dtype=x.dtype), ch_in, c, x.dim())
    signs = torch.where(neg, -1.0, 1.0).cpu()
    out_of = lambda m, v: _call_input(m, v * d)  # noqa: E731
    label, tn = _probe_increasing(x * d, pos, module, ch_in, extra, high, sides, out_of, signs)
    # channel c maps -x >= tn high, i.e. x <= -tn: the packed bit x > -tn is its complement
    down = strict_threshold(-tn, x.dtype)
    if down is None:
        raise Skip(f"a decreasing input binarizer (x <= t) cannot be held by a float32 threshold for {x.dtype} input")
    return label, torch.where(neg.to(tn.device), down, tn), neg


def directions(x, pos, module, ch_dim, high, output_of=None) -> torch.Tensor:
    """bool [C]: the channels whose binarizer maps low inputs high. The examples decide a channel
    where its high and low values are separated (high below low: decreasing); a channel they
    leave on one side is decided by the module on values far out on both sides (decreasing when
    it maps the low end high and the high end low). Undecided channels count as increasing: the
    probes then judge them. output_of(module, x): the tensor the module binarized (its call's input
    by default)."""
    c = x.shape[ch_dim]
    xc = x.detach().double().movedim(ch_dim, 0).reshape(c, -1)
    pc = pos.movedim(ch_dim, 0).reshape(c, -1).to(xc.device)
    inf = torch.full_like(xc, torch.inf)
    hi_max = torch.where(pc, xc, -inf).amax(1)
    lo_min = torch.where(pc, inf, xc).amin(1)
    one_side = pc.all(1) | ~pc.any(1)
    neg = (hi_max < lo_min) & ~one_side
    if bool(one_side.any()):
        far = _far_ends(module, x, ch_dim, high, output_of or _call_input)
        if far is not None:
            neg = neg | (one_side & far.to(neg.device))
    return neg


def _far_ends(module, x, ch_dim, high, output_of):
    """bool [C]: the module maps values far below the examples high and far above them low, per
    channel (None where it fails on them)."""
    big = torch.finfo(x.dtype).max / 4
    reach = float(x.detach().double().abs().max().clamp(min=1.0)) * 2.0**_FAR_DOUBLINGS
    r = min(reach, big)
    try:
        with torch.no_grad():
            h_lo = high(output_of(module, torch.full_like(x, -r)))
            h_hi = high(output_of(module, torch.full_like(x, r)))
    except (Skip, RuntimeError):
        return None
    c = x.shape[ch_dim]
    lo = h_lo.movedim(ch_dim, 0).reshape(c, -1).all(1)
    hi = h_hi.movedim(ch_dim, 0).reshape(c, -1).any(1)
    return (lo & ~hi).cpu()


def _probe_increasing(x, pos, module, ch_in, extra, high, sides, output_of, signs=None):
    found = list(find_thresholds(x, pos, module, ch_in, extra, signs))
    if not found:
        raise Skip(
            "input binarization threshold not identified (not 0, not +- a parameter of the module, not the zero "
            "crossing of a BatchNorm before it)"
        )
    for label, cand in found:  # the examples may not tell them apart: the probes do
        if BN_LABEL in label:  # computed in float64: moved to where the module flips
            cand = _snapped(module, x, pos, cand, ch_in, output_of, high)
        t = tie_threshold(module, x, cand, ch_in, output_of, high, sides)
        if t is not None:
            return label, t
    raise Skip(
        f"input binarization threshold not identified: {', '.join(f[0] for f in found)} fit the examples, but "
        "the module binarizes otherwise exactly at it, between the examples or beyond them (another threshold, a "
        "third value that is neither of its two values nor their midpoint there, more levels than the examples "
        "reach), or x > t cannot be held by a "
        f"float32 threshold for {x.dtype} input"
    )


_SNAP_STEPS = 80  # bisection steps (a float32 interval halves to adjacent values in fewer)


def _snapped(module, x, pos, t, ch, output_of, high) -> torch.Tensor:
    """t (float32 [C], computed in another precision than the module's, as a BatchNorm's zero
    crossing: the module flips up to many ulps away) moved per channel to the smallest value of x's
    dtype that the module maps high, the value below it low: bisection between the nearest examples
    either side of t (low and high there: t fits them), or t -+ max(|t|, 1) where none is. A channel
    where a probe gives mixed values keeps t (the tie and gap probes then judge it)."""
    c = x.shape[ch]
    xc = x.detach().double().movedim(ch, 0).reshape(c, -1).cpu()
    pc = pos.movedim(ch, 0).reshape(c, -1).cpu()
    td = t.double().cpu()
    lo = torch.where(pc, -math.inf, xc).amax(1)
    hi = torch.where(pc, xc, math.inf).amin(1)
    lo = torch.where(torch.isfinite(lo), lo, td - td.abs().clamp(min=1.0)).to(x.dtype)
    hi = torch.where(torch.isfinite(hi), hi, td + td.abs().clamp(min=1.0)).to(x.dtype)

    def state(v):  # per channel: 1 all high, 0 all low, -1 mixed
        with torch.no_grad():
            h = high(output_of(module, channel_view(v.to(x.device), ch, c, x.dim()).expand_as(x).contiguous()))
        hc = h.movedim(ch, 0).reshape(c, -1).cpu()
        return torch.where(hc.all(1), 1, torch.where(hc.any(1), -1, 0))

    try:
        ok = (state(lo) == 0) & (state(hi) == 1)
        for _ in range(_SNAP_STEPS):
            mid = ((lo.double() + hi.double()) / 2).to(x.dtype)
            open_ = (mid != lo) & (mid != hi)
            if not bool(open_.any()):
                break
            st = state(mid)
            ok &= st != -1
            hi = torch.where(open_ & (st == 1), mid, hi)
            lo = torch.where(open_ & (st == 0), mid, lo)
    except (Skip, RuntimeError):
        return t.cpu()
    return torch.where(ok, hi.float(), t.cpu())


_BOUNDARY_ULPS = 8  # values probed on each side of every rounding decision boundary


def _far_off_grid(n: int, m: float, dtype: torch.dtype) -> torch.Tensor:
    """Values a quarter step off the grid, from just above the top level 2**j times as far out, and
    below 0 (off the grid, so that a module passing its input on, quantized upstream, is not judged
    there, while an unclamped or wider quantizer is)."""
    nmant = round(-math.log2(torch.finfo(dtype).eps))  # mantissa bits
    j = torch.arange(max(1, min(_FAR_DOUBLINGS, nmant - 6)), dtype=torch.float64)
    top = (n + 1) * 2.0**j + 0.25
    return (torch.cat([top, 0.25 - top]) / m).to(dtype)


def rounding_holds(module, x, m: float, nbits: int, step: float) -> bool:
    """The module's k-bit quantizer equals clamp(round(x * m), 0, 2**nbits - 1) (computed as the
    packed module computes it) at and within a few ulps of every decision boundary (k + 1/2) / m:
    where a module rounds another expression (y / alpha * n against y * (n / alpha)) the two differ
    only there, on inputs the examples almost never hold; and far beyond the top and below 0
    (a quantizer with more levels than the examples reach: LSQ's 4-bit clamp seen at 3 bits).
    Probes the module passes on off the grid are not judged (its input is quantized upstream, as
    in verify_derived)."""
    n = 2**nbits - 1
    b = ((torch.arange(n + 2, dtype=torch.float64) - 0.5) / m).to(x.dtype)
    vals, up, down = [b], b, b
    for _ in range(_BOUNDARY_ULPS):
        up = torch.nextafter(up, torch.full_like(up, math.inf))
        down = torch.nextafter(down, torch.full_like(down, -math.inf))
        vals += [up, down]
    vals.append(_far_off_grid(n, m, x.dtype))
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
        on_grid = (q - q.round()).abs() <= detect_tol(z.dtype) * q.abs().clamp(min=1.0)
        judged = on_grid & (z != xp)  # values the module passes on are quantized upstream
        if not torch.equal(q.round()[judged], quantize_round(xp, mt, nbits).double()[judged]):
            return False
    return True
