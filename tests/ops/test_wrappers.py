"""The Python op wrappers' own plumbing (bnn_kernels/ops): documented defaults, and each
argument reaching the op under its own name, checked against bnn_kernels.reference on random
shapes."""

import random

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import random_bits


@pytest.mark.parametrize("seed", range(3))
def test_unpack_bits_default_dtype_is_float32(seed):
    rng = random.Random(seed)
    k = rng.randint(1, 200)
    bits = random_bits(rng.randint(1, 5), k=k, seed=seed)
    y = bk.unpack_bits(bits, k)
    assert y.dtype == torch.float32
    assert torch.equal(y, R.unpack_bits(bits, k))
