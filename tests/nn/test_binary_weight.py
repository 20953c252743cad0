"""BinaryWeightLinear / BinaryWeightConv2d (real activations) against the float layer."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_kernels.nn import BinaryWeightConv2d, BinaryWeightLinear
from tests.helpers import conv_id, pm1, random_conv_configs

CONFIGS = random_conv_configs(8, seed=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k,n,shape", [(1, 3, (2,)), (33, 5, (3, 2)), (128, 16, (4,))])
def test_binary_weight_linear(dtype, k, n, shape):
    torch.manual_seed(k)
    lin = nn.Linear(k, n)
    x = torch.randn(*shape, k, dtype=dtype)
    m = BinaryWeightLinear.from_float(lin)
    alpha = lin.weight.detach().abs().mean(1, keepdim=True).double()
    want = F.linear(x.double(), pm1(lin.weight) * alpha, lin.bias.detach().double())
    y = m(x)
    assert y.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y.double(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("cfg", CONFIGS, ids=conv_id)
def test_binary_weight_conv2d(cfg):
    torch.manual_seed(0)
    conv = nn.Conv2d(cfg["cin"], cfg["cout"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    x = torch.randn(cfg["n"], cfg["cin"], cfg["h"], cfg["w"])
    scale = torch.randn(cfg["cout"])
    m = BinaryWeightConv2d.from_float(conv, scale=scale)
    want = F.conv2d(
        x.double(),
        pm1(conv.weight) * scale.double().view(-1, 1, 1, 1),
        conv.bias.detach().double(),
        cfg["stride"],
        cfg["padding"],
        cfg["dilation"],
        cfg["groups"],
    )
    # float32 sums of K = KH * KW * C/groups terms (sequential on the scalar path): error within
    # 3 * K * 2^-24 of sum |x| * |scale| (the binary_weight_conv2d contract), plus the epilogue's
    k = cfg["k"][0] * cfg["k"][1] * cfg["cin"] // cfg["groups"]
    ones = torch.ones(cfg["cout"], cfg["cin"] // cfg["groups"], *cfg["k"], dtype=torch.float64)
    geo = (cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    mag = F.conv2d(x.double().abs(), ones, None, *geo) * scale.double().abs().view(-1, 1, 1)
    tol = 3 * (k + 2) * 2.0**-24 * (mag + want.abs() + conv.bias.detach().double().abs().view(-1, 1, 1))
    assert ((m(x).double() - want).abs() <= tol).all()
    assert torch.equal(m.unpacked_weight(torch.float64), pm1(conv.weight) * scale.double().view(-1, 1, 1, 1))


def test_binary_weight_repr_copy_errors():
    m = BinaryWeightConv2d.from_float(nn.Conv2d(4, 8, 3))
    assert "in_channels=4" in repr(m) and "padding_mode=zeros" in repr(m)
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(copy.deepcopy(m)(x), m(x))
    with pytest.raises(TypeError, match="floating point"):
        m(torch.ones(1, 4, 5, 5, dtype=torch.int32))
    with pytest.raises(ValueError, match="4 features"):
        m(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="features"):
        BinaryWeightLinear(10, 2)(torch.randn(3, 9))
