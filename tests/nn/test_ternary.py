"""ternary=True: weights {-a, 0, +a} computed exactly (two binary products), every packed family."""

import pytest
import torch

import bnn_kernels
from bnn_kernels.nn import (
    BinaryConv2d,
    BinaryLinear,
    BinaryWeightConv2d,
    BinaryWeightLinear,
    BitSerialConv2d,
    BitSerialLinear,
)
from tests.helpers import conv_id, pm1, random_conv_configs, ref_conv

CONFIGS = random_conv_configs(8, seed=5)


def _ternary(shape, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g)
    w[torch.rand(*shape, generator=g) < 0.3] = 0.0
    return w


def _geo(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])


@pytest.mark.parametrize("cfg", CONFIGS, ids=conv_id)
def test_ternary_convs_exact(cfg):
    w = _ternary((cfg["cout"], cfg["cin"] // cfg["groups"], *cfg["k"]), cfg["cin"])
    x = torch.randn(cfg["n"], cfg["cin"], cfg["h"], cfg["w"])
    t = torch.randn(cfg["cin"]) * 0.2
    w3 = torch.sign(w).double()
    mult, bias = torch.rand(cfg["cout"]) + 0.5, torch.randn(cfg["cout"])
    m = BinaryConv2d.from_weight(w, bias, threshold=t, multiplier=mult, ternary=True, **_geo(cfg))
    want = ref_conv(pm1(x, t), w3, **_geo(cfg))
    assert torch.equal(m.int_forward(x).double(), want)
    ref = want * mult.double().view(1, -1, 1, 1) + bias.double().view(1, -1, 1, 1)
    torch.testing.assert_close(m(x).double(), ref, rtol=1e-5, atol=1e-4)
    xs = torch.rand_like(x) * 1.2 - 0.1
    for nbits in (1, 3):
        s = BitSerialConv2d.from_weight(
            w, nbits=nbits, act="round", in_mul=float(2**nbits - 1), ternary=True, **_geo(cfg)
        )
        q = torch.round(torch.clamp(xs, 0, 1) * (2**nbits - 1)).double()
        assert torch.equal(s.int_forward(xs).double(), ref_conv(q, w3, **_geo(cfg)))
    bw = BinaryWeightConv2d.from_weight(w, bias, multiplier=mult, ternary=True, **_geo(cfg))
    want = ref_conv(x, w3 * mult.double().view(-1, 1, 1, 1), **_geo(cfg)) + bias.double().view(1, -1, 1, 1)
    torch.testing.assert_close(bw(x).double(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k,n,shape", [(1, 3, (2,)), (33, 5, (3, 2)), (130, 16, (4,))])
def test_ternary_linears_exact(k, n, shape):
    w = _ternary((n, k), k)
    w3 = torch.sign(w).double()
    x = torch.randn(*shape, k)
    m = BinaryLinear.from_weight(w, ternary=True)
    assert torch.equal(m.int_forward(x).double(), pm1(x, 0.0, -1) @ w3.T)
    xs = torch.rand(*shape, k)
    s = BitSerialLinear.from_weight(w, nbits=2, act="round", in_mul=3.0, ternary=True)
    assert torch.equal(s.int_forward(xs).double(), torch.round(xs * 3).double() @ w3.T)
    mult, bias = torch.rand(n) + 0.5, torch.randn(n)
    bw = BinaryWeightLinear.from_weight(w, bias, multiplier=mult, ternary=True)
    want = x.double() @ (w3 * mult.double().view(-1, 1)).T + bias.double()
    torch.testing.assert_close(bw(x).double(), want, rtol=1e-5, atol=1e-4)


def test_ternary_round_trips_through_save_and_load(tmp_path):
    w = _ternary((6, 8, 3, 3), 0)
    m = BinaryConv2d.from_weight(w, padding=1, groups=2, ternary=True)
    model = torch.nn.Sequential(m)
    bnn_kernels.save(model, tmp_path / "t.safetensors")
    back = bnn_kernels.load(tmp_path / "t.safetensors", torch.nn.Sequential(torch.nn.Identity()))
    x = torch.randn(2, 16, 5, 5)
    assert back[0].ternary and torch.equal(back[0].int_forward(x), m.int_forward(x))


def test_ternary_must_be_bool():
    with pytest.raises(TypeError, match="ternary"):
        BinaryLinear(4, 4, ternary=1)
