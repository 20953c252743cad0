"""Trained float BNN -> packed model: ``convert(model, example_inputs)``.

How it works (no class names are looked at):

1. The model runs once on ``example_inputs`` (eval mode, no grad) under a TorchFunctionMode
   that intercepts every ``F.conv2d`` / ``torch.conv2d`` / ``F.linear`` call and records the
   tensors the call really used: its input Z, its effective weight W (after whatever sign /
   centring / scaling the training code applied), its bias and its output. Forward hooks on
   every module keep a module stack, so each call is attributed to the innermost module whose
   forward made it; the hooks also record that module's own input X and output O.
2. Each call is classified. The weight is *binary* when every output channel is +-alpha
   (any alpha: per layer or per channel, negative, learned...). The input Z is
   - +-a                 -> BinaryConv2d / BinaryLinear,
   - {0, a}              -> BitSerial*(act="step"),
   - a grid s * {0..2^k-1}, k <= 4 -> BitSerial*(act="round"),
   - anything else       -> BinaryWeightConv2d / BinaryWeightLinear (real input).
3. The packed module replaces the whole module that made the call, so it must reproduce the
   module's forward from X: the relation X -> Z is identified (identity, ``sign(x)``,
   ``sign(x - t)`` / ``sign(x + b)`` with t a parameter of the module, Heaviside, DoReFa
   rounding) and so is O <- Y (identity or a per-channel affine map, e.g. a scale applied
   after the call; every op the module applies to data derived from Y is checked to be
   affine in Y: add/sub/mul/div by other tensors, views, eval BatchNorm). What cannot be
   identified is skipped with a reason.
4. Each new module is verified on the recorded examples: its integer part against the call's
   output (exact), its float output against O (float rounding), and at the end the whole
   converted model against the original.

Fusion (``fuse=True``): a module that directly consumes the output of a converted module (and
nothing else reads that output) is folded into the packed module's per-channel multiplier and
bias, and replaced by ``bnn_kernels.nn.Folded``, when it is
- an eval-mode BatchNorm (its exact running statistics and affine parameters are used), or
- any per-channel scale + shift written as arithmetic (``x * s + b``...): every op on data
  derived from its input must be affine in it (add/sub/mul/div by tensors not derived from the
  input, views, batch_norm), which is tracked op by op; the per-channel a, b are then fitted on
  the examples and checked. ReLU, PReLU, ``x * x`` and the like are never folded.
One module is folded per packed module (a chain BN -> scale folds the BN only).
On the input side, a module that binarizes the input of a packed binary module (sign(x),
sign(x + b) with b a parameter of that module: RSign) and whose output nothing else reads is
folded into the packed module's per-channel threshold, so the float sign is not computed.

Semantics differences to keep in mind: packing maps an input exactly equal to the threshold
to +1 (``torch.sign`` gives 0 there), and an exactly-zero weight to +1 (reported; refused
under strict=True).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .nn import BinaryConv2d, BinaryLinear, BinaryWeightConv2d, BinaryWeightLinear, BitSerialConv2d, BitSerialLinear
from ._trace import _Call, _Invocation, _Recorder, _run, _trace
from .nn._base import Folded, PackedModule

__all__ = ["convert", "ConversionReport", "ConversionError"]

_DETECT_TOL = 1e-3  # relative distance to +-alpha / the grid still counted as on it (STE rounding)


def _detect_tol(dtype: torch.dtype) -> float:
    """_DETECT_TOL, widened for low-precision dtypes (bfloat16 rounds 1/3 by 2e-3)."""
    return max(_DETECT_TOL, 2 * torch.finfo(dtype).eps) if dtype.is_floating_point else _DETECT_TOL


_MAX_GRID_BITS = 4


class ConversionError(ValueError):
    """Raised by convert(strict=True) when a binary layer cannot be converted exactly."""


@dataclass
class ConversionReport:
    """What convert() did.

    converted: qualified names of the replaced modules, in call order.
    skipped: {name: reason} for every module that made a conv/linear call and was not replaced
        (real-valued layers included, with the reason "weights are not ...").
    layers: {name: {"module": packed class, "kind": ..., "max_abs": ..., "max_rel": ...,
        "int_exact": bool}}: per-layer deviation of the packed module from the original
        module's output on the examples (max_rel is per output channel, relative to that
        channel's largest |output| plus one step of its integer result).
    notes: {name: [str]} non-fatal findings (exact-zero weights...).
    fused: {folded module name: packed module name}.
    model_max_abs / model_max_rel: converted model vs original model on the examples.
    """

    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    layers: dict[str, dict] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    fused: dict[str, str] = field(default_factory=dict)
    model_max_abs: float = 0.0
    model_max_rel: float = 0.0

    def note(self, name: str, msg: str) -> None:
        self.notes.setdefault(name, []).append(msg)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s), skipped {len(self.skipped)}, fused {len(self.fused)}"]
        for n in self.converted:
            d = self.layers[n]
            lines.append(
                f"  + {n}: {d['module']} ({d['kind']}) max_abs={d['max_abs']:.3g} max_rel={d['max_rel']:.3g}"
                f"{'' if d['int_exact'] else ' (integer part NOT exact)'}"
            )
        for n, why in self.skipped.items():
            lines.append(f"  - {n}: {why}")
        for n, into in self.fused.items():
            lines.append(f"  * {n} folded into {into}")
        for n, msgs in self.notes.items():
            for m in msgs:
                lines.append(f"  ! {n}: {m}")
        lines.append(f"  model output deviation: max_abs={self.model_max_abs:.3g} max_rel={self.model_max_rel:.3g}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Classification of one call
# ---------------------------------------------------------------------------------------------
class _Skip(Exception):
    pass


def _weight_alpha(w: torch.Tensor):
    """-> (alpha float64 [O] >= 0, number of exact zeros in channels with alpha > 0) or _Skip."""
    if not w.dtype.is_floating_point:
        raise _Skip(f"weight has dtype {w.dtype}, not floating point")
    tol = _detect_tol(w.dtype)
    a = w.detach().double().abs().reshape(w.shape[0], -1)
    nz = a > 0
    cnt = nz.sum(1)
    alpha = torch.where(cnt > 0, (a * nz).sum(1) / cnt.clamp(min=1), torch.zeros_like(cnt, dtype=torch.float64))
    dev = ((a - alpha[:, None]).abs() * nz).amax(1) / alpha.clamp(min=1e-300)
    if bool((dev > tol).any()):
        raise _Skip("weights are not +-alpha per output channel (a real-valued layer)")
    zeros = int(((~nz) & (cnt[:, None] > 0)).sum())
    return alpha, zeros


def _input_kind(z: torch.Tensor):
    """-> ("sign", a, zeros) | ("step", a) | ("round", step, nbits) | ("real",).

    "sign" with zeros > 0: values in {-a, 0, +a} with both signs, the zeros being torch.sign(0)."""
    if not z.dtype.is_floating_point or z.numel() == 0:
        return ("real",)
    tol = _detect_tol(z.dtype)
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
    return ("real",)


def _channel_view(t: torch.Tensor, ch_dim: int, c: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[ch_dim] = c
    return t.reshape(shape)


def _threshold_candidates(module: nn.Module, c: int, extra: list[float]):
    yield "0", torch.zeros(c)
    for v in extra:
        yield f"{v:g}", torch.full((c,), v)
    for pname, p in list(module.named_parameters()) + list(module.named_buffers()):
        if not p.dtype.is_floating_point or p.numel() not in (1, c):
            continue
        t = p.detach().float().reshape(-1).expand(c)
        yield pname, t.clone()
        yield f"-{pname}", -t


def _find_threshold(x, pos, module, ch_dim, extra):
    c = x.shape[ch_dim]
    for label, t in _threshold_candidates(module, c, extra):
        tb = _channel_view(t.to(device=x.device, dtype=x.dtype), ch_dim, c, x.dim())
        if torch.equal(x >= tb, pos):
            return label, t
    return None


def _find_in_mul(x, q_expected, step, nbits, module):
    from .nn._base import quantize_round

    n = 2**nbits - 1
    cands = [1.0 / step]
    if abs(1.0 / step - round(1.0 / step)) <= 1e-3:
        cands.append(float(round(1.0 / step)))
    for _, p in list(module.named_parameters()) + list(module.named_buffers()):
        if p.dtype.is_floating_point and p.numel() == 1 and float(p.detach()) != 0:
            cands.append(n / float(p.detach()))
    for m in cands:
        q = quantize_round(x, torch.tensor([m], dtype=torch.float32, device=x.device), nbits)
        if torch.equal(q, q_expected):
            return m
    return None


def _fit_affine(y: torch.Tensor, o: torch.Tensor, ch_dim: int):
    """Per-channel a, b with o ~= a * y + b (float64 [C]), or _Skip."""
    c = y.shape[ch_dim]
    yc = y.double().movedim(ch_dim, -1).reshape(-1, c)
    oc = o.double().movedim(ch_dim, -1).reshape(-1, c)
    if torch.equal(yc, oc):
        return torch.ones(c, dtype=torch.float64, device=y.device), torch.zeros(c, dtype=torch.float64, device=y.device)
    my, mo = yc.mean(0), oc.mean(0)
    vy = ((yc - my) ** 2).mean(0)
    cov = ((yc - my) * (oc - mo)).mean(0)
    if bool((vy == 0).any()):
        raise _Skip("some output channel is constant on the examples: cannot identify its scale (use more varied inputs)")
    a = cov / vy
    return a, mo - a * my


def _geometry(call: _Call):
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
                raise _Skip("padding='same' with an even kernel pads asymmetrically (not supported)")
            pd = (tot[0] // 2, tot[1] // 2)
        else:
            raise _Skip(f"padding={pd!r} not understood")
    pd = (pd, pd) if isinstance(pd, int) else tuple(pd)
    st, pd, dl = (tuple(st) * 2)[:2], (tuple(pd) * 2)[:2], (tuple(dl) * 2)[:2]
    return dict(stride=st, padding=pd, dilation=dl, groups=int(call.groups))


# Accepted per-channel relative deviation of a packed module's output; the epilogue parameters
# are stored as float32, so float64 models are matched to float32 precision.
_TOL = {torch.float32: 1e-4, torch.float64: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}


def _deviation(got: torch.Tensor, want: torch.Tensor, ch_dim: int, step: torch.Tensor):
    """(max abs, max over channels of abs / (max |want_c| + step_c)); step_c is one unit of the
    channel's integer result, so channels whose outputs are all ~0 are not judged by rounding noise."""
    d = (got.double() - want.double()).abs()
    c = want.shape[ch_dim]
    dc = d.movedim(ch_dim, -1).reshape(-1, c).amax(0)
    wc = want.double().abs().movedim(ch_dim, -1).reshape(-1, c).amax(0) + step.abs()
    rel = torch.where(wc > 0, dc / wc.clamp(min=1e-300), torch.where(dc > 0, torch.inf, 0.0))
    return float(d.max()) if d.numel() else 0.0, float(rel.max()) if rel.numel() else 0.0


