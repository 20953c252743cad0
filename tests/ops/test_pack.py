import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import gen, noncontiguous, randn, random_bits, same

pytestmark = pytest.mark.usefixtures("cpu_isa")

FLOAT_TYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
INT_TYPES = [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_pack_bits_matches_reference(seed, dtype, rng):
    k = rng.choice([1, 5, 31, 32, 33, 63, 64, 65, 100, 257, rng.randint(1, 700)])
    lead = tuple(
        rng.randint(0, 4) if i == 0 and rng.random() < 0.1 else rng.randint(1, 5) for i in range(rng.randint(0, 3))
    )
    x = randn(*lead, k, seed=seed, dtype=dtype)
    x[..., :: max(1, k // 7)] = 0  # zeros must become +1
    thr = rng.choice([0.0, 0.25, -0.5])
    got = bk.pack_bits(x, thr)
    assert got.dtype == torch.int32 and got.shape == (*lead, (k + 31) // 32)
    assert torch.equal(got, R.pack_bits(x, thr))
    assert torch.equal(bk.unpack_bits(got, k, torch.float32), R.binarize(x, thr).float())


@pytest.mark.parametrize("dtype", INT_TYPES)
def test_pack_bits_integer_inputs(dtype, rng):
    lo = 0 if dtype == torch.uint8 else -5
    x = torch.randint(lo, 6, (3, 77), generator=gen(1)).to(dtype)
    for thr in (0, 1, 0.5, -2.5):
        assert torch.equal(bk.pack_bits(x, thr), R.pack_bits(x, thr))


@pytest.mark.parametrize("dtype", FLOAT_TYPES + [torch.int32])
def test_pack_bits_per_channel_threshold(dtype, rng):
    k = rng.randint(40, 300)
    x = randn(4, 3, k, seed=2).mul(3).to(dtype)
    thr = randn(k, seed=3)
    # values equal to their threshold become +1
    thr[::5] = x[0, 0, ::5].float()
    got = bk.pack_bits(x, thr)
    assert torch.equal(got, R.pack_bits(x, thr))
    assert torch.equal(bk.pack_bits(x, torch.tensor(0.3)), R.pack_bits(x, 0.3))


def test_pack_bits_threshold_rounded_to_input_dtype():
    # 0.1 rounds up to 0.10000000149 in float32: x == float32(0.1) is >= the threshold, as
    # `x >= 0.1` is in PyTorch.
    x = torch.tensor([0.1, 0.09999999], dtype=torch.float32)
    assert torch.equal(bk.unpack_bits(bk.pack_bits(x, 0.1), 2), (x >= 0.1).float() * 2 - 1)
    h = torch.tensor([0.1], dtype=torch.float16)
    assert bk.unpack_bits(bk.pack_bits(h, 0.1), 1).item() == 1.0


def test_pack_bits_nan_and_inf():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0])
    assert bk.unpack_bits(bk.pack_bits(x), 5).tolist() == [-1, 1, -1, 1, 1]


def test_pack_bits_layout_lsb_first():
    x = -torch.ones(40)
    x[0] = 1
    x[33] = 1
    assert bk.pack_bits(x).tolist() == [1, 2]
    x[31] = 1
    assert bk.pack_bits(x)[0].item() == 1 - 2**31  # bit 31 set: negative int32


def test_pack_bits_noncontiguous_and_empty(rng):
    x = randn(6, 70, seed=4)
    assert torch.equal(bk.pack_bits(noncontiguous(x)), R.pack_bits(x))
    assert torch.equal(bk.pack_bits(x.T.contiguous().T), R.pack_bits(x))
    assert bk.pack_bits(torch.empty(0, 5, 40)).shape == (0, 5, 2)


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.int32, torch.int64]
)
def test_unpack_bits_dtypes(dtype, rng):
    k = rng.randint(1, 200)
    bits = R.pack_bits(randn(3, k, seed=5))
    got = bk.unpack_bits(bits, k, dtype)
    assert got.dtype == dtype
    assert torch.equal(got, R.unpack_bits(bits, k, dtype))


def test_unpack_ignores_dirty_tail():
    bits = torch.tensor([[-1]], dtype=torch.int32)  # all 32 bits set
    assert bk.unpack_bits(bits, 3).tolist() == [[1.0, 1.0, 1.0]]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("signed", [False, True])
