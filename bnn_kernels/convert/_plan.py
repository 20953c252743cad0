"""Planning: the packed module that replaces one module, built from its recorded invocations
and verified on them, or a Skip with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn.utils.prune import BasePruningMethod
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from ..nn import BinaryConv2d, BinaryLinear, BinaryWeightConv2d, BinaryWeightLinear, BitSerialConv2d, BitSerialLinear
from ..nn._base import PackedModule
from ._classify import (
    TOL,
    bn_thresholds,
    channel_view,
    detect_tol,
    deviation,
    find_in_mul,
    fit_affine,
    geometry,
    input_kind,
    negate_inputs,
    weight_alpha,
)
from ._conv1d import as_2d, packed_of
from ._offset import offset_pair, plan_offset
from ._padmode import BORDER_NOTE
from ._probe import derived_inputs, probe_signed_threshold, probe_threshold, rounding_holds, run_module
from ._report import Skip
from ._trace import _Invocation
from ._verify import Check, int_exact, verify, verify_derived

# Forward pre-hooks that only recompute the module's weight from its parameters (the old
# torch.nn.utils.weight_norm / spectral_norm; in eval mode spectral_norm uses its stored
# vectors; torch.nn.utils.prune's weight = weight_orig * weight_mask): the traced call sees that
# weight, which the packed module keeps.
_WEIGHT_HOOKS = (WeightNorm, SpectralNorm, BasePruningMethod)

__all__ = ["plan"]


@dataclass
class _Input:
    """How the call's input Z derives from the module's input X."""

    scale: float  # Z = scale * q(X)
    act: dict | None  # packed module activation arguments; None: real input (binary-weight)
    desc: str
    notes: list = field(default_factory=list)


_GRAPH_MODULE = (
    "the calls are made by a torch.fx GraphModule (torch.fx.symbolic_trace, torch.export(...).module()), whose "
    "graph runs its layers' code inline, so no submodule of it makes them: convert the nn.Module it was traced "
    "from, then trace or export the converted one"
)


def _check_dtypes(call) -> None:
    """Skip a call whose input, weight, bias and output dtypes differ: PyTorch refuses such a call
    outside torch.autocast, which casts inside it (a float32 input and weight, a bfloat16 output
    computed from bfloat16 copies), a precision the packed layer does not reproduce."""
    named = (("input", call.z), ("weight", call.w), ("bias", call.b), ("output", call.y))
    dtypes = {n: str(t.dtype).removeprefix("torch.") for n, t in named if isinstance(t, torch.Tensor)}
    if len(set(dtypes.values())) > 1:
        raise Skip(
            f"its {call.kind} call mixes dtypes ({', '.join(f'{n} {d}' for n, d in dtypes.items())}): it runs "
            "under torch.autocast, which computes in a precision the packed layer does not reproduce (convert the "
            "model without autocast)"
        )


def _check_invocations(invs: list[_Invocation]) -> None:
    """Raise Skip unless every invocation is one tensor in, one conv/linear call, its output out."""
    first = invs[0]
    if isinstance(first.module, torch.fx.GraphModule) and (not first.name or len(first.calls) > 1):
        raise Skip(_GRAPH_MODULE)
    if not invs[0].name:
        raise Skip("the call is made by the root module itself (wrap the layer in a submodule)")
    for inv in invs:
        if inv.nested_calls:
            raise Skip("its forward contains other conv/linear layers")
        if len(inv.calls) != 1:
            raise Skip(f"its forward makes {len(inv.calls)} conv/linear calls (one expected)")
        if inv.calls[0].kind not in ("conv2d", "conv1d", "linear"):
            raise Skip(
                f"it computes its layer with {inv.calls[0].kind}, which is not packed (conv2d, conv1d and linear are)"
            )
        _check_dtypes(inv.calls[0])
        if inv.random is not None:
            raise Skip(
                f"random forward: it calls {inv.random} (stochastic binarization, or dropout in training mode as "
                "F.dropout(x, p) without training=self.training); the packed layer is deterministic"
            )
        if len(inv.args) != 1 or inv.kwargs or not isinstance(inv.args[0], torch.Tensor):
            raise Skip("it is called with other than one tensor argument")
        if any(not isinstance(h, _WEIGHT_HOOKS) for h in inv.module._forward_pre_hooks.values()):
            raise Skip(
                "it has forward pre-hooks (register_forward_pre_hook) that may change the input its forward sees; "
                "the packed module would not run them (binarize in the forward, or in a module of its own)"
            )
        if not isinstance(inv.out, torch.Tensor):
            raise Skip("its output is not a single tensor")
        if inv.mutates_input is not None and len(inv.x_reads) > inv.x_reads_from:
            raise Skip(
                f"it changes its input tensor in place ({inv.mutates_input}, e.g. input.data = sign(input)) and "
                "the caller reads that tensor afterwards (the packed module leaves its input as it is)"
            )
        if inv.post_break is not None:
            raise Skip(
                f"it applies {inv.post_break} to the {inv.calls[0].kind} call's output (only a per-channel "
                "scale/bias epilogue can be packed)"
            )
        if inv.post_escape is not None:
            raise Skip(
                f"data-dependent output: the module reads values computed from its input into Python "
                f"({inv.post_escape}) after its {inv.calls[0].kind} call"
            )
        if inv.post_mixed is not None:
            raise Skip(
                f"its output combines the {inv.calls[0].kind} call's output with data computed from its input "
                f"({inv.post_mixed}): a data-dependent scale or gate (as in Real-to-Binary) or a residual"
            )
        if not inv.out_from_call:
            raise Skip(f"its output is not computed from the {inv.calls[0].kind} call's output by arithmetic")
        if inv.out.shape != inv.calls[0].y.shape:
            raise Skip("the module's output shape differs from the call's output")


def _input_relation(invs: list[_Invocation], ch_in: int) -> _Input:
    """Identify X -> Z (identity, sign(x - t), Heaviside, k-bit rounding); raises Skip."""
    first = invs[0]
    call, module, x = first.calls[0], first.module, first.args[0]
    if x.shape != call.z.shape:
        raise Skip("the call's input is not an elementwise function of the module's input (shapes differ)")
    kind = input_kind(torch.cat([i.calls[0].z.reshape(-1) for i in invs]) if len(invs) > 1 else call.z)
    if kind[0] != "real" and first.pre_numel and not torch.equal(x, call.z):
        raise Skip(
            "its binarizer reads the input's numel() before the call: a step or threshold computed from the "
            "size (LSQ's gradient scale s * g + (s - s * g).detach(), g = 1 / sqrt(numel * Qp), is s or one ulp "
            "off depending on the batch size) moves the rounding boundaries with the shape; the packed layer's do not"
        )
    if call.pad_border is not None and kind[0] != "sign":
        raise Skip(_border_note(call))
    if kind[0] == "sign":
        if kind[2]:
            raise Skip(
                f"{kind[2]} input value(s) of the {call.kind} call are exactly 0 on the examples where the "
                "others are +-a (torch.sign(0) = 0): not binary, left in float"
            )
        sides = (-kind[1], kind[1])
        bns = bn_thresholds(first.pre_bn, x.shape[ch_in])
        label, t, neg = probe_signed_threshold(x, call.z >= 0, module, ch_in, bns, lambda z: z >= 0, sides)
        desc = "binary" + ("" if label == "0" else f" (sign(x - {label}))")
        if bool(neg.any()):  # x <= t in those channels: the complement of x > t, weights negated (_build)
            desc += f", decreasing in {int(neg.sum())} of {neg.numel()} input channels (their weights negated)"
        act = dict(
            act="sign", threshold=t, negate=neg if bool(neg.any()) else None, pad_value=_pad_value(call, kind[1], neg)
        )
        return _Input(kind[1], act, desc)
    if kind[0] == "step":
        a = kind[1]
        label, t = probe_threshold(x, call.z > a / 2, module, ch_in, [a / 2], lambda z: z > a / 2, (0.0, a))
        return _Input(
            a, dict(act="step", nbits=1, threshold=t), "1-bit {0,1} input" + ("" if label == "0" else f" (x > {label})")
        )
    if kind[0] == "round":
        _, step, nbits = kind
        q_exp = torch.round(call.z.double() / step).to(torch.int32)  # same device as x
        m = find_in_mul(x, q_exp, step, nbits, module, lambda m: rounding_holds(module, x, m, nbits, step))
        if m is None:
            raise Skip(
                f"{nbits}-bit input grid (step {step:.4g}) found but its quantizer was not identified (or it "
                "rounds differently from round(x * m) at the grid's decision boundaries, or has more levels than the "
                "examples reach)"
            )
        return _Input(step, dict(act="round", nbits=nbits, in_mul=m), f"{nbits}-bit input")
    if not torch.equal(x, call.z):
        raise Skip("real-valued input transformed inside the module before a binary-weight call")
    return _Input(1.0, None, "binary weights, real input")


def _border_note(call) -> str:
    vals = ", ".join(f"{v:g}" for v in torch.unique(call.pad_border)[:4].tolist())
    return BORDER_NOTE.format(vals)


def _pad_value(call, a: float, neg: torch.Tensor) -> int:
    """BinaryConv2d's pad_value for a constant F.pad whose border is call.pad_border (per channel)
    at the +-a call input: 0 without one; +1 / -1 where every channel's border is that value after
    the binarizer, in the packed layer's terms (a channel packed negated sees its border negated);
    raises Skip otherwise."""
    if call.pad_border is None:
        return 0
    pv = call.pad_border / a * torch.where(neg.cpu(), -1.0, 1.0).double()
    for v in (1, -1):
        if bool(((pv - v).abs() <= detect_tol(call.z.dtype)).all()):
            return v
    raise Skip(_border_note(call))


def _build(first: _Invocation, inp: _Input, mult: torch.Tensor, bias: torch.Tensor, ternary: bool) -> PackedModule:
    """The packed module for the call, with the given per-output multiplier and bias (float64)."""
    call, act = first.calls[0], inp.act
    conv = call.kind != "linear"  # conv2d, or conv1d: the conv2d of height 1 (packed_of)
    geo = dict(geometry(call), padding_mode=call.padding_mode) if conv else {}
    common = dict(multiplier=mult.float(), ternary=ternary, **geo)
    pad_value = dict(pad_value=act["pad_value"]) if act is not None and act.get("pad_value") else {}
    (w,) = as_2d(call, call.w.detach())
    if act is None:
        new = (BinaryWeightConv2d if conv else BinaryWeightLinear).from_weight(w, bias.float(), **common)
    elif act["act"] == "sign":
        cls = BinaryConv2d if conv else BinaryLinear
        if act.get("negate") is not None:
            w = negate_inputs(w, act["negate"], int(call.groups) if conv else 1)
        kw = dict(common, **pad_value)
        new = cls.from_weight(w, bias.float(), threshold=act["threshold"], out_dtype=first.out.dtype, **kw)
    else:
        cls = BitSerialConv2d if conv else BitSerialLinear
        new = cls.from_weight(
            w,
            bias.float(),
            nbits=act.get("nbits", 1),
            act=act["act"],
            threshold=act.get("threshold", 0.0),
            in_mul=act.get("in_mul", 1.0),
            out_dtype=first.out.dtype,
            **common,
        )
    return packed_of(call, new).to(call.w.device).eval()


def binary_evidence(invs: list[_Invocation]) -> str | None:
    """Why the module's layer is meant to be binary, or None (a float layer)."""
    inv = invs[0]
    if inv.binarizers:
        return f"its forward binarizes ({', '.join(sorted(inv.binarizers))})"
    for call in inv.calls:
        if input_kind(call.z)[0] != "real":
            return "its input is binary or on a k-bit grid"
        try:
            weight_alpha(call.w)
            return "its weights are +-alpha per output channel"
        except Skip:
            pass
    return None


