"""The chain walk of bnn_kernels.fusion: from one binary op call down its elementwise consumers,
one aten op at a time, filling the epilogue's slots in the order of csrc/common/epilogue.h."""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.fx

aten = torch.ops.aten
prims = torch.ops.prims

# epilogue slots in the order of common/epilogue.h; a chain fills them left to right
MULT, BIAS, RESIDUAL, SHIFT_IN, ACT, SHIFT_OUT, OUT = range(7)
_SLOT_OF = {"multiplier": MULT, "bias": BIAS, "residual": RESIDUAL, "act_shift_in": SHIFT_IN}
_SLOT_OF.update({"act_slope": ACT, "act_shift_out": SHIFT_OUT, "out_dtype": OUT, "out_threshold": OUT})


# -- graph helpers ----------------------------------------------------------------------------
def _val(x):
    return x.meta.get("val") if isinstance(x, torch.fx.Node) else None


def _bind(node: torch.fx.Node) -> dict[str, Any]:
    """Arguments of an OpOverload call by schema name, defaults filled in."""
    out = {}
    for i, a in enumerate(node.target._schema.arguments):
        if i < len(node.args) and not a.kwarg_only:
            out[a.name] = node.args[i]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
    return out


def _known(cond) -> bool:
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    return bool(cond) if isinstance(cond, bool) else statically_known_true(cond)


def _same_shape(a, b) -> bool:
    return len(a) == len(b) and all(_known(x == y) for x, y in zip(a, b))


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _other(node: torch.fx.Node, cur: torch.fx.Node):
    """(operand that is not cur, cur is the first argument) of a binary op on cur, or None."""
    a, b = node.args[0], node.args[1]
    if a is cur and b is not cur:
        return b, True
    if b is cur and a is not cur:
        return a, False
    return None


def full_perm(perm: tuple, ndim: int) -> tuple:
    """A chain's perm (dim i of its value is dim perm[i] of the op's output) with the op's dims
    that the chain squeezed away (size 1) appended: a permutation of range(ndim)."""
    return tuple(perm) + tuple(d for d in range(ndim) if d not in perm)


def squeeze_perm(perm: tuple, u: torch.fx.Node, ndim: int, shape) -> tuple | str:
    """The perm after u (an _SQUEEZE node) of a value of shape that views the op's output by perm,
    or why it is not followed. Followed: a squeeze of size-1 dims that are not the channels, and
    the unsqueeze that restores the one squeezed dim (the 1-D convs, bnn_kernels.nn.conv1d,
    view their conv2d output of height 1 as (N, O, L) and their input back as (N, C, 1, L))."""
    n = len(perm)
    if u.target is aten.unsqueeze.default:
        gone = [d for d in range(ndim) if d not in perm]
        if len(gone) != 1:
            return "unsqueeze that does not restore a squeezed dim of the op's output"
        d = u.args[1] % (n + 1)
        return perm[:d] + (gone[0],) + perm[d:]
    dims = {d % n for d in (u.args[1] if u.target is aten.squeeze.dims else [u.args[1]])}
    if any(not _known(shape[d] == 1) or perm[d] == 1 for d in dims):
        return "squeeze of a dim that is not of size 1, or of the channels"
    return tuple(p for i, p in enumerate(perm) if i not in dims)


def _targets(*names):
    return {getattr(aten, n).default for n in names}


_LAYOUT = _targets("clone", "alias")
_VIEWS = _targets("view", "reshape", "_unsafe_view")
_CONVERT = {prims.convert_element_type.default, aten._to_copy.default}
_MUL = {aten.mul.Tensor, aten.mul.Scalar}
_ADD = {aten.add.Tensor, aten.add.Scalar}
_SUB = {aten.sub.Tensor, aten.sub.Scalar}
_PRELU = {aten.prelu.default, aten._prelu_kernel.default}
_SQUEEZE = {aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default}
_BINARY_OPS = ("binary_conv2d", "xnor_gemm")


def _convert_dtype(node):
    if node.target is prims.convert_element_type.default:
        return node.args[1]
    extra = set(node.kwargs) - {"dtype", "device", "layout", "memory_format"}
    dev = node.kwargs.get("device")
    if extra or len(node.args) > 1 or (dev is not None and torch.device(dev) != _val(node.args[0]).device):
        return None
    return node.kwargs.get("dtype", _val(node.args[0]).dtype)


