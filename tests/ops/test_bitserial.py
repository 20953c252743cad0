import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import clean_tail, gen, noncontiguous, random_bits, same

pytestmark = pytest.mark.usefixtures("cpu_isa")


def encoding(rng, nbits_choices=(1, 2, 3, 4)):
    """A random plane encoding: (kind, nbits, coefs, offset, value range)."""
    kind = rng.choice(["pm1", "unsigned", "signed", "ternary", "custom"])
    if kind == "pm1":
        return kind, 1, [2], -1
    if kind == "ternary":
        return kind, 2, [1, -1], 0
    n = rng.choice(nbits_choices)
    if kind == "unsigned":
        return kind, n, [2**p for p in range(n)], 0
    if kind == "signed":
        return kind, n, [2**p for p in range(n - 1)] + [-(2 ** (n - 1))], 0
    return kind, n, [rng.randint(-5, 5) for _ in range(n)], rng.randint(-3, 3)


def random_planes(p, rows, k, seed):
    bits = torch.randint(0, 2, (p, rows, k), generator=gen(seed))
    return (
        torch.stack([R._pack01(bits[i]) for i in range(p)])
        if p
        else torch.empty(0, rows, (k + 31) // 32, dtype=torch.int32)
    )


@pytest.mark.parametrize("seed", range(30))
def test_bitserial_gemm_matches_reference(seed, rng):
    _, p, ac, ao = encoding(rng)
    _, q, wc, wo = encoding(rng)
    m, n = rng.randint(1, 40), rng.randint(1, 40)
    k = rng.choice([1, 31, 32, 33, 64, 100, rng.randint(1, 600)])
    a, w = random_planes(p, m, k, seed), random_planes(q, n, k, seed + 500)
    for reduce in (True, False):
        got = bk.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce=reduce)
        assert got.shape == ((m, n) if reduce else (p, m, n))
        assert torch.equal(got, R.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce)), (ac, ao, wc, wo, reduce)


def test_bitserial_gemm_from_integers():
    """W2A4 unsigned activations times signed 2-bit weights equals the integer matmul."""
    qa = torch.randint(0, 16, (23, 150), generator=gen(1))
    qw = torch.randint(-2, 2, (17, 150), generator=gen(2))
    a, w = bk.to_bitplanes(qa, 4), bk.to_bitplanes(qw, 2, signed=True)
    got = bk.bitserial_gemm(a, w, 150, [1, 2, 4, 8], [1, -2])
    assert torch.equal(got, (qa @ qw.T).to(torch.int32))


def test_bitserial_pm1_equals_xnor_gemm():
    a, b = random_planes(1, 9, 77, 3), random_planes(1, 11, 77, 4)
    assert torch.equal(bk.bitserial_gemm(a, b, 77, [2], [2], -1, -1), bk.xnor_gemm(a[0], b[0], 77))


def test_bitserial_unreduced_paths_sum_to_reduced():
    a, w = random_planes(3, 8, 90, 5), random_planes(2, 6, 90, 6)
    ac, wc = [1, 2, 4], [1, -2]
    paths = bk.bitserial_gemm(a, w, 90, ac, wc, 5, 1, reduce=False)
    wsum = R.decode_bitplanes(w, 90, wc, 1).sum(1).to(torch.int32)
    recombined = sum(c * paths[i] for i, c in enumerate(ac)) + 5 * wsum
    assert torch.equal(recombined, bk.bitserial_gemm(a, w, 90, ac, wc, 5, 1))


def test_bitserial_noncontiguous_empty_and_opcheck():
    a, w = random_planes(2, 7, 50, 7), random_planes(2, 5, 50, 8)
    want = R.bitserial_gemm(a, w, 50, [1, 2], [1, -1])
    assert torch.equal(bk.bitserial_gemm(noncontiguous(a), noncontiguous(w), 50, [1, 2], [1, -1]), want)
    assert bk.bitserial_gemm(a[:, :0], w, 50, [1, 2], [1, -1]).shape == (0, 5)
    assert torch.equal(bk.bitserial_gemm(a, w, 50, torch.tensor([1, 2]), (1, -1)), want)
    torch.library.opcheck(torch.ops.bnn_kernels.bitserial_gemm, (a, w, 50, [1, 2], [1, -1], 1, -1, True))
    torch.library.opcheck(torch.ops.bnn_kernels.bitserial_gemm, (a, w, 50, [1, 2], [1, -1], 0, 0, False))


