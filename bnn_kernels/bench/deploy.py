"""The float deployment of a BNN: the baseline a user would ship without bnn_kernels.

From the float model as written, `float_deployment` builds the fastest float model torch
offers for inference, with the same outputs up to float rounding:
- the graph is captured once with torch.export (batch dimension dynamic);
- every value computed from parameters alone is computed once and frozen: the weight
  binarizer's output (sign(w) * mean|w| and the like) becomes the conv weight, so no sign()
  or mean() of weights runs per call; activation binarizers, which depend on the input, stay;
- straight-through estimators written as arithmetic, ``a.detach() - b.detach() + b`` and
  ``x + (a - x).detach()``, are replaced by their forward value a (equal up to rounding);
- eval-mode BatchNorm that directly follows a conv is folded into it
  (torch.nn.utils.fusion.fuse_conv_bn_weights);
- conv weights and the input are channels_last;
- torch.compile is applied by the caller where it helps (see bnn_kernels.bench.model).
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

aten = torch.ops.aten
_CONV = {aten.conv2d.default, aten.convolution.default}
_BN = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}
_ASSERTS = {aten._assert_tensor_metadata.default}


class FloatDeployment(nn.Module):
    """The frozen graph behind a channels_last conversion of the input (counted in its time)."""

    def __init__(self, gm: fx.GraphModule, stats: dict):
        super().__init__()
        self.gm = gm
        self.stats = stats

    def forward(self, x):
        return self.gm(x.contiguous(memory_format=torch.channels_last))


def float_deployment(model: nn.Module, example: torch.Tensor) -> FloatDeployment:
    """Exports model (eval mode, batch dimension of example dynamic), freezes parameter-only
    values, folds conv -> BatchNorm, puts conv weights in channels_last.
    example needs a batch of at least 2 (export specializes a batch of 1)."""
    if example.dim() < 1 or example.shape[0] < 2:
        raise ValueError(f"example: needs a batch of at least 2, got shape {tuple(example.shape)}")
    model = model.eval()
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        ep = torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=False)
    gm = ep.module()
    stats = {
        "ste_removed": drop_straight_through(gm),
        "frozen": freeze_parameter_values(gm),
        "bn_folded": fold_conv_bn(gm),
    }
    stats["channels_last_weights"] = _channels_last_weights(gm)
    _drop_unused_attributes(gm)
    gm.graph.lint()
    gm.recompile()
    return FloatDeployment(gm, stats)


def _detached(n):
    return n.args[0] if isinstance(n, fx.Node) and n.target == aten.detach.default else None


def drop_straight_through(gm: fx.GraphModule) -> int:
    """Replaces add(sub(detach(a), detach(b)), b) and add(x, detach(sub(a, x))) by a: the
    forward value of a straight-through estimator, without the gradient path's arithmetic."""
    count = 0
    for n in list(gm.graph.nodes):
        if n.op != "call_function" or n.target != aten.add.Tensor or len(n.args) != 2 or n.kwargs:
            continue
        left, right = n.args
        a = None
        if isinstance(left, fx.Node) and left.target == aten.sub.Tensor and len(left.args) == 2:
            d1, d2 = (_detached(x) for x in left.args)
            if d1 is not None and d2 is right:
                a = d1
        inner = _detached(right)
        if a is None and isinstance(inner, fx.Node) and inner.target == aten.sub.Tensor and inner.args[1] is left:
            a = inner.args[0]
        if isinstance(a, fx.Node):
            n.replace_all_uses_with(a)
            count += 1
    gm.graph.eliminate_dead_code()
    return count


def _is_const(node, const: set) -> bool:
    args = [a for a in node.all_input_nodes]
    return node.op == "call_function" and node.target not in _ASSERTS and all(a in const for a in args) and bool(args)


