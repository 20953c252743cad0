import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import clean_tail, fma_exposing_case, fused, gen, noncontiguous, randn, random_bits, same

pytestmark = pytest.mark.usefixtures("cpu_isa")


TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def check_close(got, x, w, k, scale, bias):
    want = R.binary_weight_linear(x.double(), w, k, scale, bias)
    assert got.dtype == x.dtype and got.shape == want.shape
    # error relative to the magnitude of the terms summed (sum_k |x| * |scale|)
    mag = x.double().abs() @ torch.ones(k, w.shape[0], dtype=torch.float64)
    if scale is not None:
        mag = mag * scale.double().abs()
    if bias is not None:
        mag = mag + bias.double().abs()
    assert ((got.double() - want).abs() <= TOL[x.dtype] * (mag + 1)).all()


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", list(TOL))
def test_binary_weight_linear_matches_reference(seed, dtype, rng):
    k = rng.choice([1, 7, 8, 9, 31, 32, 33, 100, rng.randint(1, 1000)])
    n = rng.randint(1, 40)
    lead = tuple(rng.randint(1, 5) for _ in range(rng.randint(1, 3)))
    x = randn(*lead, k, seed=seed, dtype=dtype)
    w = random_bits(n, k=k, seed=seed + 1)
    scale = randn(n, seed=seed + 2) if rng.random() < 0.7 else None
    bias = randn(n, seed=seed + 3) if rng.random() < 0.7 else None
    check_close(bk.binary_weight_linear(x, w, k, scale, bias), x, w, k, scale, bias)


def test_binary_weight_linear_exact_on_integers():
    """Small-integer activations sum exactly in float32: the result must be exact."""
    x = torch.randint(-8, 9, (6, 300)).float()
    w = random_bits(10, k=300, seed=4)
    want = (x.double() @ R.unpack_bits(w, 300, torch.float64).T).float()
    assert torch.equal(bk.binary_weight_linear(x, w, 300), want)


def test_binary_weight_linear_noncontiguous_empty_opcheck():
    x, w = randn(5, 70, seed=5), random_bits(4, k=70, seed=6)
    s, b = randn(4, seed=7), randn(4, seed=8)
    want = bk.binary_weight_linear(x, w, 70, s, b)
    assert torch.allclose(bk.binary_weight_linear(noncontiguous(x), noncontiguous(w), 70, s, b), want, atol=1e-5)
    assert bk.binary_weight_linear(x[:0], w, 70).shape == (0, 4)
    torch.library.opcheck(torch.ops.bnn_kernels.binary_weight_linear, (x, w, 70, s, b))
    torch.library.opcheck(torch.ops.bnn_kernels.binary_weight_linear, (x.half(), w, 70, None, None))