# Ops that move or pad elements without computing statistics of the sample.
_LAYOUT_OPS = {
    "pad",
    "constant_pad_nd",
    "cat",
    "concat",
    "stack",
    "permute",
    "transpose",
    "flip",
    "roll",
    "narrow",
    "index_select",
    "gather",
    "repeat",
    "tile",
    "pixel_shuffle",
    "pixel_unshuffle",
    "flatten",
    "unflatten",
    "movedim",
    "split",
    "chunk",
    "unbind",
    "interpolate",
    "upsample_nearest2d",
    "channel_shuffle",
    "native_channel_shuffle",
}
# Ops that combine a small window of neighbouring elements (pooling): local, not statistics of
# the sample, but the packed layer cannot compute them either.
_WINDOW_OPS = {
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool2d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "lp_pool1d",
    "lp_pool2d",
    "fractional_max_pool2d",
    "unfold",
    "fold",
}


def _check_elementwise_input(invs: list[_Invocation]) -> None:
    """Raise Skip when the call's input depends on more than the same element of the module's input."""
    for inv in invs:
        call = inv.calls[0]
        if call.z_mixed and call.pad_note:
            raise Skip(call.pad_note)
        if call.z_mixed in _LAYOUT_OPS or call.z_mixed in _WINDOW_OPS:
            raise Skip(
                f"the {call.kind} input is not an elementwise function of the module's input (it passes "
                f"through {call.z_mixed}; the packed layer reads the module's input: with that op in the "
                "caller, before the module, the layer can be packed)"
            )
        if call.z_mixed:
            raise Skip(
                f"data-dependent binarization: the {call.kind} input is computed from the module's input "
                f"through {call.z_mixed} (a function of the whole sample, as in sign((a - mean(a)) / std(a)))"
            )
        if call.w_from_x:
            raise Skip(f"data-dependent weights: the {call.kind} weight is computed from the module's input")
        if call.z_from_x and inv.pre_escape:
            raise Skip(
                f"data-dependent input: the module reads input values into Python ({inv.pre_escape}) "
                f"before its {call.kind} call"
            )


