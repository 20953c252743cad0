"""Graph-level fusion of the float glue around packed layers into the ops' fused epilogue.

``fuse_graph(gm)`` rewrites, in an FX graph of aten ops (what torch.export produces and what
Inductor's post-grad passes see), each chain that starts at a ``bnn_kernels.binary_conv2d`` or
``xnor_gemm`` call and continues with elementwise float ops into one call of the same op with
the epilogue keywords (csrc/common/epilogue.h):

    y = float(acc) * multiplier + bias + residual;  t = y + shift_in;  t = t > 0 ? t : slope * t;
    y = t + shift_out;  then y rounded to out_dtype, or the bits of y >= out_threshold

A step is taken only where the graph computes exactly that, in float32, in that order, so the
fused result is bit-identical to the unfused graph:

- the int32 -> float32 conversion (explicit, or implied by a float32 operand);
- ``mul`` by a per-channel float32 vector (or a number) first, then ``add`` / ``sub`` of one
  (``addcmul(bias, y, multiplier)`` with value 1 is both, as Inductor computes it: a rounded
  product, then a rounded sum; eager CPU ``addcmul`` may contract the two into an FMA);
- ``add`` / ``sub`` of a residual tensor of the output's shape that does not depend on the op's
  own output;
- PReLU (``prelu``, ``leaky_relu`` or ``where(t > 0, t, slope * t)``), with an ``add`` / ``sub``
  of per-channel shifts before (after the bias and residual) and after it (RPReLU);
- a final cast to float16 / bfloat16 (out_dtype), or, where the only consumer is the next
  binary layer's ``pack_bits`` over the channels (threshold t), the packed bits (out_threshold);
- through a ``cat`` along the channels whose every input is such a chain (ReActNet-A's
  doubled blocks): the steps after the cat go into each op with its slice of the operands,
  and the cat joins the fused outputs;
- where the float32 result is needed as float (a shortcut, a cat) AND by a ``pack_bits`` over
  its channels (the next binary layer's input), both from one call of the op's dual form
  (``binary_conv2d_dual`` / ``xnor_gemm_dual``), and the pack_bits goes (``_fusion_dual.py``).

Anything else ends the chain: another order (``(acc + bias) * multiplier``), float64, division,
relu (it returns +0.0 where the epilogue's slope-0 PReLU returns -0.0), a per-sample or
per-pixel operand, an intermediate value that is also used elsewhere (kept in float). The
longest valid prefix of a chain is fused when it holds at least one step; ``FusionReport`` says
what was fused and why each chain stopped. Permutes between the steps are followed (the conv's
NCHW output may be permuted to NHWC); the residual is handed to the op in its own layout.
So are squeezes of size-1 dims other than the channels and the unsqueeze that restores such a
dim (the 1-D convs of bnn_kernels.nn.conv1d view their (N, O, 1, L) output as (N, O, L) and the
next layer's input back as (N, C, 1, L)): the fused output is squeezed as the graph was, the
residual unsqueezed into the op's layout. A packed layer's call that spells out_dtype=float32
loses it when the chain ends in its bits (out_threshold replaces it).
A device whose kernels have no fused epilogue yet (probed once, ``epilogue_supported``) is
left alone.

``bnn_kernels.compile_fused.FusionPass`` runs fuse_graph as an Inductor post-grad custom pass;
``bnn_kernels.compile`` and ``bnn_kernels.export(..., fuse=True)`` install it. (This module does
not import torch._inductor, which takes seconds.)
"""

from __future__ import annotations

import collections
import dataclasses
import functools

import torch
import torch.fx

from ._fusion_chain import _BINARY_OPS, _SLOT_OF, OUT, _bind, _Chain, _known, _same_shape, _val, full_perm
from ._fusion_dual import fuse_dual

__all__ = ["fuse_graph", "FusionReport"]

aten = torch.ops.aten


