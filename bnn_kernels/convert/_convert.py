"""The entry point: trace, plan every layer, fold neighbours, swap, compare."""

from __future__ import annotations

import copy
import math
import re
import sys
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin

from ..nn._base import Folded, PackedModule, float_4d_tensors, float_layers_to
from ._fuse import apply_affine, apply_bn, fold_affine, fold_bn, fold_sign_inputs
from ._opsets import _BINARIZERS
from ._plan import binary_evidence, plan
from ._report import ConversionError, ConversionReport, Skip
from ._trace import _Invocation, _run, _trace
from ._verify import verify_in_model

__all__ = ["convert"]


def _replace_everywhere(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for k, child in list(parent._modules.items()):
            if child is old:
                setattr(parent, k, new)


def _compare(a, b):
    """(max abs, max abs / max |b|) between two outputs (tensors, or nested lists / dicts of them)."""
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


def _group(rec) -> tuple[dict[str, list[_Invocation]], dict[str, nn.Module], list[str]]:
    """Invocations by module name, the modules, and the names of those that made a call in
    order of their first invocation."""
    by_module: dict[str, list[_Invocation]] = {}
    modules: dict[str, nn.Module] = {}
    for inv in rec.invocations:
        by_module.setdefault(inv.name, []).append(inv)
        modules[inv.name] = inv.module
    order = sorted(
        (n for n, invs in by_module.items() if any(i.calls for i in invs)),
        key=lambda n: min(i.seq for i in by_module[n]),
    )
    return by_module, modules, order


def _inside(name: str, prefixes) -> bool:
    """name lies below one of the modules named in prefixes (all of them below the root, "")."""
    return any(not p or name.startswith(p + ".") for p in prefixes)


def scripted_modules(model: nn.Module) -> dict[str, str | None]:
    """{name: binarizing op or None} of the outermost TorchScript submodules (torch.jit.script /
    trace): their ops run in TorchScript, where no hook or TorchFunctionMode sees them, so convert
    cannot judge them; the op is the first binarizer (sign, a comparison...) in their graph."""
    out: dict[str, str | None] = {}
    for name, m in model.named_modules():
        if not isinstance(m, torch.jit.ScriptModule) or _inside(name, out):
            continue
        try:
            ops = re.findall(r"aten::(\w+)", str(m.inlined_graph))
        except Exception:  # a module without a graph of its own: judged by its submodules' names
            ops = []
        out[name] = next((op for op in ops if op in _BINARIZERS), None)
    return out


_SCRIPTED = (
    "a TorchScript module (torch.jit.script / trace): convert cannot see the ops it runs; convert the Python "
    "module, then script the converted one"
)


def _scripted(model: nn.Module, report: ConversionReport, strict: bool, planned) -> list[str]:
    """Report the TorchScript submodules as skipped (but those inside a module replaced by a packed
    one, which reproduced their part); the strict problems of those that binarize."""
    problems = []
    for name, op in scripted_modules(model).items():
        if _inside(name, planned):
            continue
        label = name or "<root>"
        report.skipped[label] = _SCRIPTED
        if strict and op is not None:
            problems.append(f"{label}: {_SCRIPTED} (its graph binarizes ({op}))")
    return problems


def _plan_all(by_module, modules, order, report: ConversionReport, strict: bool, filter_fn, model, examples):
    planned: dict[str, PackedModule] = {}
    checks = {}
    problems = []
    for name in order:
        label = name or "<root>"
        if filter_fn is not None and not filter_fn(name, modules[name]):
            report.skipped[label] = "excluded by filter_fn"
            continue
        try:
            new, layer, notes, checks[name] = plan(by_module[name])
        except Skip as e:
            report.skipped[label] = str(e)
            if strict and e.evidence:
                problems.append(f"{label}: {e} ({e.evidence})")
            continue
        planned[name] = new
        report.layers[name] = layer
        for n in notes:
            report.note(name, n)
            if strict:
                problems.append(f"{name}: {n}")
    for name, why in verify_in_model(
        model, examples, {n: (planned[n], checks[n], modules[n]) for n in planned}
    ).items():
        del planned[name], report.layers[name]
        report.notes.pop(name, None)
        report.skipped[name] = why
        evidence = binary_evidence(by_module[name])
        if strict and evidence:
            problems.append(f"{name}: {why} ({evidence})")
    problems += _scripted(model, report, strict, planned)
    if problems:
        raise ConversionError("cannot convert exactly:\n  " + "\n  ".join(problems))
    return planned


def _fuse(rec, planned, by_module, report: ConversionReport) -> list[str]:
    """Fold neighbours into the planned modules; returns the names of the folded modules."""
    folded = []
    for bn_name, src, bn in fold_bn(rec, planned, by_module):
        apply_bn(planned[src], bn)
        report.fused[bn_name] = src
        folded.append(bn_name)
    taken = {n for f in folded for n in (f, report.fused[f])}
    for name, src, a, b in fold_affine(rec, planned, by_module, taken):
        apply_affine(planned[src], a, b)
        report.fused[name] = src
        folded.append(name)
    for name, thresholds in fold_sign_inputs(rec, planned, by_module, set(report.fused)):
        for dst, (t, bits) in thresholds.items():
            planned[dst].threshold.copy_(t)
            if bits is not None:  # a decreasing binarizer: those channels' weights negated
                planned[dst].weight_bits.copy_(bits)
        report.fused[name] = ", ".join(thresholds)
        folded.append(name)
    return folded


def _float_channels_last(model: nn.Module, example_inputs, ref_out, report: ConversionReport) -> None:
    """Put the float remainder in channels_last (its convs then return channels_last for NCHW
    input, which the packed layers keep), unless the model then fails or differs on the examples
    (e.g. a view() of a conv output), in which case it is left as it was. A model without 4-D
    float parameters or buffers (an MLP, a 1-D conv net) has nothing to put there: left alone."""
    if next(float_4d_tensors(model), None) is None:
        report.channels_last = False
        return
    float_layers_to(model, torch.channels_last)
    try:
        with torch.no_grad():
            out = _run(model, example_inputs)
        ok = _compare(out, ref_out)[1] <= max(1e-4, 10 * report.model_max_rel)
    except RuntimeError as e:
        ok, why = False, str(e).splitlines()[0]
    else:
        why = "the outputs differ"
    report.channels_last = ok
    if not ok:
        float_layers_to(model, torch.contiguous_format)
        report.note("<model>", f"float layers left in their memory format: in channels_last {why}")


_STATEFUL = (
    "its forward changes buffers in eval mode (observers, statistics): convert's runs of the model changed them, "
    "they are restored to their values before conversion: "
)


def _buffers(model: nn.Module) -> dict:
    """{(module, buffer name): (the buffer, a copy)} of every buffer of the model, to restore after
    convert's runs."""
    return {(m, n): (b, b.detach().clone()) for m in model.modules() for n, b in m._buffers.items() if b is not None}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    return bool(((a == b) | (a != a) & (b != b)).all()) if a.is_floating_point() else torch.equal(a, b)


def _restore(model: nn.Module, saved: dict) -> list[str]:
    """Put back the buffers that the model's forward changed while convert ran it (a quantization
    observer's statistics, a running value kept in eval mode: convert runs the model on many derived
    inputs, up to 256 times the examples), in the modules still in the model: the same tensors
    (shared buffers stay shared) with their values; the names of those whose values had changed."""
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    changed = []
    for (m, n), (obj, copy_) in saved.items():
        cur = m._buffers.get(n)
        if id(m) not in names or cur is None or (cur is obj and _same(obj, copy_)):
            continue
        if not _same(cur, copy_):
            changed.append(f"{names[id(m)]}.{n}" if names[id(m)] else n)
        if not _same(obj, copy_):
            with torch.no_grad():
                if obj.shape == copy_.shape and obj.dtype == copy_.dtype:
                    obj.copy_(copy_)
                else:
                    obj = copy_.clone()
        m._buffers[n] = obj
    return changed


def _describe(example_inputs) -> str:
    """The example inputs' dtypes and shapes, for an error message."""
    ts = [t for t in _leaves(example_inputs) if isinstance(t, torch.Tensor)]
    return ", ".join(f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}" for t in ts) or "no tensors"


def _leaves(v):
    """The leaves of nested tuples / lists / dicts."""
    if isinstance(v, (tuple, list)):
        return [x for item in v for x in _leaves(item)]
    if isinstance(v, dict):
        return [x for item in v.values() for x in _leaves(item)]
    return [v]


_COMPILED = (
    "a torch.compile wrapper: the module it wraps is converted and returned uncompiled (compile the converted model)"
)


def _uncompiled(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The model with every torch.compile wrapper (OptimizedModule, the root or a submodule) replaced
    by the module it wraps, and the names of those wrappers: a compiled forward runs in TorchDynamo,
    which does not run under convert's tracing mode."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # not imported: nothing was compiled
    wrapper = getattr(eval_frame, "OptimizedModule", None)
    names: list[str] = []
    if wrapper is None:
        return model, names

    def unwrap(parent: nn.Module, prefix: str) -> None:
        for k, child in list(parent._modules.items()):
            while isinstance(child, wrapper):
                names.append(prefix + k)
                child = child._orig_mod
                setattr(parent, k, child)
            if child is not None:
                unwrap(child, f"{prefix}{k}.")

    while isinstance(model, wrapper):
        names.append("<root>")
        model = model._orig_mod
    unwrap(model, "")
    return model, names


def _prepare(model, inplace: bool, filter_fn) -> tuple[nn.Module, list[str]]:
    """Checked arguments; the model to convert (a deep copy unless inplace), in eval mode, without
    torch.compile wrappers (_uncompiled), and the names of those removed."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be callable(name, module) -> bool, got {type(filter_fn).__name__}")
    meta = next((n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta), None)
    if meta is not None:
        raise ValueError(
            f"model: {meta} is on the meta device (no values): convert reads the trained weights, load them first "
            "(model.to_empty(device=...) then load_state_dict)"
        )
    lazy = next(
        (n for n, t in [*model.named_parameters(), *model.named_buffers()] if isinstance(t, UninitializedTensorMixin)),
        None,
    )
    if lazy is not None:
        raise ValueError(
            f"model: {lazy} is uninitialized (a Lazy module that has not run yet: no values): convert reads the "
            "trained weights, run the model once and load them first"
        )
    if not inplace:
        try:
            model = copy.deepcopy(model)
        except Exception as e:
            raise TypeError(
                f"convert could not deep-copy the model ({e}); pass inplace=True to convert it in place"
            ) from e
    model, compiled = _uncompiled(model)
    return model.eval(), compiled


def convert(
    model: nn.Module,
    example_inputs,
    *,
    inplace: bool = False,
    strict: bool = False,
    fuse: bool = True,
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
    channels_last: bool = True,
):
    """Replace the binary layers of a trained float BNN by packed modules.

    Args:
        model: the float model (any nn.Module; nothing is matched by class name).
            torch.compile wrappers in it (or around it) are removed: the modules they wrap are
            converted, and the result is returned uncompiled (``report.notes`` names them).
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs;
            the model runs once on them. Use a few realistic samples (a scale after a call
            is fitted where each output channel varies across them; where one does not, as
            with a single sample through a linear layer, inputs derived from them are added).
        inplace: modify ``model`` itself; else a deep copy is converted and the original
            is left untouched.
        strict: raise ConversionError when a layer with binary weights cannot be converted
            exactly (layers with real weights are skipped and reported, never an error).
        fuse: fold the BatchNorm / per-channel scale modules that directly follow a packed
            module into its epilogue, and the sign modules that feed it into its threshold
            (see the package docstring).
        filter_fn: ``filter_fn(name, module) -> bool``; modules for which it returns False are
            left as they are (reported in ``skipped`` as excluded, never an error).
        channels_last: put the weights of the float layers left in the model (stem, pooling
            neighbours, downsample convs, head) in channels_last, so NCHW input flows through
            the whole model without layout copies; kept only if the model still runs and
            matches on the examples (``report.channels_last`` says which).

    Returns:
        (converted model in eval mode, ConversionReport).
    """
    model, compiled = _prepare(model, inplace, filter_fn)
    if any(isinstance(t, torch.Tensor) and t.is_meta for t in _leaves(example_inputs)):
        raise ValueError("example_inputs: a tensor is on the meta device (no values): convert runs the model on them")
    saved = _buffers(model)
    try:
        rec, ref_out = _trace(model, example_inputs)
    except Exception as e:  # the model's own error, with where it came from (Python >= 3.11)
        if hasattr(e, "add_note"):
            e.add_note(f"bnn_kernels.convert: raised by the model run on example_inputs ({_describe(example_inputs)})")
        raise
    report = ConversionReport()
    for name in compiled:
        report.note(name, _COMPILED)
    by_module, modules, order = _group(rec)
    planned = _plan_all(by_module, modules, order, report, strict, filter_fn, model, example_inputs)
    folded = _fuse(rec, planned, by_module, report) if fuse else []
    for name, new in planned.items():
        _replace_everywhere(model, modules[name], new)
        report.converted.append(name)
    for name in folded:
        _replace_everywhere(model, modules[name], Folded(report.fused[name]))
    changed = _restore(model, saved)
    if changed:
        report.note("<model>", _STATEFUL + ", ".join(changed[:4]) + (", ..." if len(changed) > 4 else ""))
    with torch.no_grad():
        out = _run(model, example_inputs)
    report.model_max_abs, report.model_max_rel = _compare(out, ref_out)
    if channels_last and planned:
        _float_channels_last(model, example_inputs, ref_out, report)
    _restore(model, saved)
    return model, report