def test_to_bitplanes(seed, signed, rng):
    nbits = rng.randint(1, 8)
    k = rng.choice([1, 31, 32, 33, rng.randint(1, 300)])
    lo, hi = (-(2 ** (nbits - 1)), 2 ** (nbits - 1)) if signed else (0, 2**nbits)
    q = torch.randint(lo, hi, (rng.randint(1, 4), rng.randint(1, 5), k), generator=gen(seed))
    q[..., 0] = hi - 1
    q[..., -1] = lo
    planes = bk.to_bitplanes(q, nbits, signed=signed)
    assert planes.shape == (nbits, *q.shape[:-1], (k + 31) // 32)
    assert torch.equal(planes, R.to_bitplanes(q, nbits, signed))
    coefs = [2**p for p in range(nbits)]
    if signed:
        coefs[-1] = -coefs[-1]
    assert torch.equal(R.decode_bitplanes(planes, k, coefs).long(), q.long())


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32])
def test_to_bitplanes_input_dtypes(dtype):
    q = torch.randint(0, 8, (5, 45), generator=gen(7)).to(dtype)
    assert torch.equal(bk.to_bitplanes(noncontiguous(q), 3), R.to_bitplanes(q, 3))


@pytest.mark.parametrize(
    "q,nbits,signed",
    [
        (torch.tensor([[0, 4]]), 2, False),
        (torch.tensor([[-1, 0]]), 3, False),
        (torch.tensor([[2, 0]]), 2, True),
        (torch.tensor([[-3, 0]]), 2, True),
    ],
)
def test_to_bitplanes_out_of_range(q, nbits, signed):
    with pytest.raises(ValueError, match="outside"):
        bk.to_bitplanes(q, nbits, signed=signed)


def test_opcheck_pack_ops():
    x = randn(3, 45, seed=8)
    torch.library.opcheck(torch.ops.bnn_kernels.pack_bits, (x, 0.25, None))
    torch.library.opcheck(torch.ops.bnn_kernels.pack_bits, (x, 0.0, randn(45, seed=9)))
    bits = R.pack_bits(x)
    torch.library.opcheck(torch.ops.bnn_kernels.unpack_bits, (bits, 45, torch.float16))
    q = torch.randint(-4, 4, (2, 3, 40), generator=gen(10))
    torch.library.opcheck(torch.ops.bnn_kernels.to_bitplanes, (q, 3, True))


BAD = [
    (lambda: bk.pack_bits(torch.tensor(1.0)), ValueError, "at least 1 dim"),
    (lambda: bk.pack_bits(torch.zeros(3, 0)), ValueError, "non-empty last dim"),
    (lambda: bk.pack_bits(torch.zeros(3, 4, dtype=torch.bool)), TypeError, "x must be"),
    (lambda: bk.pack_bits(torch.zeros(3, 4, dtype=torch.complex64)), TypeError, "x must be"),
    (lambda: bk.pack_bits(torch.zeros(3, 4), torch.zeros(5)), ValueError, "threshold"),
    (lambda: bk.pack_bits(torch.zeros(3, 4), "0"), TypeError, "threshold"),
    (lambda: bk.pack_bits(torch.zeros(3, 4), float("nan")), ValueError, "threshold must not be NaN"),
    (lambda: torch.ops.bnn_kernels.pack_bits(torch.zeros(3, 4), float("nan"), None), ValueError, "must not be NaN"),
    (lambda: bk.unpack_bits(torch.zeros(2, 3), 70), TypeError, "int32"),
    (lambda: bk.unpack_bits(torch.zeros(2, 3, dtype=torch.int32), 100), ValueError, "k=100"),
    (lambda: bk.unpack_bits(torch.zeros(2, 3, dtype=torch.int32), 0), ValueError, "k must be >= 1"),
    (lambda: bk.unpack_bits(torch.zeros(2, 1, dtype=torch.int32), 5, torch.bool), TypeError, "dtype"),
    (lambda: bk.to_bitplanes(torch.zeros(2, 3), 2), TypeError, "integer"),
    (lambda: bk.to_bitplanes(torch.zeros(2, 3, dtype=torch.int32), 0), ValueError, "nbits"),
    (lambda: bk.to_bitplanes(torch.zeros(2, 3, dtype=torch.int32), 17), ValueError, "nbits"),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_pack_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------- on every device (CPU, CUDA)
# The op on `device` equals the CPU kernel and the reference exactly, NaN, 0 and -0 included.

PACK_DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
]


