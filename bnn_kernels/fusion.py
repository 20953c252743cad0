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
  binary layer's ``pack_bits`` over the channels (threshold t), the packed bits (out_threshold).

Anything else ends the chain: another order (``(acc + bias) * multiplier``), float64, division,
relu (it returns +0.0 where the epilogue's slope-0 PReLU returns -0.0), a per-sample or
per-pixel operand, an intermediate value that is also used elsewhere (kept in float). The
longest valid prefix of a chain is fused when it holds at least one step; ``FusionReport`` says
what was fused and why each chain stopped. Permutes between the steps are followed (the conv's
NCHW output may be permuted to NHWC); the residual is handed to the op in its own layout.

``bnn_kernels.compile_fused.FusionPass`` runs fuse_graph as an Inductor post-grad custom pass;
``bnn_kernels.compile`` and ``bnn_kernels.export(..., fuse=True)`` install it. (This module does
not import torch._inductor, which takes seconds.)
"""

from __future__ import annotations

import collections
import dataclasses

import torch
import torch.fx

from ._fusion_chain import _BINARY_OPS, _SLOT_OF, OUT, _bind, _Chain, _known, _same_shape, _val

__all__ = ["fuse_graph", "FusionReport"]

aten = torch.ops.aten


@dataclasses.dataclass
class FusionReport:
    """What fuse_graph did. ``ops``: one entry per binary_conv2d / xnor_gemm call seen, with
    the epilogue steps fused into it and the reason its chain stopped; ``fused``: how many
    calls took each step; ``stopped``: how many chains stopped for each reason."""

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

    def merge(self, other: FusionReport) -> None:
        self.ops.extend(other.ops)

    def __str__(self) -> str:
        lines = [f"fused {self.ops_fused} of {len(self.ops)} binary op calls"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.fused.items(), key=lambda kv: _SLOT_OF[kv[0]])]
        lines.append("chains stopped at:")
        lines += [f"  {v} x {k}" for k, v in self.stopped.most_common()]
        return "\n".join(lines)


# -- rewriting --------------------------------------------------------------------------------
class _Builder:
    def __init__(self, graph: torch.fx.Graph, fake_mode):
        self.graph, self.fake_mode = graph, fake_mode

    def call(self, target, args, kwargs=None):
        node = self.graph.call_function(target, tuple(args), kwargs or {})
        vals = torch.fx.node.map_arg((args, kwargs or {}), lambda n: n.meta.get("val"))
        if self.fake_mode is not None:
            with self.fake_mode:
                node.meta["val"] = target(*vals[0], **vals[1])
        return node

    def vector(self, spec, chain: _Chain):
        """The [C] float32 node of a per-channel operand spec."""
        kind, x, neg = spec
        n = chain.nchan
        if kind == "scalar":
            v = -x if neg else x
            return self.call(aten.full.default, ([n], v), {"dtype": torch.float32, "device": chain.device})
        if not _same_shape(_val(x).shape, (n,)):
            if _known(_val(x).numel() == 1):
                x = self.call(aten.expand.default, (self.call(aten.reshape.default, (x, [1])), [n]))
            else:
                x = self.call(aten.reshape.default, (x, [n]))
        return self.call(aten.neg.default, (x,)) if neg else x

    def residual(self, spec):
        _, x, neg, perm = spec
        if perm != tuple(range(len(perm))):
            inv = [perm.index(d) for d in range(len(perm))]
            x = self.call(aten.permute.default, (x, inv))
        return self.call(aten.neg.default, (x,)) if neg else x


def _rewrite(chain: _Chain, builder: _Builder) -> list[str]:
    end, perm, steps, dead, bits = chain.commit
    graph = chain.graph
    with graph.inserting_before(end):
        kw = dict(chain.op.kwargs)
        if kw.get("out_dtype") == torch.int32:
            del kw["out_dtype"]  # the raw result, spelled out; float steps follow
        for name, spec in steps.items():
            if name == "out_dtype":
                kw[name] = spec[1]
            elif name == "residual":
                kw[name] = builder.residual(spec)
            else:
                kw[name] = builder.vector(spec, chain)
        fused = builder.call(chain.op.target, chain.op.args, kw)
        out = fused
        if not bits and perm != tuple(range(len(perm))):
            out = builder.call(aten.permute.default, (fused, list(perm)))
    fused.meta.update({k: v for k, v in chain.op.meta.items() if k not in ("val", "tensor_meta")})
    end.replace_all_uses_with(out)
    for node in reversed([*dead, end]):
        if not node.users:
            graph.erase_node(node)
    if not chain.op.users:
        graph.erase_node(chain.op)
    return sorted(steps, key=_SLOT_OF.get)


def _fake_mode(graph: torch.fx.Graph):
    from torch._guards import detect_fake_mode

    vals = [n.meta.get("val") for n in graph.nodes if isinstance(n.meta.get("val"), torch.Tensor)]
    return detect_fake_mode(vals)


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
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in ops:
            continue
        name = node.name
        entry = {"node": name, "op": ops[node.target].__name__.split(".")[-1], "fused": [], "stopped": ""}
        report.ops.append(entry)
        if not isinstance(_val(node), torch.Tensor):
            entry["stopped"] = "no tensor metadata (node.meta['val'])"
            continue
        args = _bind(node)
        if args.get("out_threshold") is not None or args.get("out_dtype") in (torch.float16, torch.bfloat16):
            entry["stopped"] = "already ends in bits or a rounded dtype"
            continue
        chain = _Chain(graph, node, {n: i for i, n in enumerate(graph.nodes)})
        while chain.last < OUT and chain.step():
            pass
        entry["stopped"] = chain.reason
        if chain.pending:
            entry["stopped"] += " (after an add that follows the bias or residual: no activation to shift)"
        if chain.commit is not None:
            entry["fused"] = _rewrite(chain, builder)
    graph.lint()
    if isinstance(gm, torch.fx.GraphModule):
        gm.recompile()
    return report