@dataclasses.dataclass
class FusionReport:
    """What fuse_graph did. ``ops``: one entry per binary_conv2d / xnor_gemm call seen, with
    the epilogue steps fused into it and the reason its chain stopped (and ``dual``: True where
    the call became its dual form, or ``dual_skipped``: why not); ``fused``: how many calls
    took each step; ``stopped``: how many chains stopped for each reason; ``dual``: how many
    calls return the float output and the bits together (each a pack_bits call less)."""

    ops: list[dict] = dataclasses.field(default_factory=list)

    @property
    def fused(self) -> collections.Counter:
        return collections.Counter(s for o in self.ops for s in o["fused"])

    @property
    def stopped(self) -> collections.Counter:
        return collections.Counter(o["stopped"] for o in self.ops)

    @property
    def ops_fused(self) -> int:
        """Calls that took at least one epilogue step."""
        return sum(1 for o in self.ops if o["fused"])

    @property
    def dual(self) -> int:
        """Calls rewritten to their dual form (float output and packed bits, pack_bits dropped)."""
        return sum(1 for o in self.ops if o.get("dual"))

    def merge(self, other: FusionReport) -> None:
        self.ops.extend(other.ops)

    def __str__(self) -> str:
        lines = [f"fused {self.ops_fused} of {len(self.ops)} binary op calls"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.fused.items(), key=lambda kv: _SLOT_OF[kv[0]])]
        if self.dual:
            lines.append(f"  float output and bits from one call (dual op, its pack_bits dropped): {self.dual}")
        lines.append("chains stopped at:")
        lines += [f"  {v} x {k}" for k, v in self.stopped.most_common()]
        return "\n".join(lines)


# -- rewriting --------------------------------------------------------------------------------
class _Builder:
    def __init__(self, graph: torch.fx.Graph, fake_mode):
        self.graph, self.fake_mode = graph, fake_mode
        self.replaced: dict[torch.fx.Node, torch.fx.Node] = {}  # chain ends -> fused outputs
        self.entries: dict[torch.fx.Node, dict] = {}  # op calls (fused ones too) -> report entries

    def resolve(self, x):
        while x in self.replaced:
            x = self.replaced[x]
        return x

    def call(self, target, args, kwargs=None):
        node = self.graph.call_function(target, tuple(args), kwargs or {})
        vals = torch.fx.node.map_arg((args, kwargs or {}), lambda n: n.meta.get("val"))
        if self.fake_mode is not None:
            with self.fake_mode:
                node.meta["val"] = target(*vals[0], **vals[1])
        return node

    def vector(self, spec, n: int, device):
        """The [n] float32 node of a per-channel operand spec."""
        if spec[0] == "slice":  # channels lo:hi of an operand over all channels of a cat
            _, inner, lo, hi, total = spec
            return self.call(aten.slice.Tensor, (self.vector(inner, total, device), 0, lo, hi))
        kind, x, neg = spec
        if kind == "scalar":
            v = -x if neg else x
            return self.call(aten.full.default, ([n], v), {"dtype": torch.float32, "device": device})
        x = self.resolve(x)
        if not _same_shape(_val(x).shape, (n,)):
            if _known(_val(x).numel() == 1):
                x = self.call(aten.expand.default, (self.call(aten.reshape.default, (x, [1])), [n]))
            else:
                x = self.call(aten.reshape.default, (x, [n]))
        return self.call(aten.neg.default, (x,)) if neg else x

    def residual(self, spec):
        _, x, neg, perm, *cut = spec
        x = self.resolve(x)
        if cut:  # a member of a cat: its channels of the residual
            x = self.call(aten.slice.Tensor, (x, perm.index(1), *cut[0]))
        for _ in range(len(perm) - _val(spec[1]).dim()):  # the dims the chain squeezed (full_perm: last)
            x = self.call(aten.unsqueeze.default, (x, -1))
        if perm != tuple(range(len(perm))):
            inv = [perm.index(d) for d in range(len(perm))]
            x = self.call(aten.permute.default, (x, inv))
        return self.call(aten.neg.default, (x,)) if neg else x


