"""CUDA kernels against the CPU kernels and the reference, exactly.

Every test is marked `cuda` and skipped unless a GPU is visible and the CUDA kernels were
built. Each GEMM-backed op runs under every forced path (BNN_KERNELS_CUDA_GEMM_PATH=
auto|mma|popc|gemv; binary_weight_linear: BNN_KERNELS_CUDA_LINEAR_PATH=auto|gemv|tiled).
"""
from __future__ import annotations

import itertools
import random

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as ref
from tests.helpers import fma_exposing_case, fused

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not (torch.cuda.is_available() and bk.cuda_built()),
        reason="needs a CUDA GPU and bnn_kernels built with CUDA kernels",
    ),
]

GEMM_PATHS = ["auto", "mma", "popc", "gemv"]
LINEAR_PATHS = ["auto", "gemv", "tiled"]
DEV = "cuda"


@pytest.fixture(params=GEMM_PATHS)
def gemm_path(request, monkeypatch):
    monkeypatch.setenv("BNN_KERNELS_CUDA_GEMM_PATH", request.param)
    return request.param


@pytest.fixture(params=LINEAR_PATHS)
def linear_path(request, monkeypatch):
    monkeypatch.setenv("BNN_KERNELS_CUDA_LINEAR_PATH", request.param)
    return request.param


def rand_bits(*shape, k: int, dirty: bool = False, gen=None) -> torch.Tensor:
    """Random packed rows of k bits; dirty=True leaves random bits in the tail."""
    w = (k + 31) // 32
    t = torch.randint(-(2**31), 2**31, (*shape, w), dtype=torch.int64, generator=gen).to(torch.int32)
    if not dirty and k % 32:
        t[..., -1] &= (1 << (k % 32)) - 1
    return t


def same(cuda_out: torch.Tensor, cpu_out: torch.Tensor):
    assert cuda_out.device.type == "cuda"
    assert cuda_out.dtype == cpu_out.dtype
    assert cuda_out.shape == cpu_out.shape
    assert cuda_out.stride() == cpu_out.stride()
    torch.testing.assert_close(cuda_out.cpu(), cpu_out, rtol=0, atol=0, equal_nan=True)


# ---------------------------------------------------------------- packing

PACK_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8, torch.int16,
               torch.int32, torch.int64]


