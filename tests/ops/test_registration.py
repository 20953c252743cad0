"""Every op is declared once and has a kernel for CPU and for CUDA in every build: the real
CUDA kernel, or (CPU-only builds) one that raises a clear 'built without CUDA' error."""

import pytest
import torch

import bnn_kernels as bk

OPS = bk.ops.__all__


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("key", ["CPU", "CUDA", "Meta"])
def test_op_has_kernel(name, key):
    assert hasattr(torch.ops.bnn_kernels, name)
    # Meta is installed by register_fake (what torch.compile / torch.export trace with)
    has = torch._C._dispatch_has_kernel_for_dispatch_key(f"bnn_kernels::{name}", key)
    assert has, f"bnn_kernels::{name} has no {key} kernel"


def test_build_flags_are_consistent():
    assert isinstance(bk.cuda_built(), bool)
    assert bk.cpu_gemm_isa() in ("avx512-vpopcntdq", "avx2", "scalar-popcnt", "scalar")
