"""Folding: modules next to a packed module that become part of it.

- an eval-mode BatchNorm or a per-channel affine module reading only a packed module's output
  folds into its epilogue (multiplier, bias);
- a module binarizing only the input of packed binary modules (sign(x), RSign; one reader or
  several) folds into their thresholds.
"""

from __future__ import annotations

import copy

import torch

from ..nn import BinaryConv2d, BinaryLinear
from ..nn._base import PackedModule, weight_rows
from ..nn.binary import pack_conv_weight
from ..ops import pack_bits
from ._classify import TOL, channel_view, deviation, find_thresholds, fit_affine, negate_inputs, strict_threshold
from ._probe import derived_inputs, directions, reshaped_inputs, tie_threshold
from ._report import Skip
from ._trace import _Invocation, _Recorder

__all__ = ["fold_bn", "fold_affine", "fold_sign_inputs", "apply_affine", "apply_bn"]


def _only_reader(rec: _Recorder, ref, inv: _Invocation) -> bool:
    """Every recorded use of the tensor ``ref`` happens inside the invocation ``inv``."""
    uses = rec.uses.get(id(ref), [])
    return bool(uses) and all(id(inv) in u[1] for u in uses)


def _channel_dim(new: PackedModule) -> int:
    return 1 if hasattr(new, "in_channels") else -1


def fold_bn(rec: _Recorder, planned: dict, by_module: dict):
    """[(bn name, packed module name, recorded batch_norm arguments)] for the eval-mode BatchNorm
    modules that read only the output of a packed module and whose output is that batch_norm's,
    affine in their input (op by op, through their hooks and submodules: a forward hook that runs
    a submodule on the output, as torch.ao.quantization's FakeQuantize after a prepared BatchNorm,
    is not part of the BatchNorm's own ops)."""
    out = []
    for name, invs in by_module.items():
        inv = invs[0]
        if len(invs) != 1 or len(inv.ops) != 1 or inv.ops[0][0] != "batch_norm" or inv.calls or not inv.is_affine:
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


def _single_tensor_module(name, invs, planned, taken) -> bool:
    inv = invs[0]
    return (
        len(invs) == 1
        and bool(name)
        and name not in planned
        and name not in taken
        and not inv.calls
        and not inv.nested_calls
        and len(inv.args) == 1
        and not inv.kwargs
        and isinstance(inv.out, torch.Tensor)
        and inv.out.shape == inv.args[0].shape
    )


def _call(module, x):
    with torch.no_grad():
        return module(x)


def _sign_fold_holds(trial, new, inv: _Invocation) -> bool:
    """trial (new with the sign module's threshold) on the sign module's input equals new on the
    sign module's output, on the examples and on inputs derived from them."""
    with torch.no_grad():
        if not torch.equal(trial.int_forward(inv.args[0]), new.int_forward(inv.out)):
            return False
        for _, xd in derived_inputs(inv.args[0]):
            if not torch.equal(trial.int_forward(xd), new.int_forward(inv.module(xd.clone()))):
                return False
        for _, xd in reshaped_inputs(inv.args[0]):  # a threshold that reads the input's shape
            try:
                got, want = trial.int_forward(xd), new.int_forward(inv.module(xd.clone()))
            except Exception:  # a shape the binarizer or the layer does not take: not judged
                continue
            if not torch.equal(got, want):
                return False
    return True


def _sign_readers(rec: _Recorder, planned: dict, by_module: dict, inv: _Invocation, taken: set) -> list[str]:
    """The planned packed binary modules reading the output of ``inv`` as their input, when they
    are its only readers (every recorded use of that tensor happens inside one of them); else []."""
    dsts = [
        p
        for p, m in planned.items()
        if isinstance(m, (BinaryConv2d, BinaryLinear))
        and p not in taken
        and len(by_module[p]) == 1
        and by_module[p][0].x_ref is inv.out_ref
    ]
    ids = {id(by_module[p][0]) for p in dsts}
    uses = rec.uses.get(id(inv.out_ref), [])
    if not dsts or not uses or not all(ids & u[1] for u in uses):
        return []
    return dsts


