"""Tracing for bnn_kernels.convert: which module made which conv/linear call, with what tensors.

A TorchFunctionMode sees every torch function call while the model runs; forward pre/post
hooks on every module keep the module stack, so each F.conv2d / F.linear call is attributed to
the innermost module whose forward made it. Per module invocation it records the module's
input and output (copies), its conv/linear calls (input, effective weight, bias, output and
conv arguments), the ops it ran after its call, its batch_norm calls, and whether its output
is affine in its input (op-by-op taint tracking, used by fusion). It also records who reads
the outputs of modules that made a call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ._conv1d import record_pad_1d
from ._inplace import inplace_arg
from ._opsets import (
    _BATCH_STATS,
    _BINARIZERS,
    _CONV,
    _CONV1D,
    _ELEMENTWISE,
    _LINEAR,
    _META_OPS,
    _TAINT_LINEAR,
    _TAINT_PRODUCT,
    _TAINT_QUOTIENT,
)
from ._padmode import record_pad, unpad
from ._random import RANDOM, op_name


# ---------------------------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------------------------
def _clone(v):
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    return v


@dataclass(eq=False)
class _Call:
    kind: str  # "conv2d" | "conv1d" | "linear" (or a product that is not packed, reported)
    z: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor | None
    y: torch.Tensor
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    z_mixed: str | None = None  # the input derives from the module's input through this non-elementwise op
    z_from_x: bool = False  # the input derives from the module's input
    w_from_x: bool = False  # the weight derives from the module's input
    padding_mode: str = "zeros"  # or the mode of an F.pad of z before the call (_padmode.py)
    pad_note: str | None = None  # why an F.pad of z before the call is not taken as its padding (_padmode.py)
    pad_border: torch.Tensor | None = None  # [C] a constant F.pad's nonzero border, per channel (_padmode.py)


@dataclass(eq=False)
class _Invocation:
    name: str
    module: nn.Module
    args: tuple
    kwargs: dict
    x_ref: object = None
    out: object = None
    out_ref: object = None
    calls: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    nested_calls: int = 0
    seq: int = 0
    taint: set = field(default_factory=set)  # ids of tensors affine in this invocation's input
    taint_refs: list = field(default_factory=list)  # keeps them alive (ids stay unique)
    affine_break: str | None = None  # first op that made the output non-affine in the input
    is_affine: bool = False
    # the same for data derived from the (single) conv/linear call's output
    post_taint: set = field(default_factory=set)
    post_refs: list = field(default_factory=list)
    post_break: str | None = None
    out_from_call: bool = False  # the module's output is affine in the call's output
    out_elementwise: bool = False  # (no call) the output is an elementwise function of the input
    # before the first call: data derived from the module's input, {id: first non-elementwise op or None}
    pre: dict = field(default_factory=dict)
    pre_refs: list = field(default_factory=list)
    pre_escape: str | None = None  # op that turned input-derived data into a Python value (item, bool...)
    pre_numel: bool = False  # input-derived data's numel() read before the call (LSQ's gradient scale)
    binarizers: set = field(default_factory=set)  # binarizing ops run before the first call
    pads: dict = field(default_factory=dict)  # F.pad outputs before the first call (_padmode.py)
    # F.batch_norm calls on elementwise input data before the first call, their recorded arguments: a
    # BatchNorm before the sign (XNOR-Net) binarizes at its zero crossing (_classify.bn_thresholds)
    pre_bn: list = field(default_factory=list)
    # through the whole forward (until a nested module makes a call): data derived from the input X
    # and data derived from the call's output Y; post_mixed: first op combining the two (a gate or
    # scale computed from X, a residual), which makes the output depend on X besides through Y
    xdep: dict = field(default_factory=dict)  # id -> tensor
    ydep: dict = field(default_factory=dict)
    post_mixed: str | None = None
    post_escape: str | None = None  # op that turned such data into a Python value after the call
    mutates_input: str | None = None  # in-place op on the module's input tensor itself (input.data = ...)
    random: str | None = None  # first op drawing random numbers in its forward (RANDOM)
    x_reads: list = field(default_factory=list)  # uses of that tensor, recorded from the module's return on
    x_reads_from: int = 0


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.stack: list[_Invocation] = []
        self.invocations: list[_Invocation] = []
        self.stack_log: list[_Invocation] = []
        self.uses: dict[int, list] = {}  # id(tensor) -> [(op name, invocation)] for watched outputs
        self.paused = False  # True while the hooks themselves copy tensors

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:
            return out
        name = op_name(func, args, kwargs)
        top = self.stack[-1] if self.stack else None
        if name not in _META_OPS and self.uses:
            for a in _flat(args, kwargs):
                if isinstance(a, torch.Tensor) and id(a) in self.uses:
                    self.uses[id(a)].append((name, {id(i) for i in self.stack}))
        if name not in _META_OPS:
            flat = list(_flat(args, kwargs))
            # batch statistics (training=True, or no running stats) normalize with the batch: not affine
            tname = name if _elementwise(name, args, kwargs) or name != "batch_norm" else _BATCH_STATS
            for inv in self.stack:
                if inv.affine_break is None and _taint(inv.taint, inv.taint_refs, tname, flat, out):
                    inv.affine_break = tname
                if inv.post_break is None and _taint(inv.post_taint, inv.post_refs, tname, flat, out):
                    inv.post_break = tname
        for inv in self.stack:
            if inv.random is None and name in RANDOM:
                inv.random = name
            target = args[0] if args else kwargs.get("input")
            if (
                inv.mutates_input is None
                and target is inv.x_ref
                and (_in_place(name) or inplace_arg(func, args, kwargs))
            ):
                inv.mutates_input = name
            if not inv.calls:
                if func is F.batch_norm and args and (inv.pre.get(id(args[0]), "") is None or id(args[0]) in inv.pads):
                    inv.pre_bn.append({k: v for k, v in _bn_values(args, kwargs, False).items() if k != "input_ref"})
                _track_pre(inv, name, args, kwargs, out)
            if not inv.nested_calls:
                _track_mix(inv, name, args, kwargs, out)
        if top is None:
            return out
        call = _call_of(func, name, args, kwargs, out, top)
        if call is not None:
            top.calls.append(call)
            for inv in self.stack[:-1]:
                inv.nested_calls += 1
                inv.xdep.clear()  # never packed: stop following its data
                inv.ydep.clear()
            top.post_taint.add(id(out))
            top.post_refs.append(out)
            top.ydep[id(out)] = out
            return out
        if func is F.batch_norm:
            top.ops.append(("batch_norm", _bn_values(args, kwargs)))
        elif name not in _META_OPS:
            top.ops.append((name, None))
        return out


def _bn_values(args, kwargs, with_input: bool = True) -> dict:
    """The arguments of an F.batch_norm call by name (copies; the input only with_input), and its
    input tensor as input_ref."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    vals = dict(zip(names, (None, None, None, None, None, False, 0.1, 1e-5)))
    vals.update(zip(names, args))
    vals.update(kwargs)
    vals = {k: _clone(v) for k, v in vals.items() if with_input or k != "input"}
    vals["input_ref"] = args[0] if args else kwargs.get("input")
    return vals