def _plan(invs: list[_Invocation], report: ConversionReport):
    """Build the packed module for a module from its recorded invocations, or raise _Skip."""
    first = invs[0]
    module = first.module
    if not first.name:
        raise _Skip("the call is made by the root module itself (wrap the layer in a submodule)")
    for inv in invs:
        if inv.nested_calls:
            raise _Skip("its forward contains other conv/linear layers")
        if len(inv.calls) != 1:
            raise _Skip(f"its forward makes {len(inv.calls)} conv/linear calls (one expected)")
        if len(inv.args) != 1 or inv.kwargs or not isinstance(inv.args[0], torch.Tensor):
            raise _Skip("it is called with other than one tensor argument")
        if not isinstance(inv.out, torch.Tensor):
            raise _Skip("its output is not a single tensor")
        if inv.post_break is not None:
            raise _Skip(f"it applies {inv.post_break} to the {inv.calls[0].kind} call's output (only a per-channel "
                        "scale/bias epilogue can be packed)")
        if not inv.out_from_call:
            raise _Skip(f"its output is not computed from the {inv.calls[0].kind} call's output by arithmetic")
    call = first.calls[0]
    if call.kind == "conv2d" and call.z.dim() != 4:
        raise _Skip("unbatched conv2d input")
    alpha, zeros = _weight_alpha(call.w)
    ch_in, ch_out = (1, 1) if call.kind == "conv2d" else (-1, -1)
    kind = _input_kind(torch.cat([i.calls[0].z.reshape(-1) for i in invs]) if len(invs) > 1 else call.z)
    x = first.args[0]
    if x.shape != call.z.shape:
        raise _Skip("the call's input is not an elementwise function of the module's input (shapes differ)")
    o = alpha.numel()
    geo = _geometry(call) if call.kind == "conv2d" else {}
    notes = []
    if zeros:
        notes.append(f"{zeros} weight(s) are exactly 0 (torch.sign gives 0); packed as +alpha, so the result differs")

    # input relation X -> Z
    if kind[0] == "sign":
        found = _find_threshold(x, call.z >= 0, module, ch_in, [])
        if found is None:
            raise _Skip("input binarization threshold not identified (not 0 and not +- a parameter of the module)")
        in_scale, act = kind[1], dict(act="sign", threshold=found[1])
        if kind[2]:
            zeros += kind[2]
            notes.append(f"{kind[2]} input value(s) of the call are exactly 0 on the examples (torch.sign(0) = 0); "
                         "packing maps them to +1, so the result differs there")
        desc = "binary" + ("" if found[0] == "0" else f" (sign(x - {found[0]}))")
    elif kind[0] == "step":
        a = kind[1]
        found = _find_threshold(x, call.z > a / 2, module, ch_in, [a / 2])
        if found is None:
            raise _Skip("{0,1} input: threshold not identified")
        in_scale, act = a, dict(act="step", nbits=1, threshold=found[1])
        desc = "1-bit {0,1} input"
    elif kind[0] == "round":
        _, step, nbits = kind
        q_exp = torch.round(call.z.double() / step).to(torch.int32)  # same device as x
        m = _find_in_mul(x, q_exp, step, nbits, module)
        if m is None:
            raise _Skip(f"{nbits}-bit input grid (step {step:.4g}) found but its quantizer was not identified")
        in_scale, act = step, dict(act="round", nbits=nbits, in_mul=m)
        desc = f"{nbits}-bit input"
    else:
        if not torch.equal(x, call.z):
            raise _Skip("real-valued input transformed inside the module before a binary-weight call")
        in_scale, act, desc = 1.0, None, "binary weights, real input"

    # output relation Y -> O
    for inv in invs:
        if inv.out.shape != inv.calls[0].y.shape:
            raise _Skip("the module's output shape differs from the call's output")
    ga, gb = _fit_affine(call.y, first.out, ch_out)
    dev = call.w.device
    b_call = call.b.double() if call.b is not None else torch.zeros(o, dtype=torch.float64, device=dev)
    mult = alpha * in_scale * ga
    bias = b_call * ga + gb
    wsign = call.w.detach()
    if act is None:
        if call.kind == "conv2d":
            new = BinaryWeightConv2d.from_weight(wsign, bias.float(), scale=mult.float(), **geo)
        else:
            new = BinaryWeightLinear.from_weight(wsign, bias.float(), scale=mult.float())
    else:
        out_dtype = first.out.dtype
        common = dict(multiplier=mult.float(), out_dtype=out_dtype)
        if act["act"] == "sign":
            cls = BinaryConv2d if call.kind == "conv2d" else BinaryLinear
            new = cls.from_weight(wsign, bias.float(), threshold=act["threshold"], **geo, **common)
        else:
            cls = BitSerialConv2d if call.kind == "conv2d" else BitSerialLinear
            new = cls.from_weight(wsign, bias.float(), nbits=act.get("nbits", 1), act=act["act"],
                                  threshold=act.get("threshold", 0.0), in_mul=act.get("in_mul", 1.0), **geo, **common)
    new = new.to(call.w.device).eval()

    # verify on every recorded invocation
    max_abs = max_rel = 0.0
    int_exact = True
    tol = _TOL.get(first.out.dtype, 1e-4)
    with torch.no_grad():
        for inv in invs:
            xin, ci = inv.args[0], inv.calls[0]
            if act is not None:
                yint = new.int_forward(xin).double()
                denom = _channel_view(alpha * in_scale, ch_out, o, ci.y.dim())
                bc = _channel_view(ci.b.double() if ci.b is not None else torch.zeros(o, dtype=torch.float64, device=dev), ch_out, o,
                                   ci.y.dim())
                want = (ci.y.double() - bc) / denom.clamp(min=1e-300)
                live = (_channel_view(alpha, ch_out, o, ci.y.dim()) > 0).expand_as(want)
                if bool(((yint - want).abs() > 0.25)[live].any()):
                    int_exact = False
            got = new(xin)
            step = mult * (float(xin.abs().max()) if act is None else 1.0)
            a_, r_ = _deviation(got, inv.out, ch_out, step)
            max_abs, max_rel = max(max_abs, a_), max(max_rel, r_)
    if act is None:
        int_exact = True  # no integer part
    layer = dict(module=type(new).__name__, kind=desc, max_abs=max_abs, max_rel=max_rel, int_exact=int_exact)
    if zeros:
        return new, layer, notes
    if not int_exact:
        raise _Skip(f"verification failed: the packed integer part differs from the call's ({desc})")
    if max_rel > tol:
        raise _Skip(f"verification failed: packed output deviates by {max_rel:.3g} (relative) from the module's output")
    return new, layer, notes