def _emit(chain: _Chain, steps: dict, perm, bits: bool, builder: _Builder):
    """The fused call of chain's op with steps (at the graph's insertion point), permuted to
    the chain's layout: (fused call, output node)."""
    op = chain.op
    kw = dict(op.kwargs)
    if kw.get("out_dtype") == torch.int32:
        del kw["out_dtype"]  # the raw result, spelled out; float steps follow
    if "out_threshold" in steps and kw.get("out_dtype") == torch.float32:
        del kw["out_dtype"]  # bits of the float32 result (a packed module's call spells float32 out)
    for name, spec in steps.items():
        if name == "out_dtype":
            kw[name] = spec[1]
        elif name == "residual":
            kw[name] = builder.residual(spec)
        else:
            kw[name] = builder.vector(spec, chain.nchan, chain.device)
    fused = builder.call(op.target, op.args, kw)
    fused.meta.update({k: v for k, v in op.meta.items() if k not in ("val", "tensor_meta")})
    if op in builder.entries:
        builder.entries[fused] = builder.entries[op]
    out, full = fused, full_perm(perm, chain.ndim)
    if not bits and full != tuple(range(len(full))):
        out = builder.call(aten.permute.default, (fused, list(full)))
    if not bits and len(full) > len(perm):  # the dims the chain squeezed, last in full
        out = builder.call(aten.squeeze.dims, (out, list(range(len(perm), len(full)))))
    return fused, out


def _erase(graph: torch.fx.Graph, nodes) -> None:
    for node in reversed(list(nodes)):
        if not node.users:
            graph.erase_node(node)


def _rewrite(chain: _Chain, builder: _Builder) -> list[str]:
    end, perm, steps, dead, bits = chain.commit
    with chain.graph.inserting_before(end):
        _, out = _emit(chain, steps, perm, bits, builder)
    end.replace_all_uses_with(out)
    builder.replaced[end] = out
    _erase(chain.graph, [chain.op, *dead, end])
    return sorted(steps, key=_SLOT_OF.get)


def _cut(spec, lo: int, hi: int, total: int):
    if spec[0] == "residual":
        return (*spec, (lo, hi))
    return spec if spec[0] == "dtype" else ("slice", spec, lo, hi, total)


def _fuse_cat(cat: torch.fx.Node, members: list[_Chain], builder: _Builder) -> bool:
    """The steps after a cat of member chains along the channels, fused into each member with
    its slice of the per-channel operands; the cat then joins the fused outputs. False when
    nothing after the cat could be taken (the members' entries say why)."""
    graph = cat.graph
    post = _Chain.after_cat(graph, cat, members, {n: i for i, n in enumerate(graph.nodes)})
    while post.last < OUT and post.step():
        pass
    for m in members:
        m.entry["stopped"] = f"after the cat: {post.reason}"
    if post.commit is None:
        return False
    end, _, steps, dead, _ = post.commit
    outs, lo = [], 0
    with graph.inserting_before(end):
        for m in members:
            m.steps.update({k: _cut(v, lo, lo + m.nchan, post.nchan) for k, v in steps.items()})
            outs.append(_emit(m, m.steps, m.perm, False, builder)[1])
            lo += m.nchan
        joined = builder.call(aten.cat.default, (outs, _bind(cat).get("dim", 0)))
    end.replace_all_uses_with(joined)
    builder.replaced[end] = joined
    _erase(graph, [cat, *dead, end])
    for m in members:
        _erase(graph, [m.op, *m.dead, m.cur])
    return True


def _fake_mode(graph: torch.fx.Graph):
    from torch._guards import detect_fake_mode

    vals = [n.meta.get("val") for n in graph.nodes if isinstance(n.meta.get("val"), torch.Tensor)]
    return detect_fake_mode(vals)


