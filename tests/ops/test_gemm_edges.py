"""xnor_gemm edges on every CPU path: dirty tails in the small-M (row dot) and tiled paths at
word counts that end a vector exactly, byte counters at their limit, several K blocks, several
N blocks, odd thread counts, non-contiguous and empty inputs."""

import functools
import random

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import noncontiguous, random_bits
from tests.ops.edge_helpers import complement_rows, dirty_tail, num_threads

pytestmark = pytest.mark.usefixtures("cpu_isa")


def tail_k(rng):
    """A k with a partial last word whose word count ends an AVX-512 (16 words), AVX2 (8) or
    64-bit (2) step exactly, or is odd, or a single word."""
    words = rng.choice([1, 2, 8, 16, 32, rng.randint(1, 40) * 2, 2 * rng.randint(1, 40) + 1])
    return 32 * words - rng.randint(1, 31)


@pytest.mark.parametrize("seed", range(12))
def test_xnor_gemm_dirty_tails_every_path(seed, rng):
    k = tail_k(rng)
    m = rng.choice([1, 2, 3, rng.randint(4, 20)])  # row dot products (M <= 3) and tiles
    n = rng.randint(1, 40)
    a, b = random_bits(m, k=k, seed=seed), random_bits(n, k=k, seed=seed + 1)
    want = R.xnor_gemm(a, b, k)
    got = bk.xnor_gemm(dirty_tail(a, k, seed + 2), dirty_tail(b, k, seed + 3), k)
    assert torch.equal(got, want), (m, n, k)


@pytest.mark.parametrize("seed", range(3))
def test_xnor_gemm_equal_and_opposite_rows_long_k(seed, rng):
    """Rows equal to or the complement of each other: every popcount step counts all 64 bits, so
    the byte counters of the lookup popcount reach their limit (31 steps of 8 per byte), in the
    row dot products (M <= 3, k past 8 * 32 words) and in the tiles (k past 32 64-bit words)."""
    k = 8192 + rng.randint(100, 4000)
    for m in (rng.randint(1, 3), rng.randint(4, 12)):
        a = random_bits(m, k=k, seed=seed)
        b = torch.cat([a, complement_rows(a, k), random_bits(rng.randint(1, 12), k=k, seed=seed + 1)])
        got = bk.xnor_gemm(dirty_tail(a, k, seed), dirty_tail(b, k, seed + 5), k)
        assert torch.equal(got, R.xnor_gemm(a, b, k)), (m, k)
        assert (got[:, :m].diagonal() == k).all() and (got[:, m : 2 * m].diagonal() == -k).all()


@functools.lru_cache(maxsize=None)
def long_case(kind, seed):
    """Inputs and reference result of a long-K case, the same on every CPU path (the reference
    of these sizes costs more than the kernels)."""
    rng = random.Random(f"{kind}-{seed}")
    if kind == "k_blocks":  # beyond one K block (256 64-bit words): 2-4 blocks
        k = rng.choice([16384 + rng.randint(1, 16383), rng.randint(32769, 60000)])
        m, n = rng.randint(4, 13), rng.randint(1, 40)
    else:  # full K blocks and enough B rows for several L2 blocks of B tiles, the last partial
        k = 16384 + rng.randint(1, 2000)
        m, n = rng.randint(4, 11), rng.randint(130, 260)
    a, b = random_bits(m, k=k, seed=seed), random_bits(n, k=k, seed=seed + 1)
    b[0] = complement_rows(a[:1], k)[0]
    return a, b, k, R.xnor_gemm(a, b, k)


@pytest.mark.parametrize("kind", ["k_blocks", "n_blocks"])
@pytest.mark.parametrize("seed", range(2))
def test_xnor_gemm_several_k_and_n_blocks(kind, seed, rng):
    """Counts summed over K blocks with the epilogue on the last; B in several L2 blocks."""
    a, b, k, want = long_case(kind, seed)
    with num_threads(rng.choice([1, 2, 3])):
        got = bk.xnor_gemm(dirty_tail(a, k, seed), b, k)
    assert torch.equal(got, want), (a.shape, b.shape, k)


@pytest.mark.parametrize("seed", range(4))
def test_xnor_gemm_tile_edges_threaded(seed, rng):
    """M and N one off a multiple of every tile size, with 1-3 threads."""
    m = rng.choice([4, 5, 7, 8, 9, 15, 16, 17, 31, 33]) + 8 * rng.randint(0, 3)
    n = rng.choice([9, 10, 11, 15, 16, 17, 19, 20, 21, 33]) + 16 * rng.randint(0, 6)
    k = rng.randint(1, 4000)
    a, b = random_bits(m, k=k, seed=seed), random_bits(n, k=k, seed=seed + 1)
    with num_threads(rng.choice([1, 2, 3])):
        got = bk.xnor_gemm(a, b, k)
    assert torch.equal(got, R.xnor_gemm(a, b, k)), (m, n, k)


def test_xnor_gemm_noncontiguous_and_empty_every_path(rng):
    k = rng.randint(33, 200)
    for m in (2, rng.randint(4, 30)):
        a, b = random_bits(m, k=k, seed=m), random_bits(rng.randint(1, 30), k=k, seed=m + 1)
        want = R.xnor_gemm(a, b, k)
        assert torch.equal(bk.xnor_gemm(noncontiguous(a), noncontiguous(b), k), want)
        assert torch.equal(bk.xnor_gemm(a.T.contiguous().T, b, k), want)
    assert bk.xnor_gemm(a[:0], b, k).shape == (0, b.shape[0])
    assert bk.xnor_gemm(a, b[:0], k).shape == (a.shape[0], 0)