# ---------------------------------------------------------------------------------------------
# Fusion
# ---------------------------------------------------------------------------------------------
def _fold_bn(rec: _Recorder, planned: dict, by_module: dict, report: ConversionReport):
    """[(bn name, packed module name)] for BN modules that can be folded into a packed module."""
    out = []
    for name, invs in by_module.items():
        inv = invs[0]
        if len(invs) != 1 or len(inv.ops) != 1 or inv.ops[0][0] != "batch_norm" or inv.calls:
            continue
        bn = inv.ops[0][1]
        if bn["training"] or bn["running_mean"] is None or bn["running_var"] is None:
            continue
        src = None
        for pname, pinvs in by_module.items():
            if pname in planned and len(pinvs) == 1 and pinvs[0].out_ref is bn["input_ref"] is inv.x_ref:
                src = pname
        if src is None:
            continue
        uses = rec.uses.get(id(by_module[src][0].out_ref), [])
        if len(uses) != 1 or id(inv) not in uses[0][1]:
            continue
        out.append((name, src, bn))
    return out


def _fold_sign_inputs(rec: _Recorder, planned: dict, by_module: dict, taken: set):
    """[(name, packed module name, threshold)] for modules that binarize the input of a packed
    binary module (their output's only reader): the packed module can threshold their input itself."""
    out = []
    for name, invs in by_module.items():
        inv = invs[0]
        if len(invs) != 1 or not name or name in planned or name in taken or inv.calls or inv.nested_calls:
            continue
        if len(inv.args) != 1 or inv.kwargs or not isinstance(inv.out, torch.Tensor) or inv.out.shape != inv.args[0].shape:
            continue
        dst = next((p for p, m in planned.items() if isinstance(m, (BinaryConv2d, BinaryLinear)) and p not in taken
                    and len(by_module[p]) == 1 and by_module[p][0].x_ref is inv.out_ref), None)
        if dst is None:
            continue
        new, dinv = planned[dst], by_module[dst][0]
        uses = rec.uses.get(id(inv.out_ref), [])
        if not uses or any(id(dinv) not in u[1] for u in uses) or bool((new.threshold != 0).any()):
            continue
        ch = 1 if isinstance(new, BinaryConv2d) else -1
        found = _find_threshold(inv.args[0], dinv.args[0] >= 0, inv.module, ch, [])
        if found is None:
            continue
        trial = copy.deepcopy(new)
        trial.threshold.copy_(found[1])
        with torch.no_grad():
            if not torch.equal(trial.int_forward(inv.args[0]), new.int_forward(dinv.args[0])):
                continue
        out.append((name, dst, found[1]))
        taken.update((name, dst))
    return out