def _pack_input(shape, dtype, gen):
    if dtype.is_floating_point:
        x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        flat = x.view(-1)
        if flat.numel() > 4:
            flat[0] = float("nan")
            flat[1] = 0.0
            flat[2] = -0.0
            flat[3] = 0.25
        return x
    lo, hi = (0, 255) if dtype == torch.uint8 else (-100, 100)
    return torch.randint(lo, hi, shape, generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", PACK_DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 33), (2, 5, 64), (7, 100), (4, 1000), (0, 40)])
def test_pack_bits(dtype, shape):
    gen = torch.Generator().manual_seed(1)
    x = _pack_input(shape, dtype, gen)
    for thr in [0.0, 0.25, 0.1, -3]:
        same(bk.pack_bits(x.to(DEV), thr), bk.pack_bits(x, thr))
        same(bk.pack_bits(x.to(DEV), thr), ref.pack_bits(x, thr))
    t = torch.randn(shape[-1], generator=gen, dtype=torch.float64)
    same(bk.pack_bits(x.to(DEV), t.to(DEV)), bk.pack_bits(x, t))
    same(bk.pack_bits(x.to(DEV), t.to(DEV).float()), ref.pack_bits(x, t.float()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int32])
def test_pack_bits_non_contiguous(dtype):
    gen = torch.Generator().manual_seed(2)
    x = _pack_input((70, 45), dtype, gen).t()  # [45, 70], transposed storage
    assert not x.is_contiguous()
    same(bk.pack_bits(x.to(DEV), 0.0), bk.pack_bits(x, 0.0))
    xs = _pack_input((8, 200), dtype, gen)[:, ::3]
    same(bk.pack_bits(xs.to(DEV), 0.0), bk.pack_bits(xs, 0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8,
                                   torch.int16, torch.int32, torch.int64])
@pytest.mark.parametrize("k", [1, 31, 32, 33, 100, 1000])
def test_unpack_bits(dtype, k):
    gen = torch.Generator().manual_seed(3)
    bits = rand_bits(3, 4, k=k, dirty=True, gen=gen)
    same(bk.unpack_bits(bits.to(DEV), k, dtype), bk.unpack_bits(bits, k, dtype))
    same(bk.unpack_bits(bits.to(DEV), k, dtype), ref.unpack_bits(bits, k, dtype))
    same(bk.unpack_bits(bits[:0].to(DEV), k, dtype), bk.unpack_bits(bits[:0], k, dtype))


@pytest.mark.parametrize("nbits,signed", [(1, False), (2, True), (4, False), (8, True), (8, False), (16, True)])
@pytest.mark.parametrize("shape", [(5, 33), (2, 3, 100), (1, 1), (0, 7)])
def test_to_bitplanes(nbits, signed, shape):
    gen = torch.Generator().manual_seed(4)
    lo, hi = (-(2 ** (nbits - 1)), 2 ** (nbits - 1)) if signed else (0, 2**nbits)
    q = torch.randint(lo, hi, shape, generator=gen)
    for dt in [torch.int64, torch.int32, torch.int16]:
        if nbits == 16 and not signed and dt == torch.int16:
            continue
        qq = q.to(dt)
        same(bk.to_bitplanes(qq.to(DEV), nbits, signed), bk.to_bitplanes(qq, nbits, signed))
        same(bk.to_bitplanes(qq.to(DEV), nbits, signed), ref.to_bitplanes(qq, nbits, signed))


def test_to_bitplanes_out_of_range_matches_cpu():
    q = torch.zeros(4, 50, dtype=torch.int64)
    q[2, 7] = 300
    q[3, 1] = -5
    with pytest.raises(ValueError) as cpu_err:
        bk.to_bitplanes(q, 8, False)
    with pytest.raises(ValueError) as cuda_err:
        bk.to_bitplanes(q.to(DEV), 8, False)
    assert str(cuda_err.value).splitlines()[0] == str(cpu_err.value).splitlines()[0]
    assert "flat index 107" in str(cuda_err.value)


# ---------------------------------------------------------------- xnor_gemm

GEMM_SHAPES = [(1, 1, 1), (5, 7, 33), (8, 300, 1000), (9, 64, 256), (33, 40, 64), (130, 129, 1025),
               (257, 300, 4100), (64, 64, 32 * 40 + 7), (200, 3, 2048), (128, 128, 1024), (300, 257, 96)]


@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
@pytest.mark.parametrize("dirty", [False, True])
def test_xnor_gemm(gemm_path, m, n, k, dirty):
    gen = torch.Generator().manual_seed(m * 1000 + n + k)
    a = rand_bits(m, k=k, dirty=dirty, gen=gen)
    b = rand_bits(n, k=k, dirty=dirty, gen=gen)
    out = bk.xnor_gemm(a.to(DEV), b.to(DEV), k)
    same(out, bk.xnor_gemm(a, b, k))
    if not dirty and m * n * k < 5e7:
        same(out, ref.xnor_gemm(a, b, k))


def test_xnor_gemm_large(gemm_path):
    gen = torch.Generator().manual_seed(5)
    m, n, k = 1031, 2049, 8192 + 96
    a, b = rand_bits(m, k=k, gen=gen), rand_bits(n, k=k, gen=gen)
    same(bk.xnor_gemm(a.to(DEV), b.to(DEV), k), bk.xnor_gemm(a, b, k))


def test_xnor_gemm_non_contiguous_and_empty(gemm_path):
    gen = torch.Generator().manual_seed(6)
    k = 200
    big = rand_bits(50, k=32 * 20, gen=gen)
    a = big[:, 3 : 3 + (k + 31) // 32]  # row stride 20 words
    b = rand_bits(70, k=k, gen=gen).t().contiguous().t()
    assert not a.is_contiguous()
    same(bk.xnor_gemm(a.to(DEV), b.to(DEV), k), bk.xnor_gemm(a, b, k))
    e = bk.xnor_gemm(a[:0].to(DEV), b.to(DEV), k)
    assert e.shape == (0, 70) and e.device.type == "cuda"


def test_xnor_gemm_non_default_stream(gemm_path):
    gen = torch.Generator().manual_seed(7)
    a, b = rand_bits(300, k=999, gen=gen), rand_bits(200, k=999, gen=gen)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = bk.xnor_gemm(a.to(DEV), b.to(DEV), 999)
    s.synchronize()
    same(out, bk.xnor_gemm(a, b, 999))


def test_bad_path_env(monkeypatch):
    monkeypatch.setenv("BNN_KERNELS_CUDA_GEMM_PATH", "nope")
    a = rand_bits(2, k=40).to(DEV)
    with pytest.raises(ValueError, match="BNN_KERNELS_CUDA_GEMM_PATH"):
        bk.xnor_gemm(a, a, 40)


# ---------------------------------------------------------------- binary_conv2d

def _conv_cases(n_cases: int, seed: int):
    rnd = random.Random(seed)
    grid = list(itertools.product(
        [3, 32, 40, 64, 100],                 # channels
        [(1, 1), (3, 3), (2, 3)],             # kernel
        [1, 2, 4],                            # groups
        [(1, 1), (2, 3)],                     # stride
        [(1, 1), (3, 2)],                     # dilation
        [(0, 0), (1, 1), (2, 1)],             # padding
        [0, 1, -1],                           # pad_value
    ))
    cases = [c for c in grid if c[0] % c[2] == 0]
    rnd.shuffle(cases)
    return cases[:n_cases]


@pytest.mark.parametrize("c,kernel,groups,stride,dilation,padding,pad_value", _conv_cases(60, 0))
def test_binary_conv2d(gemm_path, c, kernel, groups, stride, dilation, padding, pad_value):
    gen = torch.Generator().manual_seed(c + 7 * groups + 13 * pad_value)
    n, h, w, o = 2, 11, 9, 4 * groups
    kh, kw = kernel
    if (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) < 0 or (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) < 0:
        pytest.skip("kernel larger than the padded input")
    x = rand_bits(n, h, w, k=c, gen=gen)
    wt = rand_bits(o, kh, kw, k=c // groups, dirty=True, gen=gen)
    args = (c, stride, padding, dilation, groups, pad_value)
    out = bk.binary_conv2d(x.to(DEV), wt.to(DEV), *args)
    cpu = bk.binary_conv2d(x, wt, *args)
    assert out.is_contiguous(memory_format=torch.channels_last)
    same(out, cpu)
    wclean = wt.clone()
    if (c // groups) % 32:
        wclean[..., -1] &= (1 << ((c // groups) % 32)) - 1
    same(out, ref.binary_conv2d(x, wclean, *args).contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("c,groups", [(64, 64), (96, 3), (512, 1), (33, 1)])
def test_binary_conv2d_shapes(gemm_path, c, groups):
    gen = torch.Generator().manual_seed(c + groups)
    x = rand_bits(3, 14, 14, k=c, gen=gen)
    wt = rand_bits(2 * groups if groups > 1 else 70, 3, 3, k=c // groups, gen=gen)
    for pad_value in (0, 1, -1):
        args = (c, 1, 1, 1, groups, pad_value)
        same(bk.binary_conv2d(x.to(DEV), wt.to(DEV), *args), bk.binary_conv2d(x, wt, *args))


def test_binary_conv2d_non_contiguous_and_empty(gemm_path):
    gen = torch.Generator().manual_seed(9)
    x = rand_bits(2, 8, 8, k=64, gen=gen).permute(0, 2, 1, 3)  # not contiguous
    wt = rand_bits(16, 3, 3, k=64, gen=gen)
    same(bk.binary_conv2d(x.to(DEV), wt.to(DEV), 64, 1, 1), bk.binary_conv2d(x, wt, 64, 1, 1))
    e = bk.binary_conv2d(x[:0].to(DEV), wt.to(DEV), 64, 1, 1)
    same(e, bk.binary_conv2d(x[:0], wt, 64, 1, 1))


def test_binary_conv2d_large():
    gen = torch.Generator().manual_seed(10)
    x = rand_bits(8, 56, 56, k=256, gen=gen)
    wt = rand_bits(256, 3, 3, k=256, gen=gen)
    same(bk.binary_conv2d(x.to(DEV), wt.to(DEV), 256, 1, 1), bk.binary_conv2d(x, wt, 256, 1, 1))


# ---------------------------------------------------------------- bitserial_gemm

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
def test_bitserial_gemm(gemm_path, case, reduce):
    p, q, m, n, k, ac, wc, ao, wo = case
    gen = torch.Generator().manual_seed(p * 100 + m)
    a = rand_bits(p, m, k=k, dirty=True, gen=gen)
    w = rand_bits(q, n, k=k, dirty=True, gen=gen)
    out = bk.bitserial_gemm(a.to(DEV), w.to(DEV), k, ac, wc, ao, wo, reduce)
    same(out, bk.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce))
    if k % 32 == 0:
        same(out, ref.bitserial_gemm(a, w, k, ac, wc, ao, wo, reduce))


def test_bitserial_gemm_empty():
    a = rand_bits(2, 0, k=64).to(DEV)
    w = rand_bits(1, 5, k=64).to(DEV)
    out = bk.bitserial_gemm(a, w, 64, [1, 2], [1])
    assert out.shape == (0, 5)


# ---------------------------------------------------------------- binary_weight_linear

LINEAR_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", LINEAR_DTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 33, 31), (3, 70, 100), (8, 64, 4096), (9, 40, 1024),
                                   (100, 130, 257), (1, 300, 4100), (2, 5, 32 * 128 * 2 + 64)])
@pytest.mark.parametrize("affine", [False, True])
def test_binary_weight_linear_exact(linear_path, dtype, m, n, k, affine):
    """Small-integer inputs: every sum is exact in float32, so CUDA == CPU bit for bit."""
    gen = torch.Generator().manual_seed(m + n + k)
    x = torch.randint(-4, 5, (m, k), generator=gen).to(dtype)
    w = rand_bits(n, k=k, dirty=True, gen=gen)
    scale = torch.randint(1, 5, (n,), generator=gen).float() * 0.5 if affine else None
    bias = torch.randint(-3, 4, (n,), generator=gen).float() if affine else None
    d = lambda t: None if t is None else t.to(DEV)  # noqa: E731
    out = bk.binary_weight_linear(x.to(DEV), w.to(DEV), k, d(scale), d(bias))
    same(out, bk.binary_weight_linear(x, w, k, scale, bias))


@pytest.mark.parametrize("dtype", LINEAR_DTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 64, 1000), (5, 17, 333), (64, 96, 2048)])
def test_binary_weight_linear_random(linear_path, dtype, m, n, k):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, m, k, generator=gen).to(dtype)
    w = rand_bits(n, k=k, gen=gen)
    scale, bias = torch.rand(n, generator=gen) + 0.5, torch.randn(n, generator=gen)
    out = bk.binary_weight_linear(x.to(DEV), w.to(DEV), k, scale.to(DEV), bias.to(DEV))
    expect = ref.binary_weight_linear(x, w, k, scale, bias)
    assert out.dtype == dtype and out.shape == expect.shape
    tol = {torch.float32: 1e-4, torch.float64: 1e-10, torch.float16: 2e-2, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(out.cpu().double(), expect.double(), rtol=tol, atol=tol * k**0.5)


def test_binary_weight_linear_non_contiguous_and_empty(linear_path):
    gen = torch.Generator().manual_seed(12)
    x = torch.randint(-3, 4, (300, 6), generator=gen).float().t()  # [6, 300], not contiguous
    w = rand_bits(20, k=300, gen=gen)
    same(bk.binary_weight_linear(x.to(DEV), w.to(DEV), 300), bk.binary_weight_linear(x, w, 300))
    e = bk.binary_weight_linear(x[:0].to(DEV), w.to(DEV), 300)
    assert e.shape == (0, 20) and e.device.type == "cuda"


def test_binary_weight_linear_large_gemv():
    gen = torch.Generator().manual_seed(13)
    k, n = 16384, 4096
    x = torch.randint(-2, 3, (1, k), generator=gen).float()
    w = rand_bits(n, k=k, gen=gen)
    same(bk.binary_weight_linear(x.to(DEV), w.to(DEV), k), bk.binary_weight_linear(x, w, k))


@pytest.mark.parametrize("dtype", LINEAR_DTYPES)
def test_binary_weight_linear_epilogue_not_fused(linear_path, dtype):
    """Inputs where an FMA in the epilogue would round differently: CUDA == CPU bit for bit."""
    x, w, scale, bias, dot, acc = fma_exposing_case(dtype, seed=15, m=9)  # 9 rows: GEMV and tiled
    assert (fused(dot, scale, bias, acc).to(dtype)[0, 0::2] != (dot.to(acc) * scale + bias).to(dtype)[0, 0::2]).any()
    k = x.shape[1]
    same(bk.binary_weight_linear(x.to(DEV), w.to(DEV), k, scale.to(DEV), bias.to(DEV)),
         bk.binary_weight_linear(x, w, k, scale, bias))


# ---------------------------------------------------------------- opcheck / compile

def _opcheck_samples() -> dict:
    gen = torch.Generator().manual_seed(14)
    a, b = rand_bits(20, k=300, gen=gen).to(DEV), rand_bits(30, k=300, gen=gen).to(DEV)
    x = torch.randn(4, 70, generator=gen).to(DEV)
    return {
        "pack_bits": (x, 0.0, None),
        "pack_bits_channel": (x, 0.0, torch.zeros(70, device=DEV)),
        "unpack_bits": (a, 300, torch.float16),
        "to_bitplanes": (torch.randint(0, 16, (3, 40), generator=gen).to(DEV), 4, False),
        "xnor_gemm": (a, b, 300),
        "binary_conv2d": (rand_bits(2, 6, 6, k=40, gen=gen).to(DEV), rand_bits(8, 3, 3, k=20, gen=gen).to(DEV), 40,
                          [1, 1], [1, 1], [1, 1], 2, 0),
        "bitserial_gemm": (torch.stack([a, a]), b.unsqueeze(0), 300, [1, 2], [1], 0, 0, True),
        "binary_weight_linear": (torch.randn(3, 300, generator=gen).to(DEV), b, 300, None, None),
    }


OPCHECK_CASES = ["pack_bits", "pack_bits_channel", "unpack_bits", "to_bitplanes", "xnor_gemm", "binary_conv2d",
                 "bitserial_gemm", "binary_weight_linear"]


@pytest.mark.parametrize("case", OPCHECK_CASES)
def test_opcheck_cuda(case):
    args = _opcheck_samples()[case]  # built here: collection must not touch the GPU
    op = case.removesuffix("_channel")
    torch.library.opcheck(getattr(torch.ops.bnn_kernels, op).default, args)


def test_compile_fullgraph_cuda():
    gen = torch.Generator().manual_seed(15)
    x = torch.randn(16, 96, generator=gen).to(DEV)
    w = rand_bits(24, k=96, gen=gen).to(DEV)

    def f(x, w):
        return bk.xnor_gemm(bk.pack_bits(x), w, 96)

    out = torch.compile(f, fullgraph=True)(x, w)
    same(out, bk.xnor_gemm(bk.pack_bits(x.cpu()), w.cpu(), 96))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device():
    gen = torch.Generator().manual_seed(16)
    a, b = rand_bits(100, k=500, gen=gen), rand_bits(90, k=500, gen=gen)
    out = bk.xnor_gemm(a.to("cuda:1"), b.to("cuda:1"), 500)
    assert out.device == torch.device("cuda:1")
    torch.testing.assert_close(out.cpu(), bk.xnor_gemm(a, b, 500), rtol=0, atol=0)