# -- one chain --------------------------------------------------------------------------------
class _Chain:
    """The walk down the elementwise consumers of one binary op call."""

    def __init__(self, graph: torch.fx.Graph, op: torch.fx.Node, order: dict):
        self.args = _bind(op)
        val = _val(op)
        have = [k for k in _SLOT_OF if self.args.get(k) is not None and k != "out_dtype"]
        # conv [N, O, Ho, Wo] and gemm [M, N]: channels in dim 1
        self._start(graph, op, order, val.shape[1], val.dim(), val.device, tuple(range(val.dim())), val.dtype)
        self.last = max((_SLOT_OF[k] for k in have), default=-1)
        self.bits_perm = (0, 2, 3, 1) if self.ndim == 4 else (0, 1)

    def _start(self, graph, op, order, nchan, ndim, device, perm, dtype):
        self.graph, self.op, self.order = graph, op, order
        self.nchan, self.ndim, self.device, self.dtype = nchan, ndim, device, dtype
        self.cur, self.perm = op, perm  # dim i of cur is dim perm[i] of the op's output
        self.steps: dict[str, Any] = {}  # new epilogue keywords: slot name -> operand spec
        self.pending = False  # an add taken as act_shift_in, waiting for its activation
        self.dead: list[torch.fx.Node] = []  # nodes of the chain, erased after the rewrite
        self.commit = None
        self.bits = False
        self.cat = None  # the cat along the channels that ended the chain, if one did
        self.reason = "end of graph"

    @classmethod
    def after_cat(cls, graph, cat: torch.fx.Node, members: list[_Chain], order: dict) -> _Chain:
        """The walk after a cat of member chains along the channels: per-channel operands span
        all members' channels (each member later takes its slice); no bits after a cat."""
        self = cls.__new__(cls)
        m = members[0]
        self._start(graph, cat, order, sum(c.nchan for c in members), m.ndim, m.device, m.perm, torch.float32)
        self.args, self.last, self.bits_perm = {}, max(c.last for c in members), None
        return self

    # operands ------------------------------------------------------------------------------
    def _depends_on_op(self, node: torch.fx.Node) -> bool:
        start = self.order.get(self.op, -1)
        stack, seen = [node], set()
        while stack:
            n = stack.pop()
            if n is self.op:
                return True
            if n in seen or self.order.get(n, start + 1) < start:
                continue
            seen.add(n)
            stack.extend(n.all_input_nodes)
        return False

    def channel_operand(self, x, neg: bool = False):
        """(spec, None) of a per-channel float32 operand of cur, or (None, reason)."""
        if _is_number(x):
            return ("scalar", float(x), neg), None
        v = _val(x)
        if not isinstance(v, torch.Tensor):
            return None, f"operand {x!r} has no tensor metadata"
        if v.dtype != torch.float32:
            return None, f"operand {x.name} is {v.dtype} (the epilogue computes in float32)"
        shape = list(v.shape)
        if len(shape) > len(self.perm):
            return None, f"operand {x.name} of shape {tuple(shape)} broadcasts the output"
        shape = [1] * (len(self.perm) - len(shape)) + shape
        cdim = self.perm.index(1)
        ones = all(_known(s == 1) for i, s in enumerate(shape) if i != cdim)
        if not ones or not (_known(shape[cdim] == self.nchan) or _known(shape[cdim] == 1)):
            return None, f"operand {x.name} of shape {tuple(v.shape)} is not per channel (per sample or per pixel)"
        if self._depends_on_op(x):
            return None, f"operand {x.name} depends on the op's own output"
        return ("node", x, neg), None

    def residual_operand(self, x, neg: bool = False):
        v, cv = _val(x), _val(self.cur)
        if not isinstance(v, torch.Tensor) or not _same_shape(v.shape, cv.shape):
            return None, None
        if v.dtype != torch.float32:
            return None, f"residual {x.name} is {v.dtype}"
        if self._depends_on_op(x):
            return None, f"residual {x.name} depends on the op's own output"
        return ("residual", x, neg, full_perm(self.perm, self.ndim)), None

    # steps ---------------------------------------------------------------------------------
    def take(self, slot_name: str, spec, node: torch.fx.Node, extra=()) -> str | None:
        """Fills the slot with spec and moves to node; a reason instead when node's result
        is not float32 (an int32 product stays int32)."""
        v = _val(node)
        if slot_name != "out_threshold" and (not isinstance(v, torch.Tensor) or v.dtype != torch.float32):
            return f"{node.name} computes in {getattr(v, 'dtype', None)}"
        self.steps[slot_name] = spec
        self.last = _SLOT_OF[slot_name]
        self.advance(node, extra)

    def advance(self, node: torch.fx.Node, extra=()) -> None:
        self.dead += [self.cur, *extra] if self.cur is not self.op else list(extra)
        self.cur = node
        v = _val(node)
        self.dtype = v.dtype if isinstance(v, torch.Tensor) else self.dtype
        done = self.dtype == torch.float32 or self.bits or "out_dtype" in self.steps
        if not self.pending and done and self.steps:
            self.commit = (node, self.perm, dict(self.steps), list(self.dead), self.bits)

    def float_ok(self) -> str | None:
        if self.dtype == torch.float32:
            return None
        if self.dtype == torch.int32 and self.last < 0:
            return None  # int32 * float32 promotes: float(acc) first, exactly as the epilogue
        return f"the value is {self.dtype} (the epilogue computes in float32)"

    def step(self) -> bool:
        """Takes the next consumer of cur into the chain; False (and self.reason) when it ends."""
        got = self.try_activation_pattern()
        if got is not None:
            return got
        users = list(self.cur.users)
        if len(users) != 1:
            self.reason = "value used by several nodes (kept in float)" if users else "value unused"
            return False
        u = users[0]
        if u.op != "call_function":
            self.reason = "graph output" if u.op == "output" else f"{u.op} node"
            return False
        handler = self.handler(u.target)
        if handler is None:
            self.reason = f"{getattr(u.target, '__name__', u.target)} is not an epilogue step"
            return False
        why = handler(u)
        if why:
            self.reason = why
            return False
        return True

    def handler(self, t):
        if t in _LAYOUT:
            return self.on_layout
        if t in _VIEWS:
            return self.on_view
        if t is aten.permute.default:
            return self.on_permute
        if t in _SQUEEZE:
            return self.on_squeeze
        if t in _CONVERT:
            return self.on_convert
        if t in _MUL:
            return self.on_mul
        if t in _ADD or t in _SUB:
            return self.on_add
        if t is aten.addcmul.default:
            return self.on_addcmul
        if t in _PRELU or t is aten.leaky_relu.default:
            return self.on_prelu
        if t is torch.ops.bnn_kernels.pack_bits.default:
            return self.on_pack_bits
        if t is aten.cat.default:
            return self.on_cat
        if t in (aten.relu.default, aten.clamp_min.default):
            return lambda u: "relu (the epilogue's slope-0 PReLU gives -0.0 where relu gives 0.0)"
        if t in (aten.div.Tensor, aten.div.Scalar):
            return lambda u: "division (x / c is not x * (1 / c) in float32)"
        return None

    def on_layout(self, u):
        if u.args[0] is not self.cur:
            return "layout op on another input"
        self.advance(u)

    def on_view(self, u):
        v = _val(u)
        if u.args[0] is not self.cur or v is None or not _same_shape(v.shape, _val(self.cur).shape):
            return "a reshape (only those that keep the shape are followed)"
        self.advance(u)

    def on_permute(self, u):
        dims = [d % len(self.perm) for d in u.args[1]]
        self.perm = tuple(self.perm[d] for d in dims)
        self.advance(u)

    def on_squeeze(self, u):
        if u.args[0] is not self.cur:
            return "squeeze / unsqueeze of another input"
        perm = squeeze_perm(self.perm, u, self.ndim, _val(self.cur).shape)
        if isinstance(perm, str):
            return perm
        self.perm = perm
        self.advance(u)

    def on_convert(self, u):
        dt = _convert_dtype(u)
        if dt is None:
            return "a copy that changes the device"
        if dt == self.dtype:
            return self.advance(u)
        if dt == torch.float32 and self.dtype == torch.int32 and self.last < 0:
            return self.advance(u)
        if dt in (torch.float16, torch.bfloat16) and self.dtype == torch.float32 and not self.pending:
            self.steps["out_dtype"] = ("dtype", dt)
            self.last = OUT
            self.reason = f"rounded to {dt} (end)"
            return self.advance(u)
        return f"conversion of {self.dtype} to {dt}"

    def on_mul(self, u):
        other, _ = _other(u, self.cur) or (None, None)
        if other is None:
            return "product of the value with itself"
        why = self.float_ok()
        if why:
            return why
        if self.last >= MULT:
            return "mul after an add (the epilogue multiplies first)"
        spec, why = self.channel_operand(other)
        return why or self.take("multiplier", spec, u)

    def on_add(self, u):
        alpha = u.kwargs.get("alpha", u.args[2] if len(u.args) > 2 else 1)
        got = _other(u, self.cur)
        if got is None or alpha != 1:
            return "add with alpha or of the value to itself"
        other, first = got
        neg = u.target in _SUB
        if neg and not first:
            return "c - y (the epilogue adds to y)"
        why = self.float_ok()
        if why:
            return why
        res, why_res = self.residual_operand(other, neg) if isinstance(other, torch.fx.Node) else (None, None)
        vec, why = self.channel_operand(other, neg)
        # an operand of the output's shape that is also per channel (a 1x1 output at batch 1)
        # fits either slot: bias first, then residual, then the activation's shifts
        if vec is not None and self.last < BIAS:
            return self.take("bias", vec, u)
        if res is not None and self.last < RESIDUAL:
            return self.take("residual", res, u)
        if vec is None:
            return why_res or why if res is None else "residual add after the residual or activation"
        if self.last < SHIFT_IN:
            self.pending = True  # an add after the bias / residual: only as RPReLU's shift_in
            return self.take("act_shift_in", vec, u)
        if self.last == ACT:
            return self.take("act_shift_out", vec, u)
        return "add after the activation's shift"

    def on_addcmul(self, u):
        a = _bind(u)
        if a.get("value", 1) != 1 or a["self"] is self.cur:
            return "addcmul with value != 1 or the value as its addend"
        other = a["tensor2"] if a["tensor1"] is self.cur else a["tensor1"]
        why = self.float_ok() or ("mul after an add (the epilogue multiplies first)" if self.last >= MULT else None)
        if why:
            return why
        mspec, why = self.channel_operand(other)
        bspec, why2 = self.channel_operand(a["self"])
        if why or why2:
            return why or why2
        self.steps["multiplier"] = mspec
        return self.take("bias", bspec, u)

    def on_prelu(self, u):
        if self.dtype != torch.float32 or self.last >= ACT:
            return "activation on a value that is not float32 or after an activation"
        slope = u.args[1] if len(u.args) > 1 else u.kwargs.get("negative_slope", u.kwargs.get("weight", 0.01))
        if u.target is aten.prelu.default:  # weight [C] (or [1]) applies along dim 1 of the input
            w = _val(slope)
            if self.perm.index(1) != 1 or w is None or w.dim() != 1 or w.dtype != torch.float32:
                return "prelu whose weight is not float32 along the channel dim"
            if not (_known(w.shape[0] == self.nchan) or _known(w.shape[0] == 1)) or self._depends_on_op(slope):
                return "prelu weight is not per channel"
            spec = ("node", slope, False)
        else:  # leaky_relu's number, _prelu_kernel's weight broadcast as in x * w
            spec, why = self.channel_operand(slope)
            if why:
                return why
        self.pending = False
        return self.take("act_slope", spec, u)

    def try_activation_pattern(self) -> bool | None:
        """where(t > 0, t, slope * t) on cur: t's users are exactly the gt, the mul and the where.
        None when cur's users are not that pattern."""
        users = list(self.cur.users)
        if len(users) != 3 or self.dtype != torch.float32 or self.last >= ACT:
            return None
        by = {u.target: u for u in users}
        gt, where = by.get(aten.gt.Scalar), by.get(aten.where.self)
        mul = by.get(aten.mul.Tensor) or by.get(aten.mul.Scalar)
        if not (gt and where and mul) or gt.args[1] != 0 or gt.args[0] is not self.cur:
            return None
        if where.args != (gt, self.cur, mul) or len(gt.users) != 1 or len(mul.users) != 1:
            return None
        other = _other(mul, self.cur)
        if other is None:
            return None
        spec, why = self.channel_operand(other[0])
        if why:
            self.reason = why
            return False
        self.pending = False
        why = self.take("act_slope", spec, where, extra=(gt, mul))
        self.reason = why or self.reason
        return why is None

    def on_cat(self, u):
        dim = _bind(u).get("dim", 0) % len(self.perm)
        if self.perm[dim] != 1 or self.pending or self.dtype != torch.float32:
            return "cat that is not along the channels of a float32 value"
        self.cat = u
        return "cat (fused through when every input of the cat is a binary op's chain)"

    def on_pack_bits(self, u):
        a = _bind(u)
        if a["x"] is not self.cur or self.dtype != torch.float32 or self.pending:
            return "pack_bits of a value that is not float32"
        if self.perm != self.bits_perm:
            return "pack_bits over a dim that is not the channels, or after a cat"
        thr = a.get("channel_threshold")
        if thr is None:
            spec = ("scalar", float(a.get("threshold", 0.0)), False)
        else:
            spec, why = self.channel_operand(thr)
            if why or _val(thr).dim() != 1:
                return why or "pack_bits threshold is not a vector"
        self.bits = True
        self.take("out_threshold", spec, u)
        self.reason = "bits for the next binary layer (end)"