def _fit_output(invs: list[_Invocation], ch: int, fixed: torch.Tensor):
    """Per-channel a, b with module output = a * call output + b, fitted on the first invocation;
    where some channel is constant there (one sample of a linear layer: batch 1), on every
    invocation and the module's outputs on inputs derived from the examples. Raises Skip."""
    first = invs[0]
    try:
        return fit_affine(first.calls[0].y, first.out, ch, fixed)
    except Skip:
        pass
    ys, outs = [i.calls[0].y for i in invs], [i.out for i in invs]
    for _, xd in derived_inputs(first.args[0]):
        inv = run_module(first.module, xd)
        if inv is not None and len(inv.calls) == 1 and isinstance(inv.out, torch.Tensor):
            if inv.out.shape == inv.calls[0].y.shape == first.out.shape:
                ys.append(inv.calls[0].y)
                outs.append(inv.out)
    try:
        return fit_affine(torch.cat(ys), torch.cat(outs), ch, fixed)
    except Skip as e:
        raise Skip(f"{e} (also on inputs derived from them)") from None


def _check_output_relation(invs, ga, gb, ch: int, step: torch.Tensor, real_in: bool) -> None:
    """Raise Skip unless the module's output is the per-channel a * y + b fitted on the call's output
    y on every invocation (the packed epilogue is per output channel: a scale over (C, H, W) or
    per pixel, as XNOR-Net++'s learned Gamma, is not)."""
    for inv in invs:
        y, o = inv.calls[0].y, inv.out
        fit = y.double() * channel_view(ga, ch, ga.numel(), y.dim()) + channel_view(gb, ch, gb.numel(), y.dim())
        unit = step * (float(inv.args[0].abs().max()) if real_in else 1.0)
        _, rel = deviation(fit, o, ch, unit)
        if rel > TOL.get(o.dtype, 1e-4):
            raise Skip(
                f"its output is not a per-channel scale / bias of the {inv.calls[0].kind} call's output (off by "
                f"{rel:.3g}, relative): e.g. a learned scale over (C, H, W) as XNOR-Net++'s Gamma; with that "
                "multiply in a module of its own after this one, the layer packs and the multiply stays float"
            )