@functools.lru_cache(maxsize=None)
def epilogue_supported(op_name: str, device: str) -> bool:
    """Whether the op's kernel for this device runs the fused epilogue (probed once with a
    1x1 problem: float steps, a float16 output and bits); a device whose kernels do not have
    it yet (they raise NotImplementedError), or any failure of the probe, means no fusion."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():  # real tensors, also inside a compiler's pass
        return _probe(getattr(torch.ops.bnn_kernels, op_name), op_name, device)


def _probe(op, op_name: str, device: str) -> bool:
    shape = (1, 1) if op_name == "xnor_gemm" else (1, 1, 1, 1)  # [M, W] or [N, H, W, words]
    a, res = torch.ones(shape, dtype=torch.int32, device=device), torch.zeros(shape, device=device)
    vec = torch.ones(1, device=device)
    steps = dict(multiplier=vec, bias=vec, residual=res, act_slope=vec, act_shift_in=vec, act_shift_out=vec)
    try:
        for kw in (steps, {"out_dtype": torch.float16}, {"out_threshold": vec}):
            op(a, a, 1, **kw)  # k = in_channels = 1
    except Exception:  # noqa: BLE001 - NotImplementedError, or a build without this device: no fusion
        return False
    return True


def _walk(graph: torch.fx.Graph, node: torch.fx.Node, entry: dict) -> _Chain | None:
    """The chain after one binary op call (None when the call cannot take steps)."""
    if not isinstance(_val(node), torch.Tensor):
        entry["stopped"] = "no tensor metadata (node.meta['val'])"
        return None
    device = _val(node).device
    if not epilogue_supported(
        entry["op"], f"{device.type}:{device.index}" if device.index is not None else device.type
    ):
        entry["stopped"] = f"the {device.type} kernel of {entry['op']} has no fused epilogue in this build"
        return None
    args = _bind(node)
    if args.get("out_threshold") is not None or args.get("out_dtype") in (torch.float16, torch.bfloat16):
        entry["stopped"] = "already ends in bits or a rounded dtype"
        return None
    chain = _Chain(graph, node, {n: i for i, n in enumerate(graph.nodes)})
    chain.entry = entry
    while chain.last < OUT and chain.step():
        pass
    entry["stopped"] = chain.reason
    if chain.pending:
        entry["stopped"] += " (after an add that follows the bias or residual: no activation to shift)"
    return chain


def fuse_graph(gm: torch.fx.GraphModule | torch.fx.Graph) -> FusionReport:
    """Fuses, in place, the float ops after each binary_conv2d / xnor_gemm call of gm into the
    op's epilogue where that is bit-identical (see the module docstring). The graph must carry
    tensor metadata (node.meta["val"], as torch.export and Inductor's passes give). Returns a
    FusionReport; a GraphModule is recompiled."""
    graph = gm.graph if isinstance(gm, torch.fx.GraphModule) else gm
    report = FusionReport()
    packets = [getattr(torch.ops.bnn_kernels, n) for n in _BINARY_OPS if hasattr(torch.ops.bnn_kernels, n)]
    ops = {p.default: p for p in packets}
    ops.update({p: p for p in packets})  # a symbolic_trace graph calls the packet
    builder = _Builder(graph, _fake_mode(graph))
    at_cats: dict[torch.fx.Node, list[_Chain]] = {}  # chains that end in a cat, not yet rewritten
    leftover: list[_Chain] = []
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in ops:
            continue
        entry = {"node": node.name, "op": ops[node.target].__name__.split(".")[-1], "fused": [], "stopped": ""}
        report.ops.append(entry)
        builder.entries[node] = entry
        chain = _walk(graph, node, entry)
        if chain is None:
            continue
        if chain.cat is not None and (chain.commit is None or chain.commit[0] is chain.cur):
            chain.commit = chain.commit or (chain.cur, chain.perm, {}, list(chain.dead), False)
            members = at_cats.setdefault(chain.cat, [])
            members.append(chain)
            inputs = _bind(chain.cat)["tensors"]
            if len(set(inputs)) == len(inputs) == len(members) and {m.cur for m in members} == set(inputs):
                members.sort(key=lambda m: inputs.index(m.cur))
                del at_cats[chain.cat]
                if _fuse_cat(chain.cat, members, builder):
                    for m in members:
                        m.entry["fused"] = sorted(m.steps, key=_SLOT_OF.get)
                    continue
                leftover += members  # nothing after the cat: each member on its own
        elif chain.commit is not None:
            entry["fused"] = _rewrite(chain, builder)
    for m in leftover + [m for chains in at_cats.values() for m in chains]:
        if m.commit[2]:
            m.entry["fused"] = _rewrite(m, builder)
    fuse_dual(graph, builder, builder.entries)
    graph.lint()
    if isinstance(gm, torch.fx.GraphModule):
        gm.recompile()
    return report
