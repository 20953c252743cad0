import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import clean_tail, gen, noncontiguous, randn, random_bits, same


def random_shape(rng):
    m = rng.choice([1, 2, 3, 4, 5, 7, 9, 17, rng.randint(1, 150)])
    n = rng.choice([1, 3, 4, 5, 8, 13, rng.randint(1, 150)])
    k = rng.choice([1, 7, 31, 32, 33, 63, 64, 65, 95, 127, 129, rng.randint(1, 3000)])
    return m, n, k


@pytest.mark.parametrize("seed", range(25))
def test_xnor_gemm_matches_reference(seed, rng, cpu_isa):
    m, n, k = random_shape(rng)
    a = random_bits(m, k=k, seed=seed)
    b = random_bits(n, k=k, seed=seed + 1000)
    got = bk.xnor_gemm(a, b, k)
    assert got.dtype == torch.int32 and got.shape == (m, n)
    assert torch.equal(got, R.xnor_gemm(a, b, k))


def test_xnor_gemm_equals_float_matmul_of_signs(rng):
    xa, xb = randn(33, 200, seed=1), randn(21, 200, seed=2)
    xa[0, :50] = 0.0  # sign(0) is +1 here (torch.sign would give 0)
    sa = torch.where(xa >= 0, 1.0, -1.0)
    sb = torch.where(xb >= 0, 1.0, -1.0)
    got = bk.xnor_gemm(bk.pack_bits(xa), bk.pack_bits(xb), 200)
    assert torch.equal(got, (sa @ sb.T).to(torch.int32))


def test_xnor_gemm_large_and_threaded(cpu_isa):
    torch.set_num_threads(2)
    a = random_bits(300, k=4100, seed=3)
    b = random_bits(520, k=4100, seed=4)
    assert torch.equal(bk.xnor_gemm(a, b, 4100), R.xnor_gemm(a, b, 4100))


def test_xnor_gemm_ignores_dirty_tail_bits(rng):
    k = 45
    a, b = random_bits(6, k=k, seed=5), random_bits(7, k=k, seed=6)
    dirty = lambda t: t | torch.tensor([0, -(1 << 13)], dtype=torch.int32)  # bits 13..31 of word 1
    assert torch.equal(bk.xnor_gemm(dirty(a), dirty(b), k), R.xnor_gemm(a, b, k))


def test_xnor_gemm_word_count_larger_than_needed_is_rejected():
    a = random_bits(2, k=64, seed=7)
    with pytest.raises(ValueError, match="k=20"):
        bk.xnor_gemm(a, a, 20)


def test_xnor_gemm_noncontiguous_and_empty():
    a, b = random_bits(9, k=90, seed=8), random_bits(5, k=90, seed=9)
    assert torch.equal(bk.xnor_gemm(noncontiguous(a), b.T.contiguous().T, 90), R.xnor_gemm(a, b, 90))
    assert bk.xnor_gemm(a[:0], b, 90).shape == (0, 5)
    assert bk.xnor_gemm(a, b[:0], 90).shape == (9, 0)


def test_xnor_gemm_opcheck():
    a, b = random_bits(5, k=70, seed=10), random_bits(3, k=70, seed=11)
    torch.library.opcheck(torch.ops.bnn_kernels.xnor_gemm, (a, b, 70))


def test_xnor_gemm_torch_compile():
    a, b = random_bits(5, k=70, seed=12), random_bits(3, k=70, seed=13)
    f = torch.compile(lambda a, b: bk.xnor_gemm(a, b, 70) * 2, fullgraph=True, backend="eager")
    assert torch.equal(f(a, b), R.xnor_gemm(a, b, 70) * 2)


def test_cpu_isa_reported(cpu_isa):
    """cpu_gemm_isa() reports the micro-kernel in effect, under the BNN_KERNELS_CPU_ISA cap."""
    allowed = {
        "auto": ("avx512-vpopcntdq", "avx2", "scalar-popcnt", "scalar"),
        "avx2": ("avx2", "scalar-popcnt", "scalar"),
        "scalar": ("scalar-popcnt", "scalar"),
    }[cpu_isa]
    assert bk.cpu_gemm_isa() in allowed


ok = torch.zeros(3, 2, dtype=torch.int32)
BAD = [
    (lambda: bk.xnor_gemm(ok.float(), ok, 40), TypeError, "a_bits must be an int32"),
    (lambda: bk.xnor_gemm(ok, ok.long(), 40), TypeError, "b_bits must be an int32"),
    (lambda: bk.xnor_gemm(ok[0], ok, 40), ValueError, "a_bits must have 2 dims"),
    (lambda: bk.xnor_gemm(ok, ok[None], 40), ValueError, "b_bits must have 2 dims"),
    (lambda: bk.xnor_gemm(ok, torch.zeros(3, 3, dtype=torch.int32), 40), ValueError, "same number of words"),
    (lambda: bk.xnor_gemm(ok, ok, 0), ValueError, "k must be >= 1"),
    (lambda: bk.xnor_gemm(ok, ok, -3), ValueError, "k must be >= 1"),
    (lambda: bk.xnor_gemm(ok, ok, 65), ValueError, "k=65"),
    (lambda: bk.xnor_gemm(ok, ok, 32), ValueError, "k=32"),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_xnor_gemm_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_xnor_gemm_mixed_devices_rejected():
    a = random_bits(2, k=40, seed=0)
    with pytest.raises(ValueError, match="same device"):
        bk.xnor_gemm(a, a.cuda(), 40)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 400), seed=st.integers(0, 2**31 - 1))