def _scale_hint(z: torch.Tensor, inp: _Input) -> str | None:
    """Why a derived input whose call input z is binary (or on the grid) with another scale than
    the examples' fails: with one example, 'rescaled' scales the sample as a whole, and a layer
    whose input is binarized upstream cannot tell a fixed scale from one computed per sample."""
    kind = input_kind(z)
    if kind[0] != inp.act["act"] or abs(kind[1] - inp.scale) <= detect_tol(z.dtype) * abs(inp.scale):
        return None
    return (
        "its input is still binary (or on its grid) there, with another scale: from a single example a fixed scale "
        "cannot be told from one computed per sample upstream (convert with several examples)"
    )


def plan(invs: list[_Invocation]):
    """(packed module, report entry, notes, its Check) for a module from its recorded invocations;
    raises Skip with its evidence set."""
    try:
        return _plan(invs)
    except Skip as e:
        e.evidence = binary_evidence(invs)
        raise


def _plan(invs: list[_Invocation]):
    _check_invocations(invs)
    _check_elementwise_input(invs)
    first = invs[0]
    call = first.calls[0]
    if call.kind != "linear" and call.z.dim() != (4 if call.kind == "conv2d" else 3):
        raise Skip(f"unbatched {call.kind} input")
    ab = offset_pair(torch.cat([i.calls[0].z.reshape(-1) for i in invs]))
    if ab is not None:
        return plan_offset(invs, *ab)
    alpha, zeros = weight_alpha(call.w)
    ch = -1 if call.kind == "linear" else 1
    inp = _input_relation(invs, ch)
    notes = list(inp.notes)
    if zeros:  # torch.sign(0) = 0: weights {-a, 0, +a}, computed exactly as ternary
        inp.desc += f", ternary weights ({zeros} exactly 0)"

    # output relation Y -> O: a per-channel affine map, fitted on the examples
    ga, gb = _fit_output(invs, ch, alpha == 0)
    b_call = (
        call.b.double() if call.b is not None else torch.zeros(alpha.numel(), dtype=torch.float64, device=call.w.device)
    )
    mult = alpha * inp.scale * ga
    real_in = inp.act is None
    _check_output_relation(invs, ga, gb, ch, mult.abs(), real_in)
    new = _build(first, inp, mult, b_call * ga + gb, ternary=zeros > 0)
    chk = Check(
        None if real_in else (lambda n, i: int_exact(n, i, alpha, inp.scale)),
        lambda z: real_in or input_kind(z)[0] != "real",
        mult,
        ch,
        None if real_in else (lambda z: _scale_hint(z, inp)),
        # binarized upstream: the module passes its input on, or negates it (a decreasing channel)
        upstream=not real_in and all(torch.equal(i.args[0].abs(), i.calls[0].z.abs()) for i in invs),
    )
    max_abs, max_rel, int_exact_ = verify(new, invs, chk)
    layer = dict(module=type(new).__name__, kind=inp.desc, max_abs=max_abs, max_rel=max_rel, int_exact=int_exact_)
    if not int_exact_:
        raise Skip(f"verification failed: the packed integer part differs from the call's ({inp.desc})")
    if max_rel > TOL.get(first.out.dtype, 1e-4):
        raise Skip(f"verification failed: packed output deviates by {max_rel:.3g} (relative) from the module's output")
    verify_derived(new, invs, chk, TOL.get(first.out.dtype, 1e-4))
    return new, layer, notes, chk