def freeze_parameter_values(gm: fx.GraphModule) -> int:
    """Computes once every node whose inputs are all parameters, buffers or such nodes, and
    replaces those used by the rest of the graph with a frozen buffer. Returns the count."""
    const = {n for n in gm.graph.nodes if n.op == "get_attr"}
    values: dict = {}
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            values[n] = _attr(gm, n.target)
        elif _is_const(n, const):
            const.add(n)
            args, kwargs = fx.node.map_arg((n.args, n.kwargs), lambda a: values[a])
            with torch.no_grad():
                values[n] = n.target(*args, **kwargs)
    frozen = 0
    for n in list(gm.graph.nodes):
        if n.op != "call_function" or n not in const or all(u in const for u in n.users):
            continue
        if not isinstance(values[n], torch.Tensor):
            continue
        name = f"_frozen_{frozen}"
        gm.register_buffer(name, values[n].detach().clone())
        with gm.graph.inserting_before(n):
            new = gm.graph.get_attr(name)
        n.replace_all_uses_with(new)
        frozen += 1
    for n in list(gm.graph.nodes):
        if n.op == "call_function" and n.target in _ASSERTS:
            gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    return frozen


def fold_conv_bn(gm: fx.GraphModule) -> int:
    """Folds an eval BatchNorm whose input is a conv read by nothing else into that conv."""
    folded = 0
    for bn in list(gm.graph.nodes):
        if bn.op != "call_function" or bn.target not in _BN:
            continue
        conv = bn.args[0]
        if not (isinstance(conv, fx.Node) and conv.target in _CONV and len(conv.users) == 1):
            continue
        if bn.target == aten.batch_norm.default:
            _, gamma, beta, mean, var, training, _, eps = bn.args[:8]
            if training:
                continue
        else:
            _, gamma, beta, mean, var, _, eps = bn.args[:7]
        w, b = conv.args[1], conv.args[2] if len(conv.args) > 2 else None
        parts = (w, b, gamma, beta, mean, var)
        if not all(p is None or (isinstance(p, fx.Node) and p.op == "get_attr") for p in parts) or mean is None:
            continue
        wv, bv, gv, betav, mv, vv = (None if p is None else _attr(gm, p.target) for p in parts)
        fw, fb = fuse_conv_bn_weights(wv, bv, mv, vv, eps, gv, betav)
        names = [f"_bnfold_{folded}_w", f"_bnfold_{folded}_b"]
        gm.register_buffer(names[0], fw.detach())
        gm.register_buffer(names[1], fb.detach())
        with gm.graph.inserting_before(conv):
            nw, nb = gm.graph.get_attr(names[0]), gm.graph.get_attr(names[1])
        args = list(conv.args) + [None] * max(0, 3 - len(conv.args))
        args[1], args[2] = nw, nb
        conv.args = tuple(args)
        out = bn if bn.target == aten.batch_norm.default else None
        if out is None:  # _native_batch_norm_legit_no_training returns (out, mean, invstd)
            users = list(bn.users)
            if not all(u.target is operator.getitem and u.args[1] == 0 for u in users):
                continue
            for u in users:
                u.replace_all_uses_with(conv)
        else:
            bn.replace_all_uses_with(conv)
        folded += 1
    gm.graph.eliminate_dead_code()
    return folded


def _channels_last_weights(gm: fx.GraphModule) -> int:
    count = 0
    for n in gm.graph.nodes:
        if (
            n.op == "call_function"
            and n.target in _CONV
            and isinstance(n.args[1], fx.Node)
            and n.args[1].op == "get_attr"
        ):
            owner, _, leaf = n.args[1].target.rpartition(".")
            mod = gm.get_submodule(owner) if owner else gm
            t = getattr(mod, leaf)
            if t.dim() == 4:
                with torch.no_grad():
                    t.data = t.data.contiguous(memory_format=torch.channels_last)
                count += 1
    return count


def _drop_unused_attributes(gm: fx.GraphModule) -> None:
    """Deletes parameters and buffers no node reads (the weights before freezing, folded BN)."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in [k for k, _ in gm.named_parameters()] + [k for k, _ in gm.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, leaf)


def _attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
