"""``bnn_kernels.compile``: torch.compile with the epilogue fusion pass installed."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

from .fusion import FusionReport, fuse_graph

__all__ = ["compile", "FusionPass", "fusion_pass_of"]


class FusionPass(CustomGraphPass):
    """fuse_graph as an Inductor post-grad custom pass (config ``post_grad_custom_post_pass``).
    ``reports`` collects one FusionReport per graph compiled (none for a graph the FX graph
    cache serves: the pass does not run then)."""

    def __init__(self):
        self.reports: list[FusionReport] = []

    def __call__(self, graph: torch.fx.Graph) -> None:
        self.reports.append(fuse_graph(graph))

    def __deepcopy__(self, memo):
        return self  # AOTInductor deep-copies its configs: the reports must reach the caller's pass

    def uuid(self) -> Any:
        here = os.path.dirname(os.path.abspath(__file__))
        return get_hash_for_files(
            tuple(os.path.join(here, f) for f in ("fusion.py", "_fusion_chain.py", "_fusion_dual.py")) + (__file__,)
        )

    @property
    def report(self) -> FusionReport:
        """All reports merged."""
        out = FusionReport()
        for r in self.reports:
            out.merge(r)
        return out


def fusion_pass_of(fuse: bool | FusionPass) -> FusionPass | None:
    """The pass to install for a ``fuse`` argument: None for False, a new FusionPass for True,
    the caller's own FusionPass (to read its reports afterwards)."""
    if isinstance(fuse, FusionPass):
        return fuse
    if not isinstance(fuse, bool):
        raise TypeError(f"fuse must be a bool or a bnn_kernels.fusion.FusionPass, got {type(fuse).__name__}")
    return FusionPass() if fuse else None


def compile(model, fuse: bool | FusionPass = True, **torch_compile_kwargs: Any):  # noqa: A001 - torch.compile's name
    """``torch.compile(model, **torch_compile_kwargs)`` with ``bnn_kernels.fusion.fuse_graph``
    run as Inductor's post-grad custom pass: the float steps after each binary_conv2d /
    xnor_gemm call (scale, bias, residual, PReLU / RPReLU, the next layer's pack_bits) move
    into the op's fused epilogue wherever that is bit-identical to the unfused graph.

    Args:
        model: an nn.Module (usually from ``bnn_kernels.convert``) or a function.
        fuse: True (default), False (plain torch.compile), or a ``FusionPass`` whose
            ``reports`` / ``report`` then say what was fused in each compiled graph. A graph
            served by Inductor's FX graph cache is not passed through the pass again (it was
            fused when compiled), so it adds no report; ``options={"fx_graph_cache": False}``
            forces a fresh compilation.
        torch_compile_kwargs: passed to torch.compile (backend must be "inductor").

    Returns the compiled model; ``.fusion_pass`` is the installed pass (None without fusion).
    """
    fusion_pass = fusion_pass_of(fuse)
    kwargs = dict(torch_compile_kwargs)
    if fusion_pass is not None:
        if kwargs.get("backend", "inductor") != "inductor":
            raise ValueError(f"fuse needs the inductor backend, got backend={kwargs['backend']!r}")
        options = dict(kwargs.pop("options", None) or {})
        if options.get("post_grad_custom_post_pass") is not None:
            raise ValueError("options already set post_grad_custom_post_pass; give fuse=False to keep it")
        options["post_grad_custom_post_pass"] = fusion_pass
        kwargs["options"] = options
    compiled = torch.compile(model, **kwargs)
    compiled.fusion_pass = fusion_pass
    return compiled
