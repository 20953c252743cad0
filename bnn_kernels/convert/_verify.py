"""Verification of a planned packed module: on the recorded examples, then on inputs derived
from them (noise, rescaled, shifted per sample, values resampled)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..nn._base import PackedModule
from ._classify import TOL, deviation, geometry
from ._conv1d import as_2d, from_2d
from ._padmode import conv_ref
from ._probe import derived_inputs, reshaped_inputs, run_module, run_quietly
from ._report import Skip
from ._trace import _Invocation, _run

__all__ = ["Check", "int_exact", "verify", "verify_derived", "verify_in_model"]


@dataclass
class Check:
    """How to judge a packed module against a module's recorded invocation.

    int_check(new, inv): its integer part is exact (None: no integer part, real input);
    in_domain(z): a derived input whose call input is z is inside the layer's domain;
    step: per output channel, one unit of the integer result in output units (float64 [O]);
    ch: the output channel dim;
    hint(z): what the report adds when a derived input whose call input is z fails, or None;
    upstream: the call's input is binary (or on a grid) as the module received it: binarized by
    its caller, so what the caller computes decides whether the layer is exact (verify_in_model)."""

    int_check: Callable[[PackedModule, _Invocation], bool] | None
    in_domain: Callable[[torch.Tensor], bool]
    step: torch.Tensor
    ch: int
    hint: Callable[[torch.Tensor], str | None] | None = None
    upstream: bool = False


def call_integer(inv: _Invocation, alpha: torch.Tensor, in_scale: float) -> torch.Tensor:
    """The exact integer result of the recorded call: the same conv / linear in float64 of its input
    divided by in_scale and its weight divided by alpha, both rounded to the integers they are
    (so no rounding of the call's own low-precision output enters)."""
    ci = inv.calls[0]
    z = torch.round(ci.z.double() / in_scale)
    a = alpha.view(-1, *[1] * (ci.w.dim() - 1))
    w = torch.where(a > 0, torch.round(ci.w.double() / a.clamp(min=1e-300)), 0.0)
    if ci.kind == "linear":
        return F.linear(z, w)
    border = None if ci.pad_border is None else torch.round(ci.pad_border / in_scale)
    z, w = as_2d(ci, z, w)  # a conv1d call: its conv2d of height 1
    return from_2d(ci, conv_ref(z, w, geometry(ci), ci.padding_mode, border))


def int_exact(new: PackedModule, inv: _Invocation, alpha: torch.Tensor, in_scale: float) -> bool:
    """The packed integer part equals the call's exact integer result."""
    return torch.equal(new.int_forward(inv.args[0]).double(), call_integer(inv, alpha, in_scale))


def verify(new, invs, chk: Check, integer: bool = True):
    """(max_abs, max_rel, int_exact) of the packed module over the invocations (integer=False:
    the float output only, int_exact then True)."""
    max_abs = max_rel = 0.0
    exact = True
    with torch.no_grad():
        for inv in invs:
            xin = inv.args[0]
            if integer and chk.int_check is not None and not chk.int_check(new, inv):
                exact = False
            step = chk.step * (float(xin.abs().max()) if chk.int_check is None else 1.0)
            a_, r_ = deviation(new(xin), inv.out, chk.ch, step)
            max_abs, max_rel = max(max_abs, a_), max(max_rel, r_)
    return max_abs, max_rel, exact


def _what(exact: bool, rel: float) -> str:
    """How a packed module differs, for the report."""
    return "integer part differs" if not exact else f"output deviates by {rel:.3g} (relative)"


def _judge(new, inv, chk: Check, tol: float, what_inputs: str, hint, integer: bool = True) -> None:
    """Raise Skip unless the packed module matches the module's invocation inv (hint(): what to
    add to the reason; integer: also the integer part, see verify)."""
    try:
        _, rel, exact = verify(new, [inv], chk, integer)
    except Exception as e:  # the module takes the input, so the packed layer must too
        raise Skip(f"the packed layer fails on {what_inputs} that the module takes ({type(e).__name__})") from None
    if not exact or rel > tol:
        what = _what(exact, rel)
        h = hint()
        raise Skip(
            f"verification on {what_inputs} failed: the packed {what} from the module's "
            f"(its result depends on more than the examples show{'; ' + h if h else ''})"
        )


def verify_derived(new, invs, chk: Check, tol: float) -> None:
    """Raise Skip unless the packed module also matches the module on inputs derived from the
    examples, and on the examples at other shapes (reshaped_inputs: a module that reads its
    input's shape). Derived inputs outside the layer's domain (its call input real where it is
    binary on the examples: the input is binarized upstream) are not judged, nor shapes the
    module does not take the same way."""
    module = invs[0].module
    for label, xd in derived_inputs(invs[0].args[0]):
        inv = run_module(module, xd)
        if not _same_single_call(inv):
            raise Skip(f"on derived inputs ({label}) the module does not make the same single call")
        if chk.in_domain(inv.calls[0].z):
            z = inv.calls[0].z
            _judge(new, inv, chk, tol, f"derived inputs ({label})", lambda: chk.hint(z) if chk.hint else None)
    for label, xd in reshaped_inputs(invs[0].args[0]):
        inv = run_quietly(module, xd)
        if _same_single_call(inv) and chk.in_domain(inv.calls[0].z):
            # the float output shows a shape read (a scale, a threshold) at a fraction of the cost
            _judge(new, inv, chk, tol, f"the examples at another shape ({label})", lambda: SHAPE_HINT, False)


SHAPE_HINT = "does the module read its input's shape, as in y / y.shape[-1]?"


def _same_single_call(inv) -> bool:
    return (
        inv is not None
        and len(inv.calls) == 1
        and isinstance(inv.out, torch.Tensor)
        and inv.out.shape == inv.calls[0].y.shape
    )


_WIDENED = (16.0, 256.0)  # the model's examples scaled up: quantizers upstream reach their upper levels


def _widened(v: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """One model input scaled by each of _WIDENED: an input quantized upstream, by another module,
    whose upper levels the examples do not reach (LSQ with a large learned step seen at levels 0
    and 1) reaches them there. Not for float16 inputs, whose range the model would leave (inf,
    then NaN that torch.sign turns into 0)."""
    if not (v.dtype.is_floating_point and v.numel() and torch.finfo(v.dtype).max > 1e38):  # float16 would overflow
        return []
    return [(f"examples times {f:g}", v.detach() * f) for f in _WIDENED]


def _derived_model_inputs(example_inputs, derive=derived_inputs) -> list[tuple[str, object]]:
    """The model's example inputs with every floating-point tensor among them replaced by what
    derive makes of it (derived_inputs by default), one set per kind of derivation."""
    if isinstance(example_inputs, torch.Tensor):
        return _derived_model_inputs((example_inputs,), derive)
    items = list(example_inputs.items()) if isinstance(example_inputs, dict) else list(enumerate(example_inputs))
    derived = {k: dict(derive(v)) for k, v in items if isinstance(v, torch.Tensor)}
    labels = dict.fromkeys(label for d in derived.values() for label in d)
    out = []
    for label in labels:
        vals = [(k, derived.get(k, {}).get(label, v)) for k, v in items]
        out.append((label, dict(vals) if isinstance(example_inputs, dict) else tuple(v for _, v in vals)))
    return out


def _other_shapes(x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """reshaped_inputs with one batch size besides the examples' (one sample when there are
    several): a model run per shape."""
    out = reshaped_inputs(x)
    if any(label == "one sample" for label, _ in out):
        out = [(label, t) for label, t in out if label != "one sample more"]
    return out


def _inputs_of(model, inputs, modules: dict) -> dict[str, list[torch.Tensor]]:
    """{name: [input of each call of that module]} when the model runs on inputs."""
    got: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    hooks = [
        m.register_forward_pre_hook(
            lambda mod, a, n=n: got[n].append(a[0].detach().clone()) if a and isinstance(a[0], torch.Tensor) else None
        )
        for n, m in modules.items()
    ]
    try:
        with torch.no_grad():
            _run(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return got


def verify_in_model(model, example_inputs, layers: dict) -> dict[str, str]:
    """{name: reason} for the planned layers that differ from their module on the inputs the MODEL
    feeds them when it runs on inputs derived from its examples and on its examples at other
    shapes. A layer's own derived inputs cannot show what its caller computes: an input
    binarized upstream with a scale computed from the whole batch (sign(x) * mean |x|) or from
    its shape (sign(x) / x.shape[-1]) is +-a on the examples and +-a' on other inputs.

    layers: {name: (packed module, its Check, the original module)}; only those whose Check says
    their input is binarized upstream are judged (a layer that binarizes its own input, or reads
    a real one, maps whatever its caller feeds it as its own derived inputs showed). A model that
    fails on the derived inputs is not judged (nothing is refused for it)."""
    failed: dict[str, str] = {}
    layers = {n: v for n, v in layers.items() if v[1].upstream}
    if not layers:
        return failed
    modules = {n: m for n, (_, _, m) in layers.items()}
    # (label, model inputs, judge the integer part too): on the widened examples and at other shapes
    # the domain check and the float output show a quantizer's other levels or a shape read (a
    # scale, a threshold) at a fraction of the cost
    kinds = (
        (derived_inputs, True, ""),
        (_widened, False, ""),
        (_other_shapes, False, "the examples at another shape: "),
    )
    runs = [
        (prefix + label, v, integer)
        for derive, integer, prefix in kinds
        for label, v in _derived_model_inputs(example_inputs, derive)
    ]
    for label, inputs, integer in runs:
        try:
            seen = _inputs_of(model, inputs, modules)
        except Exception:  # the user's model on inputs it may not accept: not judged
            continue
        for name, xs in seen.items():
            new, chk, module = layers[name]
            if name in failed:
                continue
            for x in xs:
                if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
                    continue  # overflowed upstream (a float16 model on the widened examples): not judged
                inv = run_module(module, x)
                if inv is None or len(inv.calls) != 1 or not isinstance(inv.out, torch.Tensor):
                    continue  # judged by verify_derived: the layer's own inputs
                if not chk.in_domain(inv.calls[0].z):
                    failed[name] = (
                        f"verification in the model on derived inputs ({label}) failed: its caller feeds it an "
                        "input that is not binary (or not on its grid) there (a quantizer upstream with more levels "
                        "than the examples reach?)"
                    )
                    break
                _, rel, exact = verify(new, [inv], chk, integer)
                if not exact or rel > TOL.get(inv.out.dtype, 1e-4):
                    what = _what(exact, rel)
                    failed[name] = (
                        f"verification in the model on derived inputs ({label}) failed: the packed {what} from "
                        "the module's on the input its caller computes (an input binarized upstream with a "
                        "scale or threshold computed from the batch or from its shape, or with more levels than the "
                        "examples reach?)"
                    )
                    break
    return failed