def _sign_threshold(inv: _Invocation, new, dinv: _Invocation):
    """(threshold, weight_bits or None) with which ``new`` (threshold 0, reading the binarizer's
    output) computes the same from the binarizer's input, checked by _sign_fold_holds; or None. A
    binarizer that maps low inputs high in some channels (sign(-x), sign(x * s) with s < 0) folds as
    the complement of x > t there: a strict threshold and ``new``'s weights reading those channels
    negated (weight_bits repacked from the call's weight)."""
    if bool((new.threshold != 0).any()):
        return None
    ch = _channel_dim(new)
    x, pos, high = inv.args[0], dinv.args[0] >= 0, lambda s: s >= 0
    neg = directions(x, pos, inv.module, ch, high, _call)
    if bool(neg.any()) and getattr(new, "pad_value", 0):  # its +-1 border would not be negated with the weights
        return None
    d = channel_view(torch.where(neg, -1.0, 1.0).to(device=x.device, dtype=x.dtype), ch, neg.numel(), x.dim())
    trial = copy.deepcopy(new)
    if bool(neg.any()):
        w = negate_inputs(dinv.calls[0].w.detach(), neg, int(dinv.calls[0].groups))
        bits = pack_conv_weight(w, new.ternary, new.groups) if ch == 1 else pack_bits(weight_rows(w, new.ternary), 0.0)
        if bits.shape != new.weight_bits.shape:
            return None
        trial.weight_bits.copy_(bits)
    # Every candidate that fits the examples, in turn: they may not tell a small learned shift
    # from 0; tie_threshold's probes between the examples do.
    signs = torch.where(neg, -1.0, 1.0).cpu()
    for _, cand in find_thresholds(x * d, pos, inv.module, ch, [], signs):
        tn = tie_threshold(inv.module, x * d, cand, ch, lambda m, v: _call(m, v * d), high)
        down = None if tn is None else strict_threshold(-tn, x.dtype)
        if tn is None or (down is None and bool(neg.any())):
            continue
        t = torch.where(neg.to(tn.device), down, tn) if bool(neg.any()) else tn
        trial.threshold.copy_(t)
        if _sign_fold_holds(trial, new, inv):
            return t, (trial.weight_bits if bool(neg.any()) else None)
    return None


def fold_sign_inputs(rec: _Recorder, planned: dict, by_module: dict, taken: set):
    """[(name, {packed module name: (threshold, weight_bits or None)})] for modules that binarize
    elementwise the input
    of packed binary modules: those read the module's output and nothing else does (one reader,
    or several, as the two 1x1 convs of ReActNet-A's doubled blocks), so each can threshold the
    module's input itself. Folded only when every reader takes its threshold (each checked on
    its own); otherwise the module and all its readers are left as they are."""
    out = []
    for name, invs in by_module.items():
        if not _single_tensor_module(name, invs, planned, taken) or not invs[0].out_elementwise:
            continue
        inv = invs[0]
        ts = {}
        for dst in _sign_readers(rec, planned, by_module, inv, taken):
            found = _sign_threshold(inv, planned[dst], by_module[dst][0])
            if found is None:
                ts = {}
                break
            ts[dst] = found
        if ts:
            out.append((name, ts))
            taken.update((name, *ts))
    return out


def fold_affine(rec: _Recorder, planned: dict, by_module: dict, taken: set):
    """[(name, packed module name, a, b)] for modules that compute a per-channel a * x + b of the
    output of a packed module (their only reader): taint-checked, then fitted and verified."""
    out = []
    for name, invs in by_module.items():
        inv = invs[0]
        if not _single_tensor_module(name, invs, planned, taken) or not inv.is_affine:
            continue
        src = next(
            (p for p in planned if p not in taken and len(by_module[p]) == 1 and by_module[p][0].out_ref is inv.x_ref),
            None,
        )
        if src is None or not _only_reader(rec, inv.x_ref, inv):
            continue
        new = planned[src]
        ch = _channel_dim(new)
        try:
            a, b = fit_affine(inv.args[0], inv.out, ch)
        except Skip:
            continue
        shape = [1] * inv.out.dim()
        shape[ch] = -1
        step = (a * new.multiplier.double()).abs()
        _, rel = deviation(inv.args[0].double() * a.view(shape) + b.view(shape), inv.out, ch, step)
        if rel <= TOL.get(inv.out.dtype, 1e-4) * 0.1 and _affine_at_other_shapes(inv, a, b, ch, step):
            out.append((name, src, a, b))
            taken.update((name, src))
    return out


def _affine_at_other_shapes(inv: _Invocation, a: torch.Tensor, b: torch.Tensor, ch: int, step) -> bool:
    """The module also computes a * y + b on its input at other shapes (reshaped_inputs) that it
    takes: one whose arithmetic reads the shape (y * g / y.shape[-1]) does not."""
    shape = [1] * inv.out.dim()
    shape[ch] = -1
    for _, yd in reshaped_inputs(inv.args[0]):
        if yd.shape[ch] != a.numel():  # more channels than the packed layer has: not judged
            continue
        try:
            with torch.no_grad():
                o = inv.module(yd.clone())
        except Exception:  # a shape the module does not take: not judged
            continue
        if not isinstance(o, torch.Tensor) or o.shape != yd.shape:
            return False
        _, rel = deviation(yd.double() * a.view(shape) + b.view(shape), o, ch, step)
        if rel > TOL.get(o.dtype, 1e-4) * 0.1:
            return False
    return True


def apply_affine(new: PackedModule, a: torch.Tensor, b: torch.Tensor) -> None:
    """Fold y -> a * y + b (per output channel, float64) into the epilogue."""
    for name in new.epilogue_buffers:
        buf = getattr(new, name)
        buf.copy_((buf.double() * a).float())
    new.bias.copy_((new.bias.double() * a + b).float())


def apply_bn(new: PackedModule, bn: dict) -> None:
    """Fold an eval-mode batch_norm (its recorded arguments) into the epilogue."""
    inv_std = 1.0 / torch.sqrt(bn["running_var"].double() + float(bn["eps"]))
    g = inv_std * (bn["weight"].double() if bn["weight"] is not None else 1.0)
    beta = bn["bias"].double() if bn["bias"] is not None else 0.0
    apply_affine(new, g, beta - bn["running_mean"].double() * g)
