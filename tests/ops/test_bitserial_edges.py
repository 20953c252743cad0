"""bitserial_gemm edges on every CPU path: dirty tails in every plane, more rows than one
chunk of the epilogue, offsets and coefficients on every plane, and the int32 overflow check
at its exact bound (offsets included, reduce=False bounded by the weights alone)."""

import functools
import random

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import gen
from tests.ops.edge_helpers import dirty_tail, num_threads

pytestmark = pytest.mark.usefixtures("cpu_isa")

LIMIT = 2**31 - 1


def planes(p, rows, k, seed):
    bits = torch.randint(0, 2, (p, rows, k), generator=gen(seed))
    return torch.stack([R._pack01(bits[i]) for i in range(p)])


def coefs(rng, n):
    return [rng.choice([-1, 1]) * rng.randint(1, 9) for _ in range(n)]


@pytest.mark.parametrize("seed", range(12))
def test_bitserial_dirty_tails_offsets_every_plane(seed, rng):
    p, q = rng.randint(1, 4), rng.randint(1, 4)
    m = rng.choice([1, 2, 3, rng.randint(4, 40)])
    n = rng.randint(1, 40)
    k = rng.choice([rng.randint(1, 31), 32 * rng.randint(1, 20) + rng.randint(1, 31), rng.randint(1, 900)])
    a, w = planes(p, m, k, seed), planes(q, n, k, seed + 1)
    ac, wc = coefs(rng, p), coefs(rng, q)
    ao, wo = rng.choice([-1, 1]) * rng.randint(1, 5), rng.choice([-1, 1]) * rng.randint(1, 5)
    da, dw = dirty_tail(a, k, seed + 2), dirty_tail(w, k, seed + 3)
    for reduce in (True, False):
        want = R.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce)
        got = bk.bitserial_gemm(da, dw, k, ac, wc, ao, wo, reduce=reduce)
        assert torch.equal(got, want), (p, q, m, n, k, ac, wc, ao, wo, reduce)


@functools.lru_cache(maxsize=None)
def many_rows_case(seed):
    """More rows of A than one epilogue chunk (4 Mi products / (Q * N) rows): the same inputs
    and reference on every CPU path."""
    rng = random.Random(f"many-rows-{seed}")
    p, q = 2, 2
    n = rng.randint(2100, 2400)
    m = rng.randint(1000, 1300)
    k = rng.randint(33, 90)
    a, w = planes(p, m, k, seed), planes(q, n, k, seed + 1)
    ac, wc, ao, wo = [1, -2], [3, -1], rng.randint(1, 3), -rng.randint(1, 3)
    want = {r: R.bitserial_gemm(a, w, k, ac, wc, ao, wo, r) for r in (True, False)}
    return a, w, k, ac, wc, ao, wo, want


@pytest.mark.parametrize("seed", range(1))
def test_bitserial_more_rows_than_a_chunk(seed, rng):
    a, w, k, ac, wc, ao, wo, want = many_rows_case(seed)
    with num_threads(rng.choice([1, 2, 3])):
        for reduce in (True, False):
            assert torch.equal(bk.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce=reduce), want[reduce]), reduce


def test_bitserial_overflow_bound_is_exact(rng):
    """k * max|a| * max|w| <= 2^31 - 1 runs (and is exact), one more raises; offsets count."""
    k = 1
    a = planes(1, 3, k, 1)
    w = planes(1, 4, k, 2)
    ok = bk.bitserial_gemm(a, w, k, [1], [LIMIT])
    assert torch.equal(ok, R.bitserial_gemm(a, w, k, [1], [LIMIT]))
    with pytest.raises(ValueError, match="overflow"):
        bk.bitserial_gemm(a, w, k, [1], [LIMIT - 1], 0, 2)  # w_offset pushes max|w| past the bound
    with pytest.raises(ValueError, match="overflow"):
        bk.bitserial_gemm(a, w, k, [1], [LIMIT], 1, 0)  # so does a_offset
    k = rng.randint(64, 200)
    a, w = planes(2, 5, k, 3), planes(1, 6, k, 4)
    big = LIMIT // k // 3  # k * (1 + 2) * big fits
    assert torch.equal(bk.bitserial_gemm(a, w, k, [1, 2], [big]), R.bitserial_gemm(a, w, k, [1, 2], [big]))
    with pytest.raises(ValueError, match="overflow"):
        bk.bitserial_gemm(a, w, k, [1, 2], [big], 1, 0)
    with pytest.raises(ValueError, match="overflow"):
        bk.bitserial_gemm(a, w, k, [1, 2], [big], 0, big)


def test_bitserial_unreduced_bound_ignores_activation_coefficients(rng):
    """reduce=False returns {0,1} plane products: large a_coefs / a_offset cannot overflow it."""
    k = rng.randint(100, 300)
    a, w = planes(2, 7, k, 5), planes(2, 9, k, 6)
    wc = [LIMIT // k // 4, -(LIMIT // k // 4)]
    ac = [2**20, -(2**21)]
    got = bk.bitserial_gemm(a, w, k, ac, wc, 2**20, 1, reduce=False)
    assert torch.equal(got, R.bitserial_gemm(a, w, k, ac, wc, 2**20, 1, False))
    with pytest.raises(ValueError, match="overflow"):
        bk.bitserial_gemm(a, w, k, ac, wc, 2**20, 1, reduce=True)


def test_bitserial_empty_every_path():
    a, w = planes(2, 3, 40, 7), planes(1, 4, 40, 8)
    assert bk.bitserial_gemm(a[:, :0], w, 40, [1, 2], [1]).shape == (0, 4)
    assert bk.bitserial_gemm(a, w[:, :0], 40, [1, 2], [1]).shape == (3, 0)
    assert bk.bitserial_gemm(a[:, :0], w, 40, [1, 2], [1], reduce=False).shape == (2, 0, 4)
