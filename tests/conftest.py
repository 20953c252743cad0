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


@pytest.fixture(params=["auto", "scalar"])
def cpu_isa(request, monkeypatch):
    """Runs a test with the run-time-dispatched CPU kernels and with the scalar ones forced."""
    if request.param == "scalar":
        monkeypatch.setenv("BNN_KERNELS_CPU_ISA", "scalar")
    else:
        monkeypatch.delenv("BNN_KERNELS_CPU_ISA", raising=False)
    return request.param
