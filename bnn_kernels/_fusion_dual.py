"""The dual outputs of bnn_kernels.fusion: a binary op call whose float32 result is read by float
consumers (a shortcut, a cat, the graph's output) and also, through layout ops only (permutes,
copies, same-shape views, float32 casts, the squeezes of the 1-D convs), by a
``pack_bits`` over its channels (the next binary layer's input) becomes one call of the op's dual
form (``xnor_gemm_dual`` / ``binary_conv2d_dual``). It writes the float output and the packed
bits of y >= threshold from the same epilogue pass, so the pack_bits call, which re-read the
float tensor, goes. The same through a ``cat`` of such calls along the channels (ReActNet-A's
doubled blocks) when every member but the last has whole 32-bit words of channels: each member
packs its slice of the threshold and the bit words are concatenated.

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

from ._fusion_chain import _CONVERT, _LAYOUT, _SQUEEZE, _VIEWS, _bind, _convert_dtype, _same_shape, _val, squeeze_perm

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
            elif u.target in _SQUEEZE and u.args[0] is cur:  # the 1-D convs' views
                p = squeeze_perm(perm, u, _val(op).dim(), _val(cur).shape)
                if not isinstance(p, str):
                    stack.append((u, p, path + [u]))
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


def _float_op(node, entries: dict) -> bool:
    """node is a binary op call with a float32 result (not already bits)."""
    val = _val(node)
    if node not in entries or not isinstance(val, torch.Tensor) or val.dtype != torch.float32:
        return False
    return _bind(node).get("out_threshold") is None


def _bits_pack(node, entries: dict, ops: list, order: dict):
    """(pack_bits node, its path, threshold spec) of a pack over the channels of node's result
    (an op's or a cat's of ops); None, with "dual_skipped" in the ops' entries when one
    cannot be taken."""
    val = _val(node)
    want = (0, 2, 3, 1) if val.dim() == 4 else (0, 1)
    packs = [(p, path) for p, perm, path in _packs(node) if perm == want]
    if not packs:
        return None
    device = f"{val.device.type}:{val.device.index}" if val.device.index is not None else val.device.type
    why = None
    if not all(dual_supported(entries[op]["op"], device) for op in ops):
        why = f"the {val.device.type} build has no dual form of {entries[ops[0]]['op']}"
    spec = None
    if why is None:
        spec, why = _threshold(packs[0][0], min(ops, key=order.get), order, val.shape[1])
    if why:
        for op in ops:
            entries[op]["dual_skipped"] = why
        return None
    return packs[0][0], packs[0][1], spec


def _emit_dual(graph, builder, entries: dict, node, spec):
    """The dual call of op node with threshold spec, before node; node's uses go to its float
    output. Returns the bits node."""
    entry, val = entries[node], _val(node)
    with graph.inserting_before(node):
        thr = builder.vector(spec, val.shape[1], val.device)
        target = getattr(torch.ops.bnn_kernels, _DUAL[entry["op"]]).default
        dual = builder.call(target, node.args, {**node.kwargs, "out_threshold": thr})
        # not eager_input_vals: Inductor would bind the op's recorded inputs (no out_threshold)
        # to the dual op's schema
        skip = ("val", "tensor_meta", "eager_input_vals")
        dual.meta.update({k: v for k, v in node.meta.items() if k not in skip})
        y, bits = (builder.call(operator.getitem, (dual, i)) for i in (0, 1))
    node.replace_all_uses_with(y)
    graph.erase_node(node)
    entry["dual"] = True
    return bits


def _drop_pack(graph, pack, path, bits) -> None:
    pack.replace_all_uses_with(bits)
    for n in [pack, *reversed(path)]:
        if not n.users:
            graph.erase_node(n)


def _fuse_cat(graph, builder, entries: dict, cat, order: dict) -> None:
    """A pack_bits of a cat of op results along the channels: each op's dual form with its
    slice of the threshold, the bit words concatenated."""
    a = _bind(cat)
    members = a["tensors"]
    if not members or len(set(members)) != len(members) or not all(_float_op(m, entries) for m in members):
        return
    vals = [_val(m) for m in members]
    if a.get("dim", 0) % vals[0].dim() != 1:
        return
    got = _bits_pack(cat, entries, members, order)
    if got is None:
        return
    if any(v.shape[1] % 32 for v in vals[:-1]):
        for m in members:
            entries[m]["dual_skipped"] = "a cat whose members' channels split bit words"
        return
    pack, path, spec = got
    total, lo, bits = _val(cat).shape[1], 0, []
    for m, v in zip(members, vals):
        n = v.shape[1]
        bits.append(
            _emit_dual(graph, builder, entries, m, spec if spec[0] == "scalar" else ("slice", spec, lo, lo + n, total))
        )
        lo += n
    with graph.inserting_before(pack):
        joined = builder.call(aten.cat.default, (bits, -1))
    _drop_pack(graph, pack, path, joined)


def fuse_dual(graph: torch.fx.Graph, builder, entries: dict) -> None:
    """Rewrites, in place, each binary op call of graph whose float32 result (or a cat of
    such results along the channels) also feeds a pack_bits over its channels into the op's
    dual form; the entry of each (entries: op node -> FusionReport entry) gets "dual": True,
    or "dual_skipped" with the reason."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if _float_op(node, entries):
            got = _bits_pack(node, entries, [node], order)
            if got is not None:
                pack, path, spec = got
                _drop_pack(graph, pack, path, _emit_dual(graph, builder, entries, node, spec))
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is aten.cat.default:
            _fuse_cat(graph, builder, entries, node, order)