_MATMUL = {"matmul", "mm", "__matmul__"}
# Other products of the module's input with a weight: recorded as calls of their own kind, which
# are never packed but are reported (and raise under strict=True when the layer binarizes).
_OTHER_LAYERS = {
    "addmm",
    "addmv",
    "mv",
    "bmm",
    "baddbmm",
    "einsum",
    "tensordot",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
}


def _call_of(func, name: str, args, kwargs, out, top: _Invocation) -> _Call | None:
    """The conv / linear call ``func`` makes, or None. ``z @ m`` / ``torch.matmul(z, m)`` /
    ``torch.mm`` with z derived from the module's input X and a 2-D m that is not is the linear
    call F.linear(z, m.t()) (also with keyword arguments); ``m @ z`` with such an m (z of any
    rank, as F.unfold's columns) is recorded as a call of kind _LEFT (not packed: reported), and
    so are any other matmul of X-derived data with a tensor that is not and the products of
    _OTHER_LAYERS. A matmul of two X-derived tensors (attention) is not a layer."""
    if func in _CONV or func in _LINEAR or func in _CONV1D:
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        vals = dict(zip(names, (None, None, None, 1, 0, 1, 1)))
        vals.update(zip(names, args))
        vals.update(kwargs)
        z, w, mode, note, border = vals["input"], vals["weight"], "zeros", None, None
        if func in _CONV or func in _CONV1D:
            z, vals["padding"], mode, note, border = unpad(top, z, vals["padding"])
        geo = (vals["stride"], vals["padding"], vals["dilation"], vals["groups"])
        kind = "conv2d" if func in _CONV else "conv1d" if func in _CONV1D else "linear"
        pre = _pre_info(top, z, w)
        call = _Call(
            kind, _clone(z), _clone(w), _clone(vals["bias"]), _clone(out), *geo, *pre, padding_mode=mode, pad_note=note
        )
        call.pad_border = border
        return call
    if name in _OTHER_LAYERS:
        return _other_call(name, args, kwargs, out, top)
    operands = list(args) + [kwargs[k] for k in ("input", "other", "mat2") if k in kwargs]
    if name not in _MATMUL or len(operands) != 2 or not all(isinstance(a, torch.Tensor) for a in operands):
        return None
    a, b = operands
    a_x, b_x = id(a) in top.xdep, id(b) in top.xdep
    if a_x and not b_x and b.dim() == 2 and a.dim() >= 2 and set(kwargs) <= {"input", "other", "mat2"}:
        return _Call("linear", _clone(a), _clone(b).t().contiguous(), None, _clone(out), *_pre_info(top, a, b, 4))
    if b_x and not a_x and a.dim() == 2 and b.dim() >= 2:  # W @ x, also W @ F.unfold(x) (manual im2col)
        return _Call(_LEFT, _clone(b), _clone(a), None, _clone(out), *_pre_info(top, b, a, 4))
    if a_x != b_x:  # another product with a weight (a 1-D or batched one): reported, not packed
        return _other_call(name, args, kwargs, out, top)
    return None


