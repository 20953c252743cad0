"""BitSerial* (k-bit activations) and BitSplit* (one path per bit) against float64 references."""

import copy

import pytest
import torch
from torch import nn

from bnn_kernels.nn import BitSerialConv2d, BitSerialLinear, BitSplitConv2d, BitSplitLinear
from tests.helpers import conv_id, pm1, random_conv_configs, ref_conv

CONFIGS = random_conv_configs(10, seed=2)


def dorefa(x, nbits):
    n = 2**nbits - 1
    return torch.round(torch.clamp(x, 0, 1) * n).double()  # the integer q


@pytest.mark.parametrize("cfg", CONFIGS, ids=conv_id)
@pytest.mark.parametrize("nbits", [1, 2, 3, 4])
def test_bitserial_conv2d_round(cfg, nbits):
    torch.manual_seed(nbits)
    conv = nn.Conv2d(cfg["cin"], cfg["cout"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    x = torch.rand(cfg["n"], cfg["cin"], cfg["h"], cfg["w"]) * 1.4 - 0.2
    m = BitSerialConv2d.from_float(conv, nbits=nbits, scale="mean_abs")
    q = dorefa(x, nbits)
    want = ref_conv(q, pm1(conv.weight), cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    assert torch.equal(m.int_forward(x).double(), want)
    n = 2**nbits - 1
    alpha = conv.weight.detach().abs().mean((1, 2, 3)).double()
    ref = want * (alpha / n).view(1, -1, 1, 1) + conv.bias.detach().double().view(1, -1, 1, 1)
    torch.testing.assert_close(m(x).double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS[:5], ids=conv_id)
def test_bitserial_conv2d_step(cfg):
    torch.manual_seed(0)
    conv = nn.Conv2d(cfg["cin"], cfg["cout"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    x = torch.randn(cfg["n"], cfg["cin"], cfg["h"], cfg["w"])
    t = torch.randn(cfg["cin"]) * 0.3
    m = BitSerialConv2d.from_weight(
        conv.weight,
        stride=cfg["stride"],
        padding=cfg["padding"],
        dilation=cfg["dilation"],
        groups=cfg["groups"],
        nbits=1,
        act="step",
        threshold=t,
    )
    b = (x >= t.view(1, -1, 1, 1)).double()
    want = ref_conv(b, pm1(conv.weight), cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    assert torch.equal(m.int_forward(x).double(), want)


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("k,shape", [(5, (3,)), (64, (2, 3)), (129, (4,))])
def test_bitserial_linear(nbits, k, shape):
    torch.manual_seed(k)
    lin = nn.Linear(k, 6)
    x = torch.rand(*shape, k) * 1.2 - 0.1
    m = BitSerialLinear.from_float(lin, nbits=nbits)
    want = dorefa(x, nbits) @ pm1(lin.weight).T
    assert torch.equal(m.int_forward(x).double(), want)
    n = 2**nbits - 1
    torch.testing.assert_close(m(x).double(), want / n + lin.bias.detach().double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS[:6], ids=conv_id)
@pytest.mark.parametrize("plane_values", ["01", "pm1"])
@pytest.mark.parametrize("reduce", [False, True])
def test_bitsplit_conv2d(cfg, plane_values, reduce):
    torch.manual_seed(1)
    conv = nn.Conv2d(cfg["cin"], cfg["cout"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    x = torch.randn(cfg["n"], cfg["cin"], cfg["h"], cfg["w"])
    th = torch.tensor([-0.5, 0.0, 0.7])
    coefs = [0.5, 1.0, 2.0]
    m = BitSplitConv2d.from_float(conv, th, plane_values=plane_values, coefs=coefs, reduce=reduce)
    refs = []
    for p in range(3):
        b = (x >= th[p]).double() if plane_values == "01" else pm1(x, float(th[p]))
        yi = ref_conv(b, pm1(conv.weight), cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
        refs.append(yi)
    assert torch.equal(m.int_forward(x).double(), torch.stack(refs))
    paths = [coefs[p] * refs[p] + (conv.bias.detach().double().view(1, -1, 1, 1) if p == 0 else 0) for p in range(3)]
    want = sum(paths) if reduce else torch.stack(paths)
    torch.testing.assert_close(m(x).double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("plane_values", ["01", "pm1"])
def test_bitsplit_linear(plane_values):
    torch.manual_seed(2)
    lin = nn.Linear(45, 7)
    x = torch.randn(2, 3, 45)
    th = torch.randn(2, 45) * 0.3
    m = BitSplitLinear.from_float(lin, th, plane_values=plane_values)
    refs = []
    for p in range(2):
        b = (x >= th[p]).double() if plane_values == "01" else pm1(x, th[p], -1)
        refs.append(b @ pm1(lin.weight).T)
    assert torch.equal(m.int_forward(x).double(), torch.stack(refs))
    assert m(x).shape == (2, 2, 3, 7)


def test_bitserial_repr_copy_and_errors():
    m = BitSerialConv2d(8, 4, 3, nbits=3)
    assert "nbits=3" in repr(m) and "act=round" in repr(m)
    assert torch.equal(copy.deepcopy(m).weight_bits, m.weight_bits)
    with pytest.raises(ValueError, match="nbits must be 1"):
        BitSerialConv2d(8, 4, 3, nbits=2, act="step")
    with pytest.raises(ValueError, match="act must be one of"):
        BitSerialLinear(8, 4, act="sign")
    with pytest.raises(ValueError, match=r"nbits must be in \[1, 8\]"):
        BitSerialLinear(8, 4, nbits=9)
    with pytest.raises(ValueError, match="plane_values"):
        BitSplitConv2d(8, 4, 3, plane_values="bits")
    with pytest.raises(ValueError, match="thresholds"):
        BitSplitLinear.from_float(nn.Linear(8, 4), torch.zeros(2, 7))
    with pytest.raises(ValueError, match="8 features"):
        m(torch.randn(1, 3, 5, 5))
