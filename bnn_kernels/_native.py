"""Loads the compiled extension (bnn_kernels._C) that registers torch.ops.bnn_kernels.*.

The ops themselves live in libbnn_kernels_ops.so beside this file (no Python in it, so C++
programs load the same file: see op_library_path); _C links it, so importing _C loads it.

A missing or broken build does not break `import bnn_kernels` (the reference stays usable);
the first call of a native op raises an ImportError that says how to build it.
"""

from __future__ import annotations

import os

import torch

try:
    from . import _C

    LOAD_ERROR: Exception | None = None
except ImportError as e:  # pragma: no cover - exercised only on broken installs
    _C = None
    LOAD_ERROR = e


def available() -> bool:
    """True when the compiled ops are loaded."""
    return LOAD_ERROR is None


def ops():
    """torch.ops.bnn_kernels, or an ImportError explaining why it is not there."""
    if LOAD_ERROR is not None:
        raise ImportError(
            "bnn_kernels' compiled extension (bnn_kernels._C) could not be loaded: "
            f"{LOAD_ERROR}. Build it with `pip install --no-build-isolation -e .` in an "
            "environment that has torch installed (see README.md, Quickstart)."
        )
    return torch.ops.bnn_kernels


def cuda_built() -> bool:
    """True when the CUDA kernels were compiled in (whether or not a GPU is present)."""
    return bool(_C is not None and _C.WITH_CUDA)


def cpu_gemm_isa() -> str:
    """The CPU GEMM micro-kernel that calls use now: 'avx512-vpopcntdq', 'avx2',
    'scalar-popcnt' or 'scalar'.

    It is the best one the CPU supports, capped by the environment variable
    ``BNN_KERNELS_CPU_ISA=avx512|avx2|scalar`` (read at every call, so tests and benchmarks
    can force each path; unset means no cap). In C++ the same answer is
    ``bnn::cpu::gemm_isa()``, the cap ``bnn::cpu_isa_cap()``.
    """
    return _C.cpu_gemm_isa() if _C is not None else "unavailable"


def cpu_conv_path() -> str:
    """The CPU kernel binary_conv2d runs now (for groups = 1): a direct kernel
    ('direct-avx512', 'direct-avx2' or 'direct-scalar': output channels along the vector
    lanes, no im2col), or the name of the GEMM micro-kernel (see cpu_gemm_isa) when it runs
    the implicit GEMM.

    By default the direct kernel runs where the GEMM would run its AVX-512 or AVX2 kernel and
    each group's channels start at a whole 32-bit word (groups = 1, or channels per group a
    multiple of 32); the implicit GEMM runs otherwise, and on the scalar path.
    ``BNN_KERNELS_CONV_PATH=gemm`` or ``=direct`` forces one (read at every call, like
    ``BNN_KERNELS_CPU_ISA``; direct still needs groups that start at whole words).
    """
    return _C.cpu_conv_path() if _C is not None else "unavailable"


def op_library_path() -> str:
    """Path of libbnn_kernels_ops.so, the op registrations without Python: what a libtorch C++
    program loads (dlopen, or link) before running a package written by bnn_kernels.export."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libbnn_kernels_ops.so")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: build bnn_kernels first (see README.md, Quickstart)")
    return path