x3 = torch.zeros(2, 40)
w3 = torch.zeros(5, 2, dtype=torch.int32)
BAD = [
    (lambda: bk.binary_weight_linear(x3.int(), w3, 40), TypeError, "x must be float"),
    (lambda: bk.binary_weight_linear(x3, w3.float(), 40), TypeError, "w_bits must be an int32"),
    (lambda: bk.binary_weight_linear(x3, w3, 41), ValueError, "k=41 features"),
    (lambda: bk.binary_weight_linear(x3, w3, 70), ValueError, "k=70"),
    (lambda: bk.binary_weight_linear(x3, w3, 40, torch.ones(4)), ValueError, "scale must have shape"),
    (lambda: bk.binary_weight_linear(x3, w3, 40, None, torch.ones(5, 1)), ValueError, "bias must have shape"),
    (
        lambda: bk.binary_weight_linear(x3, w3, 40, torch.ones(5, dtype=torch.int32)),
        TypeError,
        "scale must be a floating",
    ),
    (lambda: bk.binary_weight_linear(torch.tensor(1.0), w3, 40), ValueError, "at least 1 dim"),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_binary_weight_linear_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seed", range(3))
def test_binary_weight_linear_epilogue_rounds_like_unfused_float(dtype, seed):
    """The float epilogue is dot * scale, rounded, + bias, rounded, in the accumulation type
    (what the CUDA kernels do too): never one fused multiply-add."""
    x, w, scale, bias, dot, acc = fma_exposing_case(dtype, seed)
    want = (dot.to(acc) * scale + bias).to(dtype)  # two torch ops: two roundings
    fma = fused(dot, scale, bias, acc).to(dtype)
    # the inputs must tell the two apart, or this test could not fail
    assert (want[0, 0::2] != fma[0, 0::2]).float().mean() > 0.5
    got = bk.binary_weight_linear(x, w, x.shape[1], scale, bias)
    assert torch.equal(got, want)


# ---------------------------------------------------------------- on every device (CPU, CUDA)
# linear_device: the CPU, then CUDA under every forced linear path (gemv, tiled, auto).

LINEAR_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _on(t, device):
    return None if t is None else t.to(device)


@pytest.mark.parametrize("dtype", LINEAR_DTYPES)
@pytest.mark.parametrize(
    "m,n,k",
    [
        (1, 1, 1),
        (1, 33, 31),
        (3, 70, 100),
        (8, 64, 4096),
        (9, 40, 1024),
        (100, 130, 257),
        (1, 300, 4100),
        (2, 5, 32 * 128 * 2 + 64),
    ],
)
@pytest.mark.parametrize("affine", [False, True])
def test_binary_weight_linear_exact_on_device(linear_device, dtype, m, n, k, affine):
    """Small-integer inputs: every sum is exact in float32, so all devices agree bit for bit,
    with each other and with the reference."""
    g = gen(m + n + k)
    x = torch.randint(-4, 5, (m, k), generator=g).to(dtype)
    w = random_bits(n, k=k, dirty=True, gen=g)
    scale = torch.randint(1, 5, (n,), generator=g).float() * 0.5 if affine else None
    bias = torch.randint(-3, 4, (n,), generator=g).float() if affine else None
    out = bk.binary_weight_linear(
        x.to(linear_device), w.to(linear_device), k, _on(scale, linear_device), _on(bias, linear_device)
    )
    same(out, bk.binary_weight_linear(x, w, k, scale, bias), linear_device)
    if dtype in (torch.float32, torch.float64):  # the reference rounds once, the kernels per product in half types
        same(out, R.binary_weight_linear(x, clean_tail(w, k), k, scale, bias), linear_device)


@pytest.mark.parametrize("dtype", LINEAR_DTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 64, 1000), (5, 17, 333), (64, 96, 2048)])
def test_binary_weight_linear_random_on_device(linear_device, dtype, m, n, k):
    g = gen(11)
    x = torch.randn(2, m, k, generator=g).to(dtype)
    w = random_bits(n, k=k, gen=g)
    scale, bias = torch.rand(n, generator=g) + 0.5, torch.randn(n, generator=g)
    out = bk.binary_weight_linear(
        x.to(linear_device), w.to(linear_device), k, scale.to(linear_device), bias.to(linear_device)
    )
    expect = R.binary_weight_linear(x, w, k, scale, bias)
    assert out.dtype == dtype and out.shape == expect.shape and out.device.type == linear_device
    tol = {torch.float32: 1e-4, torch.float64: 1e-10, torch.float16: 2e-2, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(out.cpu().double(), expect.double(), rtol=tol, atol=tol * k**0.5)


def test_binary_weight_linear_non_contiguous_and_empty_on_device(linear_device):
    g = gen(12)
    x = torch.randint(-3, 4, (300, 6), generator=g).float().t()  # [6, 300], not contiguous
    w = random_bits(20, k=300, gen=g)
    same(
        bk.binary_weight_linear(x.to(linear_device), w.to(linear_device), 300),
        R.binary_weight_linear(x, w, 300),
        linear_device,
    )
    e = bk.binary_weight_linear(x[:0].to(linear_device), w.to(linear_device), 300)
    assert e.shape == (0, 20) and e.device.type == linear_device


@pytest.mark.cuda
def test_binary_weight_linear_large_gemv_cuda():
    g = gen(13)
    k, n = 16384, 4096
    x = torch.randint(-2, 3, (1, k), generator=g).float()
    w = random_bits(n, k=k, gen=g)
    same(bk.binary_weight_linear(x.cuda(), w.cuda(), k), bk.binary_weight_linear(x, w, k), "cuda")


def test_binary_weight_linear_opcheck_on_device(device):
    g = gen(14)
    b = random_bits(30, k=300, gen=g).to(device)
    args = (torch.randn(3, 300, generator=g).to(device), b, 300, None, None)
    torch.library.opcheck(torch.ops.bnn_kernels.binary_weight_linear.default, args)


@pytest.mark.parametrize("dtype", LINEAR_DTYPES)
def test_binary_weight_linear_epilogue_not_fused_on_device(linear_device, dtype):
    """Inputs where an FMA in the epilogue would round differently: every device and path
    (GEMV and tiled: 9 rows) equals the CPU kernel bit for bit."""
    x, w, scale, bias, dot, acc = fma_exposing_case(dtype, seed=15, m=9)
    assert (fused(dot, scale, bias, acc).to(dtype)[0, 0::2] != (dot.to(acc) * scale + bias).to(dtype)[0, 0::2]).any()
    k = x.shape[1]
    out = bk.binary_weight_linear(
        x.to(linear_device), w.to(linear_device), k, scale.to(linear_device), bias.to(linear_device)
    )
    same(out, bk.binary_weight_linear(x, w, k, scale, bias), linear_device)
