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


def pm1(*shape, generator=None, dtype=torch.float32):
    """Random +-1 values (never zeros)."""
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(dtype)


def seeded(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g