def test_xnor_gemm_property(m, n, k, seed):
    """Hypothesis: any shape, random +-1 data, result equals the float matmul of signs."""
    g = torch.Generator().manual_seed(seed)
    xa = torch.randint(0, 2, (m, k), generator=g).float() * 2 - 1
    xb = torch.randint(0, 2, (n, k), generator=g).float() * 2 - 1
    got = bk.xnor_gemm(bk.pack_bits(xa), bk.pack_bits(xb), k)
    assert torch.equal(got, (xa.double() @ xb.double().T).to(torch.int32))


# ---------------------------------------------------------------- on every device (CPU, CUDA)
# gemm_device: the CPU, then CUDA under every forced GEMM path (mma, popc, gemv, auto).

GEMM_SHAPES = [
    (1, 1, 1),
    (5, 7, 33),
    (8, 300, 1000),
    (9, 64, 256),
    (33, 40, 64),
    (130, 129, 1025),
    (257, 300, 4100),
    (64, 64, 32 * 40 + 7),
    (200, 3, 2048),
    (128, 128, 1024),
    (300, 257, 96),
]


@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
@pytest.mark.parametrize("dirty", [False, True])
def test_xnor_gemm_on_device(gemm_device, m, n, k, dirty):
    g = gen(m * 1000 + n + k)
    a = random_bits(m, k=k, dirty=dirty, gen=g)
    b = random_bits(n, k=k, dirty=dirty, gen=g)
    out = bk.xnor_gemm(a.to(gemm_device), b.to(gemm_device), k)
    same(out, bk.xnor_gemm(a, b, k), gemm_device)
    if m * n * k < 5e7:
        same(out, R.xnor_gemm(clean_tail(a, k), clean_tail(b, k), k))


def test_xnor_gemm_large_cuda(cuda_gemm_path):
    g = gen(5)
    m, n, k = 1031, 2049, 8192 + 96
    a, b = random_bits(m, k=k, gen=g), random_bits(n, k=k, gen=g)
    same(bk.xnor_gemm(a.cuda(), b.cuda(), k), bk.xnor_gemm(a, b, k), "cuda")


def test_xnor_gemm_non_contiguous_and_empty_on_device(gemm_device):
    g = gen(6)
    k = 200
    big = random_bits(50, k=32 * 20, gen=g)
    big[:, 3 : 3 + (k + 31) // 32] = clean_tail(big[:, 3 : 3 + (k + 31) // 32], k)
    a = big[:, 3 : 3 + (k + 31) // 32]  # row stride 20 words
    b = random_bits(70, k=k, gen=g).t().contiguous().t()
    assert not a.is_contiguous()
    same(bk.xnor_gemm(a.to(gemm_device), b.to(gemm_device), k), R.xnor_gemm(a, b, k), gemm_device)
    e = bk.xnor_gemm(a[:0].to(gemm_device), b.to(gemm_device), k)
    assert e.shape == (0, 70) and e.device.type == gemm_device


def test_xnor_gemm_non_default_stream(cuda_gemm_path):
    g = gen(7)
    a, b = random_bits(300, k=999, gen=g), random_bits(200, k=999, gen=g)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = bk.xnor_gemm(a.cuda(), b.cuda(), 999)
    s.synchronize()
    same(out, bk.xnor_gemm(a, b, 999), "cuda")


@pytest.mark.cuda
def test_bad_cuda_gemm_path_env(monkeypatch):
    monkeypatch.setenv("BNN_KERNELS_CUDA_GEMM_PATH", "nope")
    a = random_bits(2, k=40).cuda()
    with pytest.raises(ValueError, match="BNN_KERNELS_CUDA_GEMM_PATH"):
        bk.xnor_gemm(a, a, 40)


def test_xnor_gemm_opcheck_on_device(device):
    g = gen(14)
    a, b = random_bits(20, k=300, gen=g).to(device), random_bits(30, k=300, gen=g).to(device)
    torch.library.opcheck(torch.ops.bnn_kernels.xnor_gemm.default, (a, b, 300))


def test_compile_fullgraph_on_device(device):
    g = gen(15)
    x = torch.randn(16, 96, generator=g).to(device)
    w = random_bits(24, k=96, gen=g).to(device)

    def f(x, w):
        return bk.xnor_gemm(bk.pack_bits(x), w, 96)

    out = torch.compile(f, fullgraph=True)(x, w)
    same(out, R.xnor_gemm(R.pack_bits(x.cpu()), w.cpu(), 96), device)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_cuda_device():
    g = gen(16)
    a, b = random_bits(100, k=500, gen=g), random_bits(90, k=500, gen=g)
    out = bk.xnor_gemm(a.to("cuda:1"), b.to("cuda:1"), 500)
    assert out.device == torch.device("cuda:1")
    same(out, bk.xnor_gemm(a, b, 500))
