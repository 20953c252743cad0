import random

import pytest
import torch

import bnn_kernels


def pytest_collection_modifyitems(config, items):
    has_gpu = torch.cuda.is_available() and bnn_kernels.cuda_built()
    skip = pytest.mark.skip(reason="needs a CUDA GPU and bnn_kernels built with CUDA")
    for item in items:
        if "cuda" in item.keywords and not has_gpu:
            item.add_marker(skip)


@pytest.fixture
def rng(request):
    """A random.Random seeded from the test id, so every failure reproduces."""
    return random.Random(request.node.nodeid)


@pytest.fixture(params=["auto", "avx2", "scalar"])
def cpu_isa(request, monkeypatch):
    """Runs a test with the best CPU kernels, then with the choice capped at AVX2 and at scalar
    (a path the CPU lacks falls back to the next one down)."""
    if request.param == "auto":
        monkeypatch.delenv("BNN_KERNELS_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("BNN_KERNELS_CPU_ISA", request.param)
    return request.param
