"""Edges of the packed modules that the per-module tests leave open: the float64 epilogue's
precision, residuals of other float dtypes, from_float's input scale and dtype, on random
shapes and fresh inputs (integer parts exact against float64 references)."""

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_kernels.nn import BinaryConv2d, BinaryLinear, BitSplitLinear
from tests.helpers import gen, pm1, ref_conv


def full_mantissa(n, g):
    """float32 values whose products and sums round in float32 (no short mantissas)."""
    return (torch.rand(n, generator=g, dtype=torch.float64) * 3 + 0.1).float()


@pytest.mark.parametrize("seed", range(3))
def test_float64_output_keeps_the_float64_epilogue(seed):
    """out_dtype float64: float(acc) * multiplier + bias in float64, not rounded to float32 on the way."""
    rng, g = random.Random(seed), gen(seed)
    k, n = rng.randint(33, 200), rng.randint(3, 40)
    w, x = torch.randn(n, k, generator=g), torch.randn(rng.randint(1, 5), k, generator=g)
    mult, bias = full_mantissa(n, g), full_mantissa(n, g)
    m = BinaryLinear.from_weight(w, bias, multiplier=mult, out_dtype=torch.float64)
    acc = pm1(x, 0.0, -1) @ pm1(w).T
    want = acc * mult.double() + bias.double()
    y = m(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, want, rtol=1e-13, atol=1e-13)
    geo = dict(padding=rng.choice([0, 1]), stride=rng.choice([1, 2]))
    c = rng.choice([3, 33, 40])
    wc, xc = torch.randn(n, c, 3, 3, generator=g), torch.randn(2, c, 6, 7, generator=g)
    mc = BinaryConv2d.from_weight(wc, bias, multiplier=mult, out_dtype=torch.float64, **geo)
    want = ref_conv(pm1(xc), pm1(wc), geo["stride"], geo["padding"])
    want = want * mult.double().view(1, -1, 1, 1) + bias.double().view(1, -1, 1, 1)
    torch.testing.assert_close(mc(xc), want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_residual_of_another_float_dtype_is_added_in_float32(dtype):
    """A residual of any float dtype gives what its float32 copy gives (the epilogue adds in float32)."""
    rng, g = random.Random(str(dtype)), gen(7)
    k, n = rng.randint(33, 130), rng.randint(3, 40)
    lin = BinaryLinear.from_weight(torch.randn(n, k, generator=g), multiplier=full_mantissa(n, g))
    x = torch.randn(4, k, generator=g)
    r = torch.randn(4, n, generator=g).to(dtype)
    assert torch.equal(lin(x, r), lin(x, r.float()))
    c = rng.choice([5, 40])
    conv = BinaryConv2d.from_weight(torch.randn(n, c, 3, 3, generator=g), padding=1)
    xc = torch.randn(2, c, 5, 6, generator=g)
    rc = torch.randn(2, n, 5, 6, generator=g).to(dtype)
    assert torch.equal(conv(xc, rc), conv(xc, rc.float()))


@pytest.mark.parametrize("seed", range(3))
def test_binary_linear_from_float_input_scale_and_threshold(seed):
    rng, g = random.Random(seed), gen(seed)
    k, n = rng.randint(20, 150), rng.randint(2, 30)
    lin = nn.Linear(k, n)
    x = torch.randn(rng.randint(1, 6), k, generator=g)
    t, s = rng.uniform(-0.5, 0.5), rng.choice([0.25, 0.5, 3.0])
    m = BinaryLinear.from_float(lin, scale="mean_abs", input_threshold=t, input_scale=s)
    alpha = lin.weight.detach().abs().mean(1, keepdim=True)
    want = F.linear(s * pm1(x, t).float(), pm1(lin.weight).float() * alpha, lin.bias)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_binary_linear_from_float_keeps_the_layer_dtype(dtype):
    lin = nn.Linear(40, 6).to(dtype)
    m = BinaryLinear.from_float(lin)
    assert m.out_dtype == dtype
    assert m(torch.randn(3, 40, dtype=dtype)).dtype == dtype
    assert BinaryLinear.from_float(lin, out_dtype=torch.float32).out_dtype == torch.float32


@pytest.mark.parametrize("plane_values", ["01", "pm1"])
@pytest.mark.parametrize("reduce", [False, True])
@pytest.mark.parametrize("seed", range(2))
def test_bitsplit_linear_from_float_every_path(seed, plane_values, reduce):
    """Each path's float result (coefs, scale, the layer bias on path 0 only), kept apart or summed."""
    rng, g = random.Random(seed), gen(seed)
    k, n, p = rng.randint(10, 120), rng.randint(2, 20), rng.randint(2, 4)
    lin = nn.Linear(k, n)
    x = torch.randn(rng.randint(1, 4), k, generator=g)
    th = torch.randn(p, k, generator=g) * 0.3
    coefs = [rng.choice([0.5, 1.0, 2.0, -1.0]) for _ in range(p)]
    m = BitSplitLinear.from_float(lin, th, plane_values=plane_values, coefs=coefs, scale="mean_abs", reduce=reduce)
    w = pm1(lin.weight) * lin.weight.detach().double().abs().mean(1, keepdim=True)
    paths = []
    for i in range(p):
        b = (x >= th[i]).double() if plane_values == "01" else pm1(x, th[i], -1)
        paths.append(coefs[i] * (b @ w.T) + (lin.bias.detach().double() if i == 0 else 0))
    want = sum(paths) if reduce else torch.stack(paths)
    torch.testing.assert_close(m(x).double(), want, rtol=1e-5, atol=1e-5)
