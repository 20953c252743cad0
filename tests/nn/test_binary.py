"""BinaryLinear / BinaryConv2d against float64 references (integer part exact)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_kernels.nn import BinaryConv2d, BinaryLinear
from tests.helpers import conv_id, pm1, random_conv_configs, ref_conv

CONFIGS = random_conv_configs(16, seed=1)


@pytest.mark.parametrize("cfg", CONFIGS, ids=conv_id)
@pytest.mark.parametrize("pad_value", [0, 1, -1])
def test_binary_conv2d_matches_float(cfg, pad_value):
    torch.manual_seed(hash(conv_id(cfg)) % 1000)
    conv = nn.Conv2d(cfg["cin"], cfg["cout"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    x = torch.randn(cfg["n"], cfg["cin"], cfg["h"], cfg["w"])
    t = torch.randn(cfg["cin"]) * 0.3
    mult, bias = torch.randn(cfg["cout"]), torch.randn(cfg["cout"])
    m = BinaryConv2d.from_weight(
        conv.weight,
        bias,
        stride=cfg["stride"],
        padding=cfg["padding"],
        dilation=cfg["dilation"],
        groups=cfg["groups"],
        multiplier=mult,
        threshold=t,
        pad_value=pad_value,
    )
    want = ref_conv(
        pm1(x, t), pm1(conv.weight), cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"], pad_value
    )
    got_int = m.int_forward(x)
    assert got_int.dtype == torch.int32
    assert torch.equal(got_int.double(), want)
    y = m(x)
    assert y.dtype == torch.float32 and y.is_contiguous()
    torch.testing.assert_close(
        y.double(), want * mult.double().view(1, -1, 1, 1) + bias.double().view(1, -1, 1, 1), rtol=1e-6, atol=1e-5
    )


def test_binary_conv2d_from_float_mean_abs_and_scaled_input():
    torch.manual_seed(0)
    conv = nn.Conv2d(40, 16, 3, padding=1)
    x = torch.randn(2, 40, 7, 9)
    m = BinaryConv2d.from_float(conv, scale="mean_abs", input_threshold=0.2, input_scale=0.5)
    alpha = conv.weight.abs().mean((1, 2, 3), keepdim=True)
    want = F.conv2d(0.5 * pm1(x, 0.2).float(), pm1(conv.weight).float() * alpha, conv.bias, padding=1)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)


def test_binary_conv2d_channels_last_and_out_dtype():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 4, 3, bias=False)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    m = BinaryConv2d.from_float(conv, out_dtype=torch.float64)
    y = m(x)
    assert y.dtype == torch.float64 and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, ref_conv(pm1(x), pm1(conv.weight)))
    assert BinaryConv2d.from_float(conv, out_dtype=torch.bfloat16)(x).dtype == torch.bfloat16


@pytest.mark.parametrize("k,n,shape", [(1, 1, (1,)), (31, 5, (3,)), (64, 7, (2, 3)), (100, 33, (4,))])
def test_binary_linear_matches_float(k, n, shape):
    torch.manual_seed(k)
    w = torch.randn(n, k)
    x = torch.randn(*shape, k)
    t, mult, bias = torch.randn(k) * 0.2, torch.randn(n), torch.randn(n)
    m = BinaryLinear.from_weight(w, bias, multiplier=mult, threshold=t)
    want = pm1(x, t, -1) @ pm1(w).T
    assert m.int_forward(x).shape == (*shape, n)
    assert torch.equal(m.int_forward(x).double(), want)
    torch.testing.assert_close(m(x).double(), want * mult.double() + bias.double(), rtol=1e-6, atol=1e-5)


def test_binary_linear_from_float():
    torch.manual_seed(0)
    lin = nn.Linear(70, 9)
    x = torch.randn(5, 70)
    m = BinaryLinear.from_float(lin, scale="mean_abs")
    want = F.linear(pm1(x).float(), pm1(lin.weight).float() * lin.weight.abs().mean(1, keepdim=True), lin.bias)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)


def test_repr_deepcopy_and_buffers():
    m = BinaryConv2d(40, 16, 3, stride=2, padding=1, groups=2)
    r = repr(m)
    for s in ("in_channels=40", "out_channels=16", "kernel_size=(3, 3)", "stride=(2, 2)", "groups=2", "pad_value=0"):
        assert s in r
    assert dict(m.named_buffers()).keys() == {"weight_bits", "threshold", "multiplier", "bias"}
    assert m.weight_bits.shape == (16, 3, 3, 1) and m.weight_bits.dtype == torch.int32
    assert list(m.parameters()) == []
    torch.manual_seed(0)
    m = BinaryLinear.from_weight(torch.randn(4, 50), torch.randn(4))
    c = copy.deepcopy(m)
    x = torch.randn(3, 50)
    assert torch.equal(c(x), m(x)) and c.weight_bits.data_ptr() != m.weight_bits.data_ptr()
    assert "in_features=50" in repr(m) and "out_features=4" in repr(m)


def test_bad_inputs():
    m = BinaryConv2d(8, 4, 3)
    with pytest.raises(ValueError, match="8 features in dim 1"):
        m(torch.randn(1, 7, 5, 5))
    with pytest.raises(ValueError, match="must have 4 dims"):
        m(torch.randn(8, 5, 5))
    with pytest.raises(ValueError, match="pad_value"):
        BinaryConv2d(8, 4, 3, pad_value=2)
    with pytest.raises(ValueError, match="groups=3"):
        BinaryConv2d(8, 4, 3, groups=3)
    with pytest.raises(ValueError, match="out_dtype"):
        BinaryLinear(8, 4, out_dtype="int8")
    with pytest.raises(ValueError, match="threshold"):
        BinaryLinear.from_weight(torch.randn(4, 8), threshold=torch.zeros(7))
    with pytest.raises(ValueError, match="12 features"):
        BinaryLinear(12, 4)(torch.randn(2, 11))
    with pytest.raises(ValueError, match="string padding"):
        BinaryConv2d.from_float(nn.Conv2d(4, 4, 3, padding="same"))