a2 = torch.zeros(2, 3, 2, dtype=torch.int32)
w2 = torch.zeros(2, 4, 2, dtype=torch.int32)
BAD = [
    (lambda: bk.bitserial_gemm(a2.float(), w2, 40, [1, 2], [1, 2]), TypeError, "a_planes must be an int32"),
    (lambda: bk.bitserial_gemm(a2, w2[0], 40, [1, 2], [1, 2]), ValueError, "w_planes must have 3 dims"),
    (lambda: bk.bitserial_gemm(a2, w2, 40, [1], [1, 2]), ValueError, "a_coefs must have one"),
    (lambda: bk.bitserial_gemm(a2, w2, 40, [1, 2], [1, 2, 4]), ValueError, "w_coefs must have one"),
    (lambda: bk.bitserial_gemm(a2, w2, 80, [1, 2], [1, 2]), ValueError, "k=80"),
    (lambda: bk.bitserial_gemm(a2, w2[..., :1], 40, [1, 2], [1, 2]), ValueError, "same number of words"),
    (lambda: bk.bitserial_gemm(a2, w2, 40, [1.5, 2], [1, 2]), TypeError, "a_coefs"),
    (lambda: bk.bitserial_gemm(a2, w2, 40, [1, 2], torch.tensor([1.0, 2.0])), TypeError, "w_coefs"),
    (lambda: bk.bitserial_gemm(a2[:0], w2, 40, [], [1, 2]), ValueError, "at least one plane"),
    (lambda: bk.bitserial_gemm(a2, w2, 40, [2**20, 1], [2**12, 1]), ValueError, "overflow"),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_bitserial_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------- on every device (CPU, CUDA)
# gemm_device: the CPU, then CUDA under every forced GEMM path. Dirty plane tails included.

BITSERIAL_CASES = [
    # P, Q, M, N, k, a_coefs, w_coefs, a_offset, w_offset
    (1, 1, 4, 5, 33, [2], [2], -1, -1),
    (4, 2, 17, 9, 100, [1, 2, 4, -8], [1, -1], 0, 0),
    (8, 1, 130, 140, 1000, [1, 2, 4, 8, 16, 32, 64, -128], [2], 3, -1),
    (2, 3, 1, 300, 4096, [1, 2], [1, 2, -4], 0, 1),
    (3, 2, 257, 64, 513, [5, -3, 7], [3, 1], -2, 2),
]


@pytest.mark.parametrize("case", BITSERIAL_CASES)
@pytest.mark.parametrize("reduce", [True, False])
def test_bitserial_gemm_on_device(gemm_device, case, reduce):
    p, q, m, n, k, ac, wc, ao, wo = case
    g = gen(p * 100 + m)
    a = random_bits(p, m, k=k, dirty=True, gen=g)
    w = random_bits(q, n, k=k, dirty=True, gen=g)
    out = bk.bitserial_gemm(a.to(gemm_device), w.to(gemm_device), k, ac, wc, ao, wo, reduce)
    same(out, bk.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce), gemm_device)
    same(out, R.bitserial_gemm(clean_tail(a, k), clean_tail(w, k), k, ac, wc, ao, wo, reduce), gemm_device)


def test_bitserial_gemm_empty_on_device(device):
    a = random_bits(2, 0, k=64).to(device)
    w = random_bits(1, 5, k=64).to(device)
    out = bk.bitserial_gemm(a, w, 64, [1, 2], [1])
    assert out.shape == (0, 5) and out.device.type == device


def test_bitserial_gemm_opcheck_on_device(device):
    g = gen(14)
    a, b = random_bits(20, k=300, gen=g).to(device), random_bits(30, k=300, gen=g).to(device)
    args = (torch.stack([a, a]), b.unsqueeze(0), 300, [1, 2], [1], 0, 0, True)
    torch.library.opcheck(torch.ops.bnn_kernels.bitserial_gemm.default, args)