_LEFT = "matmul with the weight on the left (W @ x)"


def _other_call(name: str, args, kwargs, out, top: _Invocation) -> _Call | None:
    """A call of kind ``name`` (see _OTHER_LAYERS) when it multiplies data derived from the module's
    input with a tensor that is not, else None."""
    ts = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor)]
    zs = [a for a in ts if id(a) in top.xdep]
    ws = [a for a in ts if id(a) not in top.xdep and a.dim() >= 1]
    if not zs or not ws or not isinstance(out, torch.Tensor):
        return None
    return _Call(name, _clone(zs[0]), _clone(ws[0]), None, _clone(out), *_pre_info(top, zs[0], ws[0], 4))


def _pre_info(top: _Invocation, z, w, pad: int = 0) -> tuple:
    """(geometry defaults if pad,) z_mixed, z_from_x, w_from_x of a call on z with weight w."""
    return (1, 0, 1, 1)[:pad] + (top.pre.get(id(z)), id(z) in top.pre, id(w) in top.pre)


def _track_mix(inv: _Invocation, name: str, args, kwargs, out) -> None:
    """Follow data derived from the invocation's input X and from its call's output Y through
    every op; record the first op that combines Y-derived data with X-derived data not derived
    from Y (so the output depends on X besides through the call)."""
    if name in _META_OPS and not (name == "__get__" and isinstance(out, torch.Tensor)):
        return
    ts = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor)]
    from_x = any(id(a) in inv.xdep for a in ts)
    from_y = any(id(a) in inv.ydep for a in ts)
    if from_y and inv.post_mixed is None and any(id(a) in inv.xdep and id(a) not in inv.ydep for a in ts):
        inv.post_mixed = name
    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor)]
    if inv.calls and (from_x or from_y) and not outs and out is not None and name not in _META_OPS:
        inv.post_escape = inv.post_escape or name
    if _in_place(name) and ts:
        outs.append(ts[0])
    for o in outs:
        if from_x:
            inv.xdep[id(o)] = o
        if from_y:
            inv.ydep[id(o)] = o


_IN_PLACE_DUNDERS = {
    f"__i{n}__" for n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor")
}


def _in_place(name: str) -> bool:
    """The op writes into its first argument's values."""
    return (
        (name.endswith("_") and not name.endswith("__") and name not in ("requires_grad_", "share_memory_"))
        or name in ("__setitem__", "__set__")
        or (name in _IN_PLACE_DUNDERS)
    )


def _elementwise(name: str, args, kwargs) -> bool:
    if name == "batch_norm":  # eval mode: a per-channel affine map; training mode: batch statistics
        training = kwargs.get("training", args[5] if len(args) > 5 else False)
        return not training
    if name in ("max", "min"):  # torch.max(a, b) is elementwise, torch.max(a[, dim]) a reduction
        return sum(isinstance(a, torch.Tensor) for a in _flat(args, kwargs)) >= 2
    return name in _ELEMENTWISE


