"""binary_weight_linear edges on every CPU path, exact: activations are small integers and
scales powers of two, so every sum, product and bias add is exact in float32 and the result
must equal the reference bit for bit. Shapes hit the partial row and weight tiles, K tails of
the 8- and 16-wide steps, dirty weight tails, and odd thread counts."""

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import gen, noncontiguous, random_bits
from tests.ops.edge_helpers import dirty_tail, num_threads

pytestmark = pytest.mark.usefixtures("cpu_isa")


def exact_case(rng, seed, dtype):
    k = rng.choice(
        [
            rng.randint(1, 15),
            16 * rng.randint(1, 8) + rng.randint(1, 15),
            8 * rng.randint(1, 30) + 4,
            32 * rng.randint(1, 10),
            rng.randint(1, 700),
        ]
    )
    lead = rng.choice([(rng.randint(1, 13),), (rng.randint(1, 3), rng.randint(1, 6))])
    n = rng.choice([1, 2, 3, 5, 6, 7, rng.randint(1, 45)])
    g = gen(seed)
    x = torch.randint(-8, 9, (*lead, k), generator=g).to(dtype)
    w = random_bits(n, k=k, seed=seed)
    scale = (2.0 ** torch.randint(-3, 4, (n,), generator=g)) * (torch.randint(0, 2, (n,), generator=g) * 2 - 1)
    bias = torch.randint(-50, 51, (n,), generator=g) / 4
    return x, w, k, scale.to(dtype), bias.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(10))
def test_binary_weight_linear_exact_tiles_tails_epilogue(seed, dtype, rng):
    x, w, k, scale, bias = exact_case(rng, seed, dtype)
    dw = dirty_tail(w, k, seed + 1)
    with num_threads(rng.choice([1, 2, 3])):
        for s, b in ((scale, bias), (scale, None), (None, bias), (None, None)):
            got = bk.binary_weight_linear(x, dw, k, s, b)
            want = R.binary_weight_linear(x, w, k, s, b)
            assert got.dtype == dtype and torch.equal(got, want), (tuple(x.shape), w.shape, k, s is None, b is None)


def test_binary_weight_linear_noncontiguous_exact_every_path(rng):
    x, w, k, scale, bias = exact_case(rng, 3, torch.float32)
    want = R.binary_weight_linear(x, w, k, scale, bias)
    got = bk.binary_weight_linear(noncontiguous(x), noncontiguous(w), k, noncontiguous(scale), noncontiguous(bias))
    assert torch.equal(got, want)
    assert bk.binary_weight_linear(x[..., :0, :], w, k).shape == (*x.shape[:-2], 0, w.shape[0])
