"""OffsetBinaryConv2d (AdaBin's offset-binary layers) against the float64 layer."""

import pytest
import torch
import torch.nn.functional as F

import bnn_kernels
from bnn_kernels.nn import OffsetBinaryConv2d
from tests.helpers import conv_id, random_conv_configs

CONFIGS = random_conv_configs(8, seed=7)


def _offset_weight(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    o, cg = cfg["cout"], cfg["cin"] // cfg["groups"]
    s = torch.where(torch.rand(o, cg, *cfg["k"], generator=g) < 0.5, 1.0, -1.0)
    alpha, beta = torch.rand(o, generator=g) + 0.2, torch.randn(o, generator=g) * 0.5
    return s, alpha, beta, s * alpha.view(-1, 1, 1, 1) + beta.view(-1, 1, 1, 1)


@pytest.mark.parametrize("cfg", CONFIGS, ids=conv_id)
def test_offset_binary_conv(cfg):
    _, _, _, w = _offset_weight(cfg, cfg["cin"])
    a, b = 1.3, 0.4
    x = torch.randn(cfg["n"], cfg["cin"], cfg["h"], cfg["w"]) + b
    bias = torch.randn(cfg["cout"])
    geo = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    m = OffsetBinaryConv2d.from_weight(w, bias, act_scale=a, act_offset=b, **geo)
    s_a = torch.where(x >= b, 1.0, -1.0).double()
    mid = (w.amax((1, 2, 3)) + w.amin((1, 2, 3))).view(-1, 1, 1, 1) / 2  # a constant channel has s_w = +1
    s_w = torch.where(w >= mid, 1.0, -1.0)
    assert torch.equal(m.int_forward(x).double(), F.conv2d(s_a, s_w.double(), None, **geo))
    want = F.conv2d(s_a * a + b, w.double(), bias.double(), **geo)
    got = m(x)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    assert got.is_contiguous()
    xcl = x.contiguous(memory_format=torch.channels_last)
    if not xcl.is_contiguous():  # (with one channel both formats are the same)
        assert m(xcl).is_contiguous(memory_format=torch.channels_last)


def test_offset_binary_round_trip(tmp_path):
    cfg = CONFIGS[0]
    _, _, _, w = _offset_weight(cfg, 0)
    m = OffsetBinaryConv2d.from_weight(w, act_scale=0.7, act_offset=-0.1, padding=1, groups=cfg["groups"])
    bnn_kernels.save(torch.nn.Sequential(m), tmp_path / "o.safetensors")
    back = bnn_kernels.load(tmp_path / "o.safetensors", torch.nn.Sequential(torch.nn.Identity()))
    x = torch.randn(2, cfg["cin"], 6, 6)
    assert torch.equal(back[0](x), m(x))