def _track_pre(inv: _Invocation, name: str, args, kwargs, out) -> None:
    """Before an invocation's first call: follow data derived from its input X and remember the
    first non-elementwise op on it (see _ELEMENTWISE); record binarizing ops."""
    if name in _BINARIZERS:
        inv.binarizers.add(name)
    if name == "numel" and args and isinstance(args[0], torch.Tensor) and id(args[0]) in inv.pre:
        inv.pre_numel = True
    if name in _META_OPS and not (name == "__get__" and isinstance(out, torch.Tensor)):
        return  # .shape, .size(): no data; .data / .T: the tensor itself
    src = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor) and id(a) in inv.pre]
    if not src:
        return
    mixed = next((inv.pre[id(a)] for a in src if inv.pre[id(a)]), None)
    if not _elementwise(name, args, kwargs):
        mixed = mixed or name
    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor)]
    if not outs and out is not None and name not in _META_OPS:
        inv.pre_escape = inv.pre_escape or name
    if (name.endswith("_") or name in ("__setitem__", "__set__")) and args and isinstance(args[0], torch.Tensor):
        outs.append(args[0])  # in place: the target now holds input-derived data
    for o in outs:
        if inv.pre.get(id(o)) is None:
            inv.pre[id(o)] = mixed
        inv.pre_refs.append(o)
    record_pad(inv.pads, inv.pre, name, args, kwargs, out, src if _elementwise(name, args, kwargs) else None)
    record_pad_1d(inv.pads, inv.pre, name, args, kwargs, out)


def _taint(taint: set, refs: list, name: str, flat: list, out) -> bool:
    """Propagate "affine in the seed" through one op; True (and the set cleared) when it breaks."""
    pos = [i for i, a in enumerate(flat) if isinstance(a, torch.Tensor) and id(a) in taint]
    if not pos:
        return False
    bad = (
        name not in _TAINT_LINEAR
        or (name in _TAINT_PRODUCT and len(pos) > 1)
        or (name in _TAINT_QUOTIENT and pos != [0])
        or (name == "batch_norm" and pos != [0])
    )
    if bad:
        taint.clear()
        refs.clear()
        return True
    for o in out if isinstance(out, (tuple, list)) else (out,):
        if isinstance(o, torch.Tensor):
            taint.add(id(o))
            refs.append(o)
    return False


def _flat(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


def _close(inv: _Invocation, output) -> None:
    """Record the invocation's output and what the tracking found; drop the tracking state."""
    inv.out, inv.out_ref = _clone(output), output
    inv.is_affine = inv.affine_break is None and isinstance(output, torch.Tensor) and id(output) in inv.taint
    inv.out_from_call = inv.post_break is None and isinstance(output, torch.Tensor) and id(output) in inv.post_taint
    inv.out_elementwise = (
        not inv.calls
        and inv.pre_escape is None
        and isinstance(output, torch.Tensor)
        and id(output) in inv.pre
        and inv.pre[id(output)] is None
    )
    for state in (inv.taint, inv.taint_refs, inv.post_taint, inv.post_refs, inv.pre, inv.pre_refs, inv.xdep, inv.ydep):
        state.clear()


def _trace(model: nn.Module, example_inputs) -> tuple[_Recorder, object]:
    rec = _Recorder()
    names = {}
    for n, m in model.named_modules(remove_duplicate=False):
        names.setdefault(id(m), n)
    handles = []

    def pre(module, args, kwargs):
        rec.paused = True
        inv = _Invocation(
            names[id(module)], module, tuple(_clone(a) for a in args), {k: _clone(v) for k, v in kwargs.items()}
        )
        inv.x_ref = args[0] if args else None
        if isinstance(inv.x_ref, torch.Tensor):
            inv.taint.add(id(inv.x_ref))
            inv.taint_refs.append(inv.x_ref)
            inv.pre[id(inv.x_ref)] = None
            inv.pre_refs.append(inv.x_ref)
            inv.xdep[id(inv.x_ref)] = inv.x_ref
        inv.seq = len(rec.stack_log)
        rec.stack_log.append(inv)
        rec.stack.append(inv)
        rec.paused = False

    def post(module, args, kwargs, output):
        rec.paused = True
        inv = rec.stack.pop()
        _close(inv, output)
        if inv.mutates_input is not None:  # who reads the tensor it changed, from now on
            inv.x_reads = rec.uses.setdefault(id(inv.x_ref), [])
            inv.x_reads_from = len(inv.x_reads)
        rec.paused = False
        rec.invocations.append(inv)
        if isinstance(output, torch.Tensor):
            rec.uses.setdefault(id(output), [])

    seen = set()
    for m in model.modules():
        if id(m) in seen or isinstance(m, torch.jit.ScriptModule):  # no hooks (_convert.scripted_modules)
            continue
        seen.add(id(m))
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True, always_call=True))
    try:
        with torch.no_grad(), rec:
            out = _run(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    return rec, out


def _run(model, example_inputs):
    if isinstance(example_inputs, torch.Tensor):
        return model(example_inputs)
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    return model(*example_inputs)
