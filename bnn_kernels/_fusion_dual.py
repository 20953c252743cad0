"""The dual outputs of bnn_kernels.fusion: a binary op call whose float32 result is read by float
consumers (a shortcut, a cat, the graph's output) and also, through layout ops only, by a
``pack_bits`` over its channels (the next binary layer's input) becomes one call of the op's dual
form (``xnor_gemm_dual`` / ``binary_conv2d_dual``). It writes the float output and the packed
bits of y >= threshold from the same epilogue pass, so the pack_bits call, which re-read the
float tensor, goes.

Exact: the dual op's bits compare the float32 y with the float32 threshold, as pack_bits of a
float32 tensor does (pack_bits rounds a scalar threshold to float32 first, and so does the
threshold vector built here). Taken only where the op's result is float32, the pack_bits'
channel threshold (when given) is a float32 [C] vector computed before the op, and the packed
dim is the op's channel dim."""

from __future__ import annotations

import functools
import operator

import torch
import torch.fx

from ._fusion_chain import _CONVERT, _LAYOUT, _VIEWS, _bind, _convert_dtype, _same_shape, _val

aten = torch.ops.aten

_DUAL = {"binary_conv2d": "binary_conv2d_dual", "xnor_gemm": "xnor_gemm_dual"}


@functools.lru_cache(maxsize=None)
def dual_supported(op_name: str, device: str) -> bool:
    """Whether the dual form of op_name runs on device (probed once with a 1x1 problem)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    shape = (1, 1) if op_name == "xnor_gemm" else (1, 1, 1, 1)
    with unset_fake_temporarily():
        try:
            a = torch.ones(shape, dtype=torch.int32, device=device)
            getattr(torch.ops.bnn_kernels, _DUAL[op_name])(a, a, 1, out_threshold=torch.zeros(1, device=device))
        except Exception:  # noqa: BLE001 - a build or device without the dual op: no dual outputs
            return False
    return True


def _passes_value(u: torch.fx.Node, cur: torch.fx.Node) -> bool:
    """u returns cur's values unchanged (a copy, an alias, a same-shape view, a float32 cast)."""
    if not u.args or u.args[0] is not cur:
        return False
    if u.target in _LAYOUT:
        return True
    if u.target in _VIEWS:
        return isinstance(_val(u), torch.Tensor) and _same_shape(_val(u).shape, _val(cur).shape)
    return u.target in _CONVERT and _convert_dtype(u) == torch.float32


def _packs(op: torch.fx.Node):
    """(pack_bits node, the dims of the op's output its x has, path nodes) for each pack_bits
    that reads the op's output through value-preserving layout ops."""
    found, stack = [], [(op, tuple(range(_val(op).dim())), [])]
    while stack:
        cur, perm, path = stack.pop()
        for u in cur.users:
            if u.op != "call_function":
                continue
            if u.target is torch.ops.bnn_kernels.pack_bits.default and _bind(u)["x"] is cur:
                found.append((u, perm, path))
            elif u.target is aten.permute.default and u.args[0] is cur:
                stack.append((u, tuple(perm[d % len(perm)] for d in u.args[1]), path + [u]))
            elif _passes_value(u, cur):
                stack.append((u, perm, path + [u]))
    return found


def _threshold(pack: torch.fx.Node, op: torch.fx.Node, order: dict, nchan: int):
    """(threshold spec for _Builder.vector, None) or (None, reason)."""
    a = _bind(pack)
    thr = a.get("channel_threshold")
    if thr is None:
        return ("scalar", float(a.get("threshold", 0.0)), False), None
    v = _val(thr)
    if not isinstance(v, torch.Tensor) or v.dtype != torch.float32 or v.dim() != 1 or v.shape[0] != nchan:
        return None, "its pack_bits threshold is not a float32 vector over the channels"
    if order.get(thr, len(order)) > order[op]:
        return None, "its pack_bits threshold is computed after the op"
    return ("node", thr, False), None


def fuse_dual(graph: torch.fx.Graph, builder, entries: dict) -> None:
    """Rewrites, in place, each binary op call of graph whose float32 result also feeds a
    pack_bits over its channels into the op's dual form; the entry of each (entries: op node
    -> FusionReport entry) gets "dual": True, or "dual_skipped" with the reason."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        entry = entries.get(node)
        val = _val(node)
        if entry is None or not isinstance(val, torch.Tensor) or val.dtype != torch.float32:
            continue
        if _bind(node).get("out_threshold") is not None:
            continue
        want = (0, 2, 3, 1) if val.dim() == 4 else (0, 1)
        packs = [(p, path) for p, perm, path in _packs(node) if perm == want]
        if not packs:
            continue
        device = f"{val.device.type}:{val.device.index}" if val.device.index is not None else val.device.type
        if not dual_supported(entry["op"], device):
            entry["dual_skipped"] = f"the {val.device.type} build has no {_DUAL[entry['op']]}"
            continue
        pack, path = packs[0]
        spec, why = _threshold(pack, node, order, val.shape[1])
        if why:
            entry["dual_skipped"] = why
            continue
        with graph.inserting_before(node):
            thr = builder.vector(spec, val.shape[1], val.device)
            dual = builder.call(
                getattr(torch.ops.bnn_kernels, _DUAL[entry["op"]]).default,
                node.args,
                {**node.kwargs, "out_threshold": thr},
            )
            # not eager_input_vals: Inductor would bind the op's recorded inputs (no out_threshold)
            # to the dual op's schema
            skip = ("val", "tensor_meta", "eager_input_vals")
            dual.meta.update({k: v for k, v in node.meta.items() if k not in skip})
            y, bits = (builder.call(operator.getitem, (dual, i)) for i in (0, 1))
        node.replace_all_uses_with(y)
        pack.replace_all_uses_with(bits)
        for n in [pack, *reversed(path), node]:
            if not n.users:
                graph.erase_node(n)
        entry["dual"] = True
