"""padding_mode 'reflect' / 'replicate' / 'circular' in BinaryConv2d, BinaryWeightConv2d and
BitSerialConv2d: the input padded in that mode, as nn.Conv2d does, then the kernel with
padding 0. Integer parts exact against F.pad + F.conv2d in float64; real-input results within
float rounding; every module on fresh random geometries."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_kernels.nn import BinaryConv2d, BinaryWeightConv2d, BitSerialConv2d, BitSplitConv2d
from tests.helpers import pm1

MODES = ["reflect", "replicate", "circular"]
GEOMETRIES = [
    dict(cin=6, cout=4, k=(3, 3), stride=1, padding=1, dilation=1, groups=1),
    dict(cin=40, cout=6, k=(3, 2), stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2),
    dict(cin=33, cout=3, k=(1, 3), stride=1, padding=(0, 2), dilation=1, groups=3),
]


def _ref_conv(x, w, g, mode):
    """float64 nn.Conv2d semantics: F.pad in mode, then F.conv2d with padding 0."""
    ph, pw = (g["padding"],) * 2 if isinstance(g["padding"], int) else g["padding"]
    xp = F.pad(x.double(), (pw, pw, ph, ph), mode=mode)
    return F.conv2d(xp, w.double(), None, g["stride"], 0, g["dilation"], g["groups"])


def _weight(g, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(g["cout"], g["cin"] // g["groups"], *g["k"], generator=gen)


def _x(g, seed, n=2, h=7, w=8):
    return torch.randn(n, g["cin"], h, w, generator=torch.Generator().manual_seed(seed))


def _geo(g):
    return dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("g", GEOMETRIES)
@pytest.mark.parametrize("ternary", [False, True])
def test_binary_conv2d(mode, g, ternary):
    w = _weight(g, 1)
    if ternary:
        w[w.abs() < 0.4] = 0
    t = torch.randn(g["cin"]) * 0.1
    m = BinaryConv2d.from_weight(w, threshold=t, ternary=ternary, padding_mode=mode, **_geo(g))
    x = _x(g, 2)
    ws = torch.sign(w).double() if ternary else pm1(w)
    want = _ref_conv(pm1(x, t), ws, g, mode)
    assert torch.equal(m.int_forward(x).double(), want)
    xc = x.contiguous(memory_format=torch.channels_last)
    y = m(xc)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, m(x))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("g", GEOMETRIES)
@pytest.mark.parametrize("ternary", [False, True])
def test_binary_weight_conv2d(mode, g, ternary):
    w = _weight(g, 3)
    if ternary:
        w[w.abs() < 0.4] = 0
    mult, bias = torch.rand(g["cout"]) + 0.5, torch.randn(g["cout"])
    m = BinaryWeightConv2d.from_weight(w, bias, multiplier=mult, ternary=ternary, padding_mode=mode, **_geo(g))
    x = _x(g, 4)
    ws = torch.sign(w).double() if ternary else pm1(w)
    want = _ref_conv(x, ws * mult.double().view(-1, 1, 1, 1), g, mode) + bias.double().view(-1, 1, 1)
    k = g["k"][0] * g["k"][1] * g["cin"] // g["groups"]
    torch.testing.assert_close(m(x).double(), want, rtol=0, atol=4 * k * 2**-24 * float(want.abs().max() + 10))
    y = m(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("g", GEOMETRIES)
@pytest.mark.parametrize("act,nbits", [("round", 2), ("step", 1)])
def test_bitserial_conv2d(mode, g, act, nbits):
    w = _weight(g, 5)
    m = BitSerialConv2d.from_weight(w, nbits=nbits, act=act, in_mul=3.0, padding_mode=mode, **_geo(g))
    x = _x(g, 6)
    q = torch.clamp(torch.round(x * 3.0), 0, 2**nbits - 1) if act == "round" else (x >= 0).double()
    assert torch.equal(m.int_forward(x).double(), _ref_conv(q, pm1(w), g, mode))


@pytest.mark.parametrize("mode", MODES)
def test_from_float_keeps_the_mode(mode):
    conv = nn.Conv2d(6, 4, 3, padding=(1, 2), padding_mode=mode)
    x = torch.randn(2, 6, 5, 6)
    scale = conv.weight.detach().abs().mean((1, 2, 3))
    float_conv = nn.Conv2d(6, 4, 3, padding=(1, 2), padding_mode=mode)
    with torch.no_grad():
        float_conv.weight.copy_(torch.where(conv.weight >= 0, 1.0, -1.0) * scale.view(-1, 1, 1, 1))
        float_conv.bias.copy_(conv.bias)
        bw = BinaryWeightConv2d.from_float(conv)
        torch.testing.assert_close(bw(x), float_conv(x), rtol=1e-5, atol=1e-5)
        b = BinaryConv2d.from_float(conv, scale="mean_abs")
        torch.testing.assert_close(b(x), float_conv(torch.where(x >= 0, 1.0, -1.0)), rtol=1e-5, atol=1e-5)
        bs = BitSerialConv2d.from_float(conv, nbits=2)
        assert bs.padding_mode == mode
    for mod in (bw, b, bs):
        assert mod.padding_mode == mode and type(mod).from_config(mod.config()).padding_mode == mode


def test_bad_padding_modes():
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        BinaryWeightConv2d(4, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="pad_value=1 needs padding_mode='zeros'"):
        BinaryConv2d(4, 4, 3, padding=1, pad_value=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode='reflect' is not supported"):
        BitSplitConv2d.from_float(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), [0.0])
    with pytest.raises(RuntimeError):  # F.pad: reflect padding must be smaller than the input
        BinaryWeightConv2d(4, 4, 3, padding=3, padding_mode="reflect")(torch.randn(1, 4, 3, 3))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("g", GEOMETRIES)
def test_binary_conv2d_fused_steps_keep_the_mode(mode, g):
    """The fused path (residual, activation, packed output) pads as the plain path does."""
    gen = torch.Generator().manual_seed(7)
    w = _weight(g, 3)
    m = BinaryConv2d.from_weight(
        w,
        torch.randn(g["cout"], generator=gen),
        multiplier=torch.rand(g["cout"], generator=gen) + 0.5,
        padding_mode=mode,
        **_geo(g),
    )
    x = _x(g, 4)
    y0 = m(x)  # multiplier and bias fused; the reference of the steps below
    want_int = _ref_conv(pm1(x), pm1(w), g, mode)
    assert torch.equal(m.int_forward(x).double(), want_int)
    r = torch.randn(y0.shape, generator=gen)
    slope = torch.rand(g["cout"], generator=gen)
    m.set_activation(slope)
    t = y0 + r
    want = torch.where(t > 0, t, slope[None, :, None, None] * t)
    assert torch.equal(m(x, residual=r), want)
    with pytest.raises(ValueError, match="packed input needs padding_mode='zeros'"):
        m(torch.zeros(2, 7, 8, (g["cin"] + 31) // 32, dtype=torch.int32))
