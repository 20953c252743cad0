"""binary_weight_linear edges on every CPU path, exact: activations are small integers and
scales powers of two, so every sum, product and bias add is exact in float32 and the result
must equal the reference bit for bit. Shapes hit the partial row and weight tiles, K tails of
the 8- and 16-wide steps, dirty weight tails, and odd thread counts."""

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import gen, noncontiguous, random_bits, same_bits
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


# ---------------------------------------------------------------- the float32 panel kernels

# (M, N, K): 1-13 rows, row tails past a tile (6 rows on AVX2, 12 on AVX-512) and past a block
# of 96 rows, channel tails (N not a multiple of 16), K tails. On 1 thread a unit takes
# panels * row_blocks / 4 panels, so the 1-3 row cases (248, 189, 113 channels; 256 full) end
# in tiles over 4, 3 and 2 panels at once with a partial last panel (56, 45 and 17 channels of
# it); 7-11 rows (13, 16, 10 and 9 panels: units of 3, 4, 2 and 2 panels) run the AVX-512
# kernel's tiles over 3 and 2 panels at once, also with a partial last panel (and AVX2's 6-row
# tile plus a tail); (2, 600, 4100) spans several chunks.
PANEL_SHAPES = [
    (1, 248, 37),
    (1, 256, 64),
    (2, 189, 50),
    (3, 113, 33),
    (1, 100, 77),
    (2, 113, 129),
    (3, 40, 300),
    (4, 17, 65),
    (6, 48, 31),
    (7, 200, 40),
    (8, 250, 20),
    (9, 150, 33),
    (11, 140, 19),
    (13, 35, 96),
    (101, 20, 45),
    (2, 600, 4100),
    (200, 33, 7),
]
# The ISA caps that run a panel kernel: AVX2 with FMA, and AVX-512 (where the CPU has it, or
# in the emulated AVX-512 build).
PANEL_ISAS = {"avx2": "avx2", "avx512": "avx512"}


@pytest.mark.parametrize("m,n,k", PANEL_SHAPES)
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("isa", list(PANEL_ISAS))
def test_binary_weight_linear_panels_sum_in_scalar_order(m, n, k, threads, isa, cpu_isa, monkeypatch):
    """float32 capped at AVX2 or AVX-512 (a panel kernel where the CPU has that ISA): random x
    with signed zeros, dirty weight tails, every scale / bias combination: bit for bit the
    scalar path's result (one sequential sum over k from +0, then * scale, + bias)."""
    if cpu_isa != "auto":
        pytest.skip("sets the ISA cap itself")
    monkeypatch.setenv("BNN_KERNELS_CPU_ISA", isa)
    if not bk.cpu_gemm_isa().startswith(PANEL_ISAS[isa]):
        pytest.skip(f"this CPU has no {isa} kernels")
    g = gen(m * 1000 + n + k)
    x = torch.randn(m, k, generator=g)
    x = torch.where(torch.rand(m, k, generator=g) < 0.2, torch.where(torch.rand(m, k, generator=g) < 0.5, -0.0, 0.0), x)
    w = dirty_tail(random_bits(n, k=k, gen=g), k, m + n)
    scale, bias = torch.randn(n, generator=g), torch.randn(n, generator=g)
    with num_threads(threads):
        for s, b in ((scale, bias), (scale, None), (None, bias), (None, None)):
            monkeypatch.setenv("BNN_KERNELS_CPU_ISA", "scalar")
            want = bk.binary_weight_linear(x, w, k, s, b)
            monkeypatch.setenv("BNN_KERNELS_CPU_ISA", isa)
            same_bits(bk.binary_weight_linear(x, w, k, s, b), want)


def test_binary_weight_linear_weights_changed_in_place_between_calls(rng):
    """The panel kernel keeps its transposed weights between calls: weights changed in place,
    or the same storage seen as another shape, give the new result at once."""
    x, w, k, scale, bias = exact_case(rng, 21, torch.float32)
    w = random_bits(24, k=k, seed=22)
    for _ in range(4):
        assert torch.equal(bk.binary_weight_linear(x, w, k), R.binary_weight_linear(x, w, k))
        c = rng.randrange(k)  # one weight bit below k, in place
        w[rng.randrange(w.shape[0]), c // 32] ^= 1 << (c % 32) if c % 32 < 31 else -(2**31)
    w2 = w.view(-1, 1)  # the same words as rows of 32 features
    x2 = torch.randint(-8, 9, (3, 32), generator=gen(23)).float()
    assert torch.equal(bk.binary_weight_linear(x2, w2, 32), R.binary_weight_linear(x2, w2, 32))
