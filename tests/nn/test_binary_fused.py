"""BinaryLinear / BinaryConv2d with the fused epilogue: each fusion (multiplier and bias,
residual, PReLU / RPReLU, packed output for the next binary layer) equals the unfused module
sequence bit for bit in float32, on fresh random inputs; the new buffers survive state_dict
and safetensors round trips."""

import pytest
import torch
import torch.nn.functional as F

import bnn_kernels as bk
from bnn_kernels.nn import BinaryConv2d, BinaryLinear
from tests.helpers import gen
from tests.helpers import same_bits as same

# ---------------------------------------------------------------- builders


def linear(seed, in_f=75, out_f=70, **kw):
    g = gen(seed)
    w = torch.randn(out_f, in_f, generator=g)
    return BinaryLinear.from_weight(
        w,
        torch.randn(out_f, generator=g),
        multiplier=torch.rand(out_f, generator=g) * 0.1 + 0.01,
        threshold=torch.randn(in_f, generator=g) * 0.1,
        **kw,
    )


def conv(seed, cin=40, cout=37, k=3, **kw):
    g = gen(seed)
    geo = dict(stride=kw.pop("stride", 1), padding=kw.pop("padding", 1), groups=kw.pop("groups", 1))
    w = torch.randn(cout, cin // geo["groups"], k, k, generator=g)
    return BinaryConv2d.from_weight(
        w,
        torch.randn(cout, generator=g),
        multiplier=torch.rand(cout, generator=g) * 0.1 + 0.01,
        threshold=torch.randn(cin, generator=g) * 0.1,
        **geo,
        **kw,
    )


def unfused_affine(m, x, channel_dim):
    """float32(int result) * multiplier + bias, two torch ops (two roundings)."""
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    y = m.int_forward(x).float()
    return y * m.multiplier.view(shape) + m.bias.view(shape)


def unfused_act(y, slope, shift_in=None, shift_out=None):
    """PReLU (channels in dim 1) with the RPReLU shifts, as torch modules compute it."""
    t = y + shift_in.view(1, -1, *([1] * (y.dim() - 2))) if shift_in is not None else y
    t = F.prelu(t, slope)
    return t + shift_out.view(1, -1, *([1] * (y.dim() - 2))) if shift_out is not None else t


def channels(n, seed, scale=1.0):
    return torch.randn(n, generator=gen(seed)) * scale


# ---------------------------------------------------------------- multiplier and bias


@pytest.mark.parametrize("seed", range(4))
def test_linear_affine_fused_equals_unfused(seed):
    m = linear(seed)
    x = torch.randn(3, 5, 75, generator=gen(100 + seed))
    y = m(x)
    assert y.dtype == torch.float32 and y.shape == (3, 5, 70)
    same(y, unfused_affine(m, x, -1))


@pytest.mark.parametrize("seed", range(4))
def test_conv_affine_fused_equals_unfused(seed):
    m = conv(seed, 40, 36, groups=[1, 4][seed % 2], stride=1 + seed // 2)
    x = torch.randn(2, 40, 6, 7, generator=gen(200 + seed))
    same(m(x), unfused_affine(m, x, 1).contiguous())
    xl = x.contiguous(memory_format=torch.channels_last)
    same(m(xl), unfused_affine(m, x, 1).contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_outputs_round_once(dtype):
    m = linear(5, out_dtype=dtype)
    x = torch.randn(4, 75, generator=gen(5))
    same(m(x), unfused_affine(m, x, -1).to(dtype))


# ---------------------------------------------------------------- residual and activations


@pytest.mark.parametrize("seed", range(3))
def test_linear_residual_and_rprelu(seed):
    m = linear(seed)
    plain = linear(seed)
    x = torch.randn(6, 75, generator=gen(300 + seed))
    r = torch.randn(6, 70, generator=gen(400 + seed))
    same(m(x, r), plain(x) + r)
    slope, si, so = channels(70, 1) * 0.2, channels(70, 2), channels(70, 3)
    for args in [(slope,), (slope, si), (slope, None, so), (slope, si, so)]:
        m.set_activation(*args)
        same(m(x, r), unfused_act(plain(x) + r, *args))
        same(m(x), unfused_act(plain(x), *args))
    m.set_activation(None)
    assert m.fused == () and not hasattr(m, "act_slope")
    same(m(x), plain(x))


@pytest.mark.parametrize("seed", range(3))
def test_conv_residual_and_rprelu(seed):
    m, plain = conv(seed, stride=2), conv(seed, stride=2)
    x = torch.randn(2, 40, 9, 8, generator=gen(500 + seed))
    r = torch.randn(2, 37, 5, 4, generator=gen(600 + seed))
    same(m(x, r), plain(x) + r)
    m.set_activation(channels(37, 4) * 0.1, channels(37, 5), channels(37, 6))
    want = unfused_act(plain(x) + r, m.act_slope, m.act_shift_in, m.act_shift_out)
    same(m(x, r), want)
    same(m(x, r.contiguous(memory_format=torch.channels_last)), want)


# ---------------------------------------------------------------- packed output chains


def test_linear_chain_passes_packed_bits():
    """Layer 1 with an out_threshold feeds layer 2 packed bits: equal to layer 2 on layer 1's
    float output binarized by the same thresholds."""
    l1, l2 = linear(7, 75, 70), linear(8, 70, 33)
    x = torch.randn(5, 75, generator=gen(7))
    y1 = l1(x)
    t = channels(70, 9)
    l1.set_out_threshold(t)
    bits = l1(x)
    assert bits.dtype == torch.int32 and bits.shape == (5, 3)
    same(bits, bk.pack_bits(y1, t))
    l2.threshold.copy_(t)
    same(l2(bits), l2(y1))


def test_conv_chain_passes_packed_bits():
    c1, c2 = conv(10, 40, 37), conv(11, 37, 20)
    x = torch.randn(2, 40, 6, 6, generator=gen(10))
    r = torch.randn(2, 37, 6, 6, generator=gen(11))
    c1.set_activation(channels(37, 12) * 0.2, channels(37, 13))
    y1 = c1(x, r)
    t = channels(37, 14)
    c1.set_out_threshold(t)
    bits = c1(x, r)
    assert bits.shape == (2, 6, 6, 2)
    same(bits, bk.pack_bits(y1.permute(0, 2, 3, 1), t))
    c2.threshold.copy_(t)
    out = c2(bits)
    assert out.is_contiguous(memory_format=torch.channels_last)
    same(out, c2(y1).contiguous(memory_format=torch.channels_last))


# ---------------------------------------------------------------- saving and errors


def test_fused_buffers_round_trip(tmp_path):
    m = conv(20)
    m.set_activation(channels(37, 21), None, channels(37, 22)).set_out_threshold(channels(37, 23))
    assert m.fused == ("act_slope", "act_shift_out", "out_threshold")
    x = torch.randn(1, 40, 5, 5, generator=gen(24))
    want = m(x)
    fresh = BinaryConv2d.from_config(m.config())
    fresh.load_state_dict(m.state_dict())
    same(fresh(x), want)
    model = torch.nn.Sequential(m)
    bk.save(model, tmp_path / "m.safetensors")
    loaded = bk.load(tmp_path / "m.safetensors", torch.nn.Sequential(conv(99)))
    same(loaded[0](x), want)
    assert loaded[0].config()["fused"] == ["act_slope", "act_shift_out", "out_threshold"]


def test_fused_steps_need_the_fused_epilogue():
    t = linear(30, ternary=True)
    with pytest.raises(ValueError, match="ternary"):
        t.set_activation(0.25)
    with pytest.raises(ValueError, match="residual"):
        t(torch.randn(2, 75), torch.zeros(2, 70))
    d = linear(31, out_dtype=torch.float64)
    with pytest.raises(ValueError, match="float64"):
        d.set_out_threshold(0.0)
    m = linear(32)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        m(torch.randn(2, 75), torch.zeros(2, 71))
    with pytest.raises(ValueError, match="packed input must have 3"):
        m(torch.zeros(2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="need a slope"):
        m.set_activation(None, 1.0)
    with pytest.raises(ValueError, match="fused must list"):
        BinaryLinear(8, 4, fused=["bias"])
    with pytest.raises(ValueError, match="need act_slope"):
        BinaryLinear(8, 4, fused=["act_shift_in"])
