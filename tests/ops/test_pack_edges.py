"""pack_bits / unpack_bits / to_bitplanes edges on every CPU path: NaN, infinities and values
equal to their threshold at random positions of whole words and tails, per-channel thresholds
over many words, inputs large enough for the threaded loops, dirty tails on unpack."""

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import gen, noncontiguous, randn
from tests.ops.edge_helpers import dirty_tail, num_threads

pytestmark = pytest.mark.usefixtures("cpu_isa")


def special_values(x, thr, seed):
    """x with NaN, +-inf, +-0 and values equal to their threshold sprinkled over it."""
    g = gen(seed)
    x = x.clone()
    thr_full = thr.expand_as(x) if isinstance(thr, torch.Tensor) else torch.full_like(x, thr)
    for value, frac in ((float("nan"), 0.1), (float("inf"), 0.03), (-float("inf"), 0.03), (0.0, 0.05), (-0.0, 0.05)):
        x[torch.rand(x.shape, generator=g) < frac] = value
    eq = torch.rand(x.shape, generator=g) < 0.15
    x[eq] = thr_full.to(x.dtype)[eq]
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seed", range(6))
def test_pack_bits_special_values_and_thresholds(seed, dtype, rng):
    k = rng.choice(
        [rng.randint(1, 31), 32 * rng.randint(1, 6) + rng.randint(1, 31), 32 * rng.randint(1, 6), rng.randint(1, 400)]
    )
    rows = rng.randint(1, 9)
    if rng.random() < 0.5:
        thr = randn(k, seed=seed + 1).to(dtype)
    else:
        thr = rng.choice([0.0, 0.5, -1.25])
    x = special_values(randn(rows, k, seed=seed).to(dtype), thr, seed + 2)
    got = bk.pack_bits(x, thr)
    assert torch.equal(got, R.pack_bits(x, thr)), (k, rows, thr if isinstance(thr, float) else "per-channel")
    assert torch.equal(bk.unpack_bits(got, k), R.binarize(x, thr).float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16])
def test_pack_bits_large_threaded(dtype, rng):
    """More than 2^20 elements: the threaded loops, with rows split over 3 threads."""
    k = rng.randint(300, 700)
    rows = (1 << 20) // k + rng.randint(1, 500)
    x = (randn(rows, k, seed=1) * 4).to(dtype)
    thr = (randn(k, seed=2) * 2).to(dtype) if dtype.is_floating_point else torch.randint(-3, 4, (k,), generator=gen(3))
    with num_threads(3):
        assert torch.equal(bk.pack_bits(x, thr), R.pack_bits(x, thr))
        assert torch.equal(bk.pack_bits(x, 0.5), R.pack_bits(x, 0.5))


@pytest.mark.parametrize("seed", range(3))
def test_unpack_bits_dirty_tails(seed, rng):
    k = rng.choice([rng.randint(1, 31), 32 * rng.randint(1, 8) + rng.randint(1, 31)])
    bits = R.pack_bits(randn(rng.randint(1, 6), rng.randint(1, 4), k, seed=seed))
    dirty = dirty_tail(bits, k, seed)
    for dtype in (torch.float32, torch.int8, torch.float16, torch.int64):
        assert torch.equal(bk.unpack_bits(dirty, k, dtype), R.unpack_bits(bits, k, dtype))
    assert torch.equal(bk.unpack_bits(noncontiguous(dirty), k), R.unpack_bits(bits, k))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("signed", [False, True])
def test_to_bitplanes_every_value_and_threaded(seed, signed, rng):
    nbits = rng.choice([1, 2, 3, 4, 8, 16])
    lo, hi = (-(2 ** (nbits - 1)), 2 ** (nbits - 1) - 1) if signed else (0, 2**nbits - 1)
    k = rng.choice([rng.randint(1, 31), 32 * rng.randint(1, 4), 32 * rng.randint(1, 4) + rng.randint(1, 31)])
    rows = rng.choice([rng.randint(1, 20), (1 << 20) // k + rng.randint(1, 50)])
    q = torch.randint(lo, hi + 1, (rows, k), generator=gen(seed))
    q[0, :: max(1, k // 3)] = hi
    q[-1, :: max(1, k // 4)] = lo
    with num_threads(rng.choice([1, 3])):
        assert torch.equal(bk.to_bitplanes(q, nbits, signed), R.to_bitplanes(q, nbits, signed))
    for bad in (hi + 1, lo - 1):
        q2 = q[:2].clone()
        q2[-1, -1] = bad
        with pytest.raises(ValueError, match="outside"):
            bk.to_bitplanes(q2, nbits, signed)
