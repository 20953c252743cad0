"""Export a converted model as one AOTInductor package (.pt2) that runs without its source code.

``export(model, example_inputs, path)`` runs ``torch.export`` (batch size dynamic) and
AOTInductor (``torch._inductor.aoti_compile_and_package``): the package holds the compiled
graph, the packed weights and calls to ``torch.ops.bnn_kernels.*``. AOTInductor calls custom
ops that have no C shim through its proxy executor, which looks them up in the dispatcher at
run time, so whoever runs the package must have loaded the op library first:

- Python: ``load_exported(path)`` (importing bnn_kernels loads it);
- C++: load ``libbnn_kernels_ops.so`` (dlopen, or link it), then
  ``torch::inductor::AOTIModelPackageLoader`` (examples/cpp/).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
from torch import nn

from . import _native
from ._version import __version__


class ExportError(RuntimeError):
    """A model that torch.export or AOTInductor cannot handle; the message names the module."""


class _ModuleTracker:
    """Records which submodules are running (global forward hooks), so that an error raised
    while torch.export traces the model (non-strict mode runs the Python forward) can name
    the innermost module it came from."""

    def __init__(self, model: nn.Module):
        self.names = {id(m): name for name, m in model.named_modules()}
        self.stack: list[str] = []
        self.handles: list[Any] = []

    def __enter__(self):
        def push(module, args):
            if id(module) in self.names:
                name = self.names[id(module)]
                self.stack.append(f"module '{name}' ({type(module).__name__})" if name else "the model's own forward")

        def pop(module, args, out):
            if id(module) in self.names and self.stack:
                self.stack.pop()

        self.handles = [
            nn.modules.module.register_module_forward_pre_hook(push),
            nn.modules.module.register_module_forward_hook(pop),
        ]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False

    def where(self) -> str:
        return self.stack[-1] if self.stack else "the model (outside any module's forward)"


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _check_inputs(example_inputs) -> tuple[torch.Tensor, ...]:
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)) or not example_inputs:
        raise TypeError(f"example_inputs must be a non-empty tuple of tensors, got {type(example_inputs).__name__}")
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"example_inputs[{i}] must be a tensor, got {type(t).__name__}")
        if t.dim() == 0:
            raise ValueError(f"example_inputs[{i}] has no batch dimension (a 0-d tensor)")
    batches = {t.shape[0] for t in example_inputs}
    if len(batches) != 1:
        raise ValueError(f"example_inputs must share their batch size (dim 0), got sizes {sorted(batches)}")
    devices = {t.device for t in example_inputs}
    if len(devices) != 1:
        raise ValueError(f"example_inputs must be on one device, got {sorted(map(str, devices))}")
    if batches.pop() < 2:  # torch.export specializes sizes 0 and 1: trace with a batch of 2
        example_inputs = tuple(torch.cat([t[:1]] * 2) if t.shape[0] == 1 else t for t in example_inputs)
        if any(t.shape[0] == 0 for t in example_inputs):
            raise ValueError("example_inputs have an empty batch: give at least one example")
    return tuple(example_inputs)


def _trace(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1)
    dynamic_shapes = tuple({0: batch} for _ in inputs)
    with _ModuleTracker(model) as tracker:
        try:
            return torch.export.export(model, inputs, dynamic_shapes=dynamic_shapes, strict=False)
        except Exception as e:  # noqa: BLE001 - re-raised with the module that failed
            raise ExportError(
                f"torch.export could not trace {tracker.where()} of {type(model).__name__} with a "
                f"dynamic batch size (dim 0 of every input): {_first_line(e)} (the full error is chained below)"
            ) from e


def export(
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor] | torch.Tensor,
    path: str | os.PathLike,
    *,
    inductor_configs: dict[str, Any] | None = None,
    fuse: bool | Any = True,
) -> str:
    """Writes ``model`` (usually from ``bnn_kernels.convert``) as one AOTInductor package.

    Args:
        model: the module to export; traced in eval mode (its mode is restored afterwards).
        example_inputs: a tensor or a tuple of tensors, batch first; the batch size of the
            package is dynamic (any size >= 1), every other size is fixed to these examples.
            The package is compiled for their device (CPU, or CUDA with a CUDA build).
        path: the ``.pt2`` file to write.
        inductor_configs: extra ``torch._inductor`` options for the compilation.
        fuse: True (default): the float steps after each binary_conv2d / xnor_gemm call move
            into the op's fused epilogue where that is bit-identical (``bnn_kernels.fusion``,
            run as AOTInductor's post-grad pass); False keeps the graph as traced; a
            ``FusionPass`` fuses and keeps the report (``.report``).

    Returns the path written. Raises ExportError, naming the module, when the model cannot be
    traced or compiled; TypeError / ValueError for bad arguments.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = os.fspath(path)
    if not path.endswith(".pt2"):
        raise ValueError(f"path must end with .pt2, got {path!r}")
    inputs = _check_inputs(example_inputs)
    _native.ops()  # the ops must be registered before tracing (an ImportError says why not)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            program = _trace(model, inputs)
    finally:
        model.train(was_training)
    configs = {"aot_inductor.metadata": {"bnn_kernels_version": __version__}}
    configs.update(inductor_configs or {})
    from .compile_fused import fusion_pass_of  # imports torch._inductor, used below anyway

    fusion_pass = fusion_pass_of(fuse)
    if fusion_pass is not None:
        configs["post_grad_custom_post_pass"] = fusion_pass
    try:
        return torch._inductor.aoti_compile_and_package(program, package_path=path, inductor_configs=configs)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ExportError(
            f"AOTInductor could not compile {type(model).__name__} (torch.export traced it): "
            f"{_first_line(e)} (the full error is chained below)"
        ) from e


def load_exported(path: str | os.PathLike):
    """Loads a package written by ``export``; returns a callable taking the same inputs as the
    model's forward (any batch size) and returning its outputs. Needs no model source code."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path {path!r} is not a file (a .pt2 package written by bnn_kernels.export)")
    _native.ops()  # the package calls torch.ops.bnn_kernels.*: they must be registered
    return torch._inductor.aoti_load_package(path)
