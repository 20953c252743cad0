"""Which CUDA GEMM kernel xnor_gemm, binary_conv2d and bitserial_gemm use.

The CUDA binding reads ``BNN_KERNELS_CUDA_GEMM_PATH`` at every call; these helpers set it from
Python, validated, so a program (or a test) can opt in to a path without touching its shell:

    import bnn_kernels
    with bnn_kernels.cuda_gemm_path("wgmma"):   # the sm_90a kernel, opt-in
        y = bnn_kernels.xnor_gemm(a, b, k)

Paths: ``auto`` (the heuristic: mma.sync, popc or gemv by shape and loaded code), ``mma``
(binary tensor cores, mma.sync m16n8k256, sm_80+), ``popc`` (CUDA cores, tiled), ``gemv``
(CUDA cores, few rows), ``wgmma`` (Hopper warpgroup tensor cores with TMA, sm_90a only; where
the device, the loaded code or the operands' alignment rule it out, mma.sync runs instead).
``auto`` never picks ``wgmma`` until it has been measured on a GPU. The CPU kernels ignore the
setting. It is process-wide (an environment variable), not per thread.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

ENV = "BNN_KERNELS_CUDA_GEMM_PATH"
CUDA_GEMM_PATHS = ("auto", "mma", "popc", "gemv", "wgmma")

__all__ = ["CUDA_GEMM_PATHS", "cuda_gemm_path", "get_cuda_gemm_path", "set_cuda_gemm_path"]


def _check(path: str | None) -> str:
    if path is None:
        return "auto"
    if not isinstance(path, str) or path not in CUDA_GEMM_PATHS:
        raise ValueError(f"cuda gemm path must be one of {', '.join(CUDA_GEMM_PATHS)} (or None), got {path!r}")
    return path


def get_cuda_gemm_path() -> str:
    """The CUDA GEMM path in effect (``auto`` when unset)."""
    return os.environ.get(ENV) or "auto"


def set_cuda_gemm_path(path: str | None) -> None:
    """Sets the CUDA GEMM path for later calls (None or ``auto``: the heuristic).

    Raises ValueError for a name not in ``CUDA_GEMM_PATHS``.
    """
    path = _check(path)
    if path == "auto":
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = path


@contextlib.contextmanager
def cuda_gemm_path(path: str | None) -> Iterator[str]:
    """Runs a block with the CUDA GEMM path set to ``path``; restores the previous setting
    (also on error). Raises ValueError before the block for an unknown name."""
    path = _check(path)
    before = os.environ.get(ENV)
    set_cuda_gemm_path(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