def _fold_affine(rec: _Recorder, planned: dict, by_module: dict, taken: set):
    """[(name, packed module name, a, b)] for modules that compute a per-channel a * x + b of the
    output of a packed module (their only reader): taint-checked, then fitted and verified."""
    out = []
    for name, invs in by_module.items():
        inv = invs[0]
        if len(invs) != 1 or not name or name in planned or name in taken or inv.calls or inv.nested_calls:
            continue
        if not inv.is_affine or len(inv.args) != 1 or inv.kwargs or not isinstance(inv.out, torch.Tensor):
            continue
        src = next((p for p in planned if p not in taken and len(by_module[p]) == 1
                    and by_module[p][0].out_ref is inv.x_ref), None)
        if src is None or inv.out.shape != inv.args[0].shape:
            continue
        uses = rec.uses.get(id(inv.x_ref), [])
        if not uses or any(id(inv) not in u[1] for u in uses):
            continue
        new = planned[src]
        ch = 1 if isinstance(new, (BinaryConv2d, BitSerialConv2d, BinaryWeightConv2d)) else -1
        try:
            a, b = _fit_affine(inv.args[0], inv.out, ch)
        except _Skip:
            continue
        shape = [1] * inv.out.dim()
        shape[ch] = -1
        step = (a * getattr(new, "multiplier", getattr(new, "scale", None)).double()).abs()
        _, rel = _deviation(inv.args[0].double() * a.view(shape) + b.view(shape), inv.out, ch, step)
        if rel <= _TOL.get(inv.out.dtype, 1e-4) * 0.1:
            out.append((name, src, a, b))
            taken.update((name, src))
    return out


