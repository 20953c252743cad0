"""bitserial_gemm's plane-sum kernels (AVX-512 and AVX2; the scalar path's axpy calls under the
same cases) against the reference, exactly, on randomized shapes.

A plane-sum call adds the weighted counts of up to 16 plane pairs of one (A tile, B tile)
pair to an int32 tile held in registers. The cases: many plane pairs under the usual
encodings (W4A4 unsigned, two's complement with a negative top coefficient, ternary, and
more than 16 pairs: several calls per tile), K with tails (not a multiple of 64 bits, of the
AVX2 kernel's 31-word byte-counter chunks or of the 256-word K block), M and N off the tiles
(4 x 10 AVX2, 8 x 16 AVX-512), dirty tail bits, offsets, reduce True and False, and dense
rows (all bits set) long enough to overflow a byte counter that is folded too late.
"""

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import clean_tail, gen, random_bits

pytestmark = pytest.mark.usefixtures("cpu_isa")

CHUNK_BITS = 31 * 64  # the AVX2 kernel folds its byte counters every 31 64-bit K steps
K_BLOCK_BITS = 256 * 64


def unsigned(n):
    return [2**i for i in range(n)]


def signed(n):
    return unsigned(n - 1) + [-(2 ** (n - 1))]


TERNARY = [1, -1]
# name: (activation coefficients, weight coefficients)
ENCODINGS = {
    "w4a4_unsigned": (unsigned(4), unsigned(4)),
    "w4a4_signed": (signed(4), signed(4)),
    "a4_unsigned_w_ternary": (unsigned(4), TERNARY),
    "ternary_ternary": (TERNARY, TERNARY),
    "w2a2_signed": (signed(2), signed(2)),
    "a3_signed_w5_unsigned": (signed(3), unsigned(5)),
    "a8_signed_w4_signed": (signed(8), signed(4)),  # 32 pairs: two calls per tile
    "a6_unsigned_w3_ternary_mix": (unsigned(6), [1, -1, 3]),  # 18 pairs
}


def random_k(rng):
    """K bits with a tail: within a word, past a few words, past a byte-counter chunk, past
    one or two K blocks."""
    return rng.choice(
        [
            rng.randint(1, 63),
            64 * rng.randint(1, 8) + rng.randint(1, 63),
            CHUNK_BITS * rng.randint(1, 3) + rng.randint(-70, 70),
            K_BLOCK_BITS + rng.randint(1, 3000),
            2 * K_BLOCK_BITS + rng.randint(-3000, -1),
        ]
    )


def random_rows(rng, tile_edges):
    """A row count off the tiles (most), on a tile edge (some)."""
    if rng.random() < 0.3:
        return rng.choice(tile_edges)
    return rng.randint(4, 70)


def check(ac, wc, ao, wo, a, w, k, label):
    ca, cw = clean_tail(a, k), clean_tail(w, k)
    for reduce in (True, False):
        got = bk.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce)
        want = R.bitserial_gemm(ca, cw, k, ac, wc, ao, wo, reduce)
        assert torch.equal(got, want), (label, tuple(a.shape), tuple(w.shape), k, ao, wo, reduce)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_plane_sum_encodings(name, seed, rng):
    """Every plane pair of an encoding summed with its coefficient, offsets on both sides,
    dirty tails, random shapes off the tiles and K with tails."""
    ac, wc = ENCODINGS[name]
    m = random_rows(rng, [4, 5, 7, 8, 9, 15, 16, 17, 33])
    n = random_rows(rng, [9, 10, 11, 15, 16, 17, 20, 21, 31])
    k = random_k(rng)
    g = gen(seed * 1000 + len(ac) * 10 + len(wc))
    a = random_bits(len(ac), m, k=k, dirty=True, gen=g)
    w = random_bits(len(wc), n, k=k, dirty=True, gen=g)
    check(ac, wc, rng.randint(-3, 3), rng.randint(-3, 3), a, w, k, name)


@pytest.mark.parametrize("seed", range(4))
def test_plane_sum_dense_rows(seed, rng):
    """Rows with every bit set in every plane, over K longer than a byte-counter chunk: each
    64-bit K step adds 8 to every byte counter of a dense row pair, so a chunk of 32 steps
    would wrap the bytes to 0. Dense and random rows mixed, so every lane of the tile and the
    scalar columns see both."""
    name = rng.choice(["w4a4_unsigned", "w4a4_signed", "a4_unsigned_w_ternary", "w2a2_signed"])
    ac, wc = ENCODINGS[name]
    m, n = rng.randint(4, 23), rng.randint(10, 33)
    k = rng.choice([CHUNK_BITS + 64 + rng.randint(1, 63), 2 * CHUNK_BITS + rng.randint(64, 200), 4096])
    g = gen(seed + 77)
    a = random_bits(len(ac), m, k=k, dirty=True, gen=g)
    w = random_bits(len(wc), n, k=k, dirty=True, gen=g)
    for bits in (a, w):
        dense = torch.rand(bits.shape[1], generator=g) < 0.6
        bits[:, dense] = -1
    check(ac, wc, rng.randint(-2, 2), rng.randint(-2, 2), a, w, k, name)


@pytest.mark.parametrize("seed", range(4))
def test_plane_sum_from_integers(seed, rng):
    """W4A4 and two's complement planes made by to_bitplanes from random integers equal the
    integer matmul (an oracle independent of the reference's decoding)."""
    m, n = rng.randint(4, 40), rng.randint(1, 40)
    k = rng.choice([rng.randint(1, 200), CHUNK_BITS + rng.randint(1, 100), rng.randint(3000, 5000)])
    g = gen(seed + 300)
    qa = torch.randint(0, 16, (m, k), generator=g)
    qw = torch.randint(-8, 8, (n, k), generator=g)
    got = bk.bitserial_gemm(bk.to_bitplanes(qa, 4), bk.to_bitplanes(qw, 4, signed=True), k, unsigned(4), signed(4))
    assert torch.equal(got, (qa @ qw.T).to(torch.int32)), (m, n, k)