def _pack_input(shape, dtype, g):
    if dtype.is_floating_point:
        x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        flat = x.view(-1)
        if flat.numel() > 4:
            flat[0] = float("nan")
            flat[1] = 0.0
            flat[2] = -0.0
            flat[3] = 0.25
        return x
    lo, hi = (0, 255) if dtype == torch.uint8 else (-100, 100)
    return torch.randint(lo, hi, shape, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", PACK_DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 33), (2, 5, 64), (7, 100), (4, 1000), (0, 40)])
def test_pack_bits_on_device(device, dtype, shape):
    g = gen(1)
    x = _pack_input(shape, dtype, g)
    for thr in [0.0, 0.25, 0.1, -3]:
        same(bk.pack_bits(x.to(device), thr), bk.pack_bits(x, thr), device)
        same(bk.pack_bits(x.to(device), thr), R.pack_bits(x, thr), device)
    t = torch.randn(shape[-1], generator=g, dtype=torch.float64)
    same(bk.pack_bits(x.to(device), t.to(device)), bk.pack_bits(x, t), device)
    same(bk.pack_bits(x.to(device), t.to(device).float()), R.pack_bits(x, t.float()), device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int32])
def test_pack_bits_non_contiguous_on_device(device, dtype):
    g = gen(2)
    x = _pack_input((70, 45), dtype, g).t()  # [45, 70], transposed storage
    assert not x.is_contiguous()
    same(bk.pack_bits(x.to(device), 0.0), R.pack_bits(x, 0.0), device)
    xs = _pack_input((8, 200), dtype, g)[:, ::3]
    same(bk.pack_bits(xs.to(device), 0.0), R.pack_bits(xs, 0.0), device)


@pytest.mark.parametrize(
    "dtype",
    [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.int16, torch.int32, torch.int64],
)
@pytest.mark.parametrize("k", [1, 31, 32, 33, 100, 1000])
def test_unpack_bits_on_device(device, dtype, k):
    bits = random_bits(3, 4, k=k, dirty=True, gen=gen(3))
    same(bk.unpack_bits(bits.to(device), k, dtype), bk.unpack_bits(bits, k, dtype), device)
    same(bk.unpack_bits(bits.to(device), k, dtype), R.unpack_bits(bits, k, dtype), device)
    same(bk.unpack_bits(bits[:0].to(device), k, dtype), bk.unpack_bits(bits[:0], k, dtype), device)


@pytest.mark.parametrize("nbits,signed", [(1, False), (2, True), (4, False), (8, True), (8, False), (16, True)])
@pytest.mark.parametrize("shape", [(5, 33), (2, 3, 100), (1, 1), (0, 7)])
def test_to_bitplanes_on_device(device, nbits, signed, shape):
    lo, hi = (-(2 ** (nbits - 1)), 2 ** (nbits - 1)) if signed else (0, 2**nbits)
    q = torch.randint(lo, hi, shape, generator=gen(4))
    for dt in [torch.int64, torch.int32, torch.int16]:
        if nbits == 16 and not signed and dt == torch.int16:
            continue
        qq = q.to(dt)
        same(bk.to_bitplanes(qq.to(device), nbits, signed), bk.to_bitplanes(qq, nbits, signed), device)
        same(bk.to_bitplanes(qq.to(device), nbits, signed), R.to_bitplanes(qq, nbits, signed), device)


def test_to_bitplanes_out_of_range_on_device(device):
    """The same ValueError (first line) as the CPU kernel, naming the first bad flat index."""
    q = torch.zeros(4, 50, dtype=torch.int64)
    q[2, 7] = 300
    q[3, 1] = -5
    with pytest.raises(ValueError) as cpu_err:
        bk.to_bitplanes(q, 8, False)
    with pytest.raises(ValueError) as dev_err:
        bk.to_bitplanes(q.to(device), 8, False)
    assert str(dev_err.value).splitlines()[0] == str(cpu_err.value).splitlines()[0]
    assert "flat index 107" in str(dev_err.value)


@pytest.mark.parametrize("case", ["pack_bits", "pack_bits_channel", "unpack_bits", "to_bitplanes"])
def test_opcheck_on_device(device, case):
    g = gen(14)
    a = random_bits(20, k=300, gen=g).to(device)
    x = torch.randn(4, 70, generator=g).to(device)
    args = {  # built here: collection must not touch the GPU
        "pack_bits": (x, 0.0, None),
        "pack_bits_channel": (x, 0.0, torch.zeros(70, device=device)),
        "unpack_bits": (a, 300, torch.float16),
        "to_bitplanes": (torch.randint(0, 16, (3, 40), generator=g).to(device), 4, False),
    }[case]
    torch.library.opcheck(getattr(torch.ops.bnn_kernels, case.removesuffix("_channel")).default, args)