def _apply_affine(new: PackedModule, a: torch.Tensor, b: torch.Tensor) -> None:
    m = new.scale if isinstance(new, (BinaryWeightLinear, BinaryWeightConv2d)) else new.multiplier
    m.copy_((m.double() * a).float())
    new.bias.copy_((new.bias.double() * a + b).float())


def _apply_bn(new: PackedModule, bn: dict) -> None:
    inv_std = 1.0 / torch.sqrt(bn["running_var"].double() + float(bn["eps"]))
    g = inv_std * (bn["weight"].double() if bn["weight"] is not None else 1.0)
    beta = bn["bias"].double() if bn["bias"] is not None else 0.0
    shift = beta - bn["running_mean"].double() * g
    scale_name = "scale" if isinstance(new, (BinaryWeightLinear, BinaryWeightConv2d)) else "multiplier"
    m = getattr(new, scale_name)
    m.copy_((m.double() * g).float())
    new.bias.copy_((new.bias.double() * g + shift).float())


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def _replace_everywhere(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for k, child in list(parent._modules.items()):
            if child is old:
                setattr(parent, k, new)


def _compare(a, b):
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return math.inf, math.inf
        d = (a.double() - b.double()).abs()
        if not d.numel():
            return 0.0, 0.0
        scale = float(b.double().abs().max())
        return float(d.max()), float(d.max()) / scale if scale > 0 else (0.0 if float(d.max()) == 0 else math.inf)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        pairs = [_compare(x, y) for x, y in zip(a, b)]
        return max((p[0] for p in pairs), default=0.0), max((p[1] for p in pairs), default=0.0)
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return _compare(list(a.values()), [b[k] for k in a])
    return 0.0, 0.0


def convert(
    model: nn.Module,
    example_inputs,
    *,
    inplace: bool = False,
    strict: bool = False,
    fuse: bool = True,
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
):
    """Replace the binary layers of a trained float BNN by packed modules.

    Args:
        model: the float model (any nn.Module; nothing is matched by class name).
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs;
            the model runs once on them. Use a few realistic samples (each output channel
            must vary across them for a scale to be identified).
        inplace: modify ``model`` itself; else a deep copy is converted and the original
            is left untouched.
        strict: raise ConversionError when a layer with binary weights cannot be converted
            exactly (layers with real weights are skipped and reported, never an error).
        fuse: fold the BatchNorm / per-channel scale modules that directly follow a packed
            module into its epilogue, and the sign modules that feed it into its threshold
            (see the module docstring).
        filter_fn: ``filter_fn(name, module) -> bool``; modules for which it returns False are
            left as they are (reported in ``skipped`` as excluded, never an error).

    Returns:
        (converted model in eval mode, ConversionReport).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be callable(name, module) -> bool, got {type(filter_fn).__name__}")
    if not inplace:
        try:
            model = copy.deepcopy(model)
        except Exception as e:
            raise TypeError(f"convert could not deep-copy the model ({e}); pass inplace=True to convert it in place") from e
    model.eval()
    rec, ref_out = _trace(model, example_inputs)
    report = ConversionReport()

    by_module: dict[str, list[_Invocation]] = {}
    modules: dict[str, nn.Module] = {}
    for inv in rec.invocations:
        by_module.setdefault(inv.name, []).append(inv)
        modules[inv.name] = inv.module
    # in order of first call (invocations are recorded when they finish: a call's own position)
    order = sorted((n for n, invs in by_module.items() if any(i.calls for i in invs)),
                   key=lambda n: min(i.seq for i in by_module[n]))
    planned: dict[str, PackedModule] = {}
    problems = []
    for name in order:
        if filter_fn is not None and not filter_fn(name, modules[name]):
            report.skipped[name or "<root>"] = "excluded by filter_fn"
            continue
        try:
            new, layer, notes = _plan(by_module[name], report)
        except _Skip as e:
            report.skipped[name or "<root>"] = str(e)
            if strict and not str(e).startswith("weights are not"):
                problems.append(f"{name or '<root>'}: {e}")
            continue
        planned[name] = new
        report.layers[name] = layer
        for n in notes:
            report.note(name, n)
            if strict:
                problems.append(f"{name}: {n}")
    if problems:
        raise ConversionError("cannot convert exactly:\n  " + "\n  ".join(problems))

    folds = _fold_bn(rec, planned, by_module, report) if fuse else []
    for bn_name, src, bn in folds:
        _apply_bn(planned[src], bn)
        report.fused[bn_name] = src
    taken = {n for f in folds for n in f[:2]}
    affine = _fold_affine(rec, planned, by_module, taken) if fuse else []
    for name, src, a, b in affine:
        _apply_affine(planned[src], a, b)
        report.fused[name] = src
        folds.append((name, src, None))
    signs = _fold_sign_inputs(rec, planned, by_module, set(report.fused)) if fuse else []
    for name, dst, t in signs:
        planned[dst].threshold.copy_(t)
        report.fused[name] = dst
        folds.append((name, dst, None))
    for name, new in planned.items():
        _replace_everywhere(model, modules[name], new)
        report.converted.append(name)
    for bn_name, src, _ in folds:
        _replace_everywhere(model, modules[bn_name], Folded(src))

    with torch.no_grad():
        out = _run(model, example_inputs)
    report.model_max_abs, report.model_max_rel = _compare(out, ref_out)
    return model, report
