"""bitserial_gemm on the CPU across the fused driver's boundaries, exactly against the reference.

The driver runs the popcount micro-kernel on every (activation plane, weight plane) pair of
an (A tile, B tile) pair and sums the counts with their coefficients in a stack tile (on
AVX-512 and AVX2 in one plane-sum call for up to 16 pairs, in registers), summed over K blocks into
the output. Its boundaries: the row-dot path (M <= 3) against the tiled
one, the tile edges (MR x NR: 8 x 16 AVX-512, 4 x 10 AVX2, 4 x 4 scalar), K blocks of 256
64-bit words (16384 bits), B blocks (256 KiB of B tiles, all weight planes), one thread
against several, plane pairs skipped for a zero coefficient, and partial sums up to the
int32 bound. Every case runs under each CPU ISA (cpu_isa), with dirty tail bits, reduce
True and False.
"""

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import clean_tail, gen, random_bits

pytestmark = pytest.mark.usefixtures("cpu_isa")

K_BLOCK_BITS = 256 * 64
TILE_EDGES = sorted({e + d for e in (4, 8, 10, 16, 20, 32) for d in (-1, 0, 1)})


def check(p, q, m, n, k, ac, wc, ao, wo, seed, threads=None):
    g = gen(seed)
    a = random_bits(p, m, k=k, dirty=True, gen=g)
    w = random_bits(q, n, k=k, dirty=True, gen=g)
    ca, cw = clean_tail(a, k), clean_tail(w, k)
    old = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        for reduce in (True, False):
            got = bk.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce)
            want = R.bitserial_gemm(ca, cw, k, ac, wc, ao, wo, reduce)
            assert torch.equal(got, want), (p, q, m, n, k, ac, wc, ao, wo, reduce, threads)
    finally:
        torch.set_num_threads(old)


def coefs(rng, n, lo=-6, hi=6):
    return [rng.randint(lo, hi) for _ in range(n)]


@pytest.mark.parametrize("seed", range(24))
def test_tile_edges(seed, rng):
    """M and N at and around every kernel's tile edges, K around the 64-bit word edges."""
    p, q = rng.randint(1, 4), rng.randint(1, 3)
    m, n = rng.choice(TILE_EDGES + [1, 2, 3]), rng.choice(TILE_EDGES + [1, 2])
    k = rng.choice([1, 31, 32, 33, 63, 64, 65, 127, 128, 129, rng.randint(1, 700)])
    check(p, q, m, n, k, coefs(rng, p), coefs(rng, q), rng.randint(-3, 3), rng.randint(-3, 3), seed)


@pytest.mark.parametrize("k", [K_BLOCK_BITS, K_BLOCK_BITS + 1, 2 * K_BLOCK_BITS + 77])
def test_k_blocks(k):
    """One, two and three K blocks: counts summed over blocks, terms added with the last."""
    check(2, 2, 19, 23, k, [1, -2], [3, -1], 2, -1, k)


@pytest.mark.parametrize("q", [1, 2, 3])
def test_b_blocks(q, rng):
    """N over several B blocks (a block holds the tiles of all q weight planes)."""
    check(2, q, 13, 150, K_BLOCK_BITS - 40, [1, 2], coefs(rng, q), 1, -1, 100 + q)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("m", [2, 37])
def test_threads(threads, m, rng):
    """The row-dot and tiled paths, large enough to be split over threads, equal on any count."""
    p, q = rng.randint(1, 4), rng.randint(1, 3)
    check(p, q, m, 301, 4000, coefs(rng, p), coefs(rng, q), rng.randint(-3, 3), rng.randint(-3, 3), m, threads)


@pytest.mark.parametrize("m", [3, 12])
def test_zero_coefficients(m):
    """Pairs with a zero coefficient are skipped; all-zero weight coefficients leave the terms."""
    check(3, 2, m, 21, 200, [0, 2, 0], [1, 0], 2, 1, m)
    check(2, 2, m, 21, 200, [1, 2], [0, 0], -3, 2, m + 1)
    check(1, 1, m, 21, 200, [0], [0], 0, 0, m + 2)


@pytest.mark.parametrize("p,q", [(4, 4), (17, 1), (5, 4), (3, 11), (8, 8)])
def test_many_plane_pairs(p, q, rng):
    """The plane-sum kernels sum up to 16 plane pairs per call: 16, 17, 20, 33 and 64 pairs take
    one to four calls summing into the same tile, with zero coefficients (skipped pairs)
    shifting the call boundaries; every plane's coefficient is distinct, so a pair counted
    twice, dropped, or with another pair's coefficient changes the result."""
    ac = [rng.choice([-1, 1]) * (2 * i + 1) for i in range(p)]
    wc = [rng.choice([-1, 1]) * (i + 1) for i in range(q)]
    m, n, k = rng.choice([9, 17, 33]), rng.choice([15, 17, 40]), rng.choice([70, 200, 450])
    check(p, q, m, n, k, ac, wc, rng.randint(-3, 3), rng.randint(-3, 3), p * 100 + q)
    zeroed = [0 if i % 3 == 1 else c for i, c in enumerate(ac)]
    check(p, q, m, n, k, zeroed, wc, rng.randint(-3, 3), rng.randint(-3, 3), p * 100 + q + 1)


@pytest.mark.parametrize("seed", range(8))
def test_int32_bound(seed, rng):
    """Coefficients (two's complement tops, offsets) as large as the int32 check allows."""
    p, q = rng.randint(1, 4), rng.randint(1, 3)
    k = rng.choice([33, 300, 1000])
    ac = [rng.choice([-1, 1]) * rng.randint(1, 2**12) for _ in range(p)]
    ao = rng.randint(-(2**10), 2**10)
    amax = sum(map(abs, ac)) + abs(ao)
    wmax = (2**31 - 1) // (k * amax)
    w_abs = [rng.randint(0, max(0, wmax // (q + 1))) for _ in range(q)]
    wc = [rng.choice([-1, 1]) * c for c in w_abs]
    wo = rng.choice([-1, 1]) * (wmax - sum(w_abs))  # k * max|a| * max|w| at the limit
    check(p, q, rng.choice([2, 9, 17]), rng.choice([5, 16, 33]), k, ac, wc, ao, wo, seed)
