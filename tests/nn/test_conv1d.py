"""The 1-D packed convs (nn/conv1d.py) against F.conv1d in float64 on randomized geometries: odd
lengths, channel counts that are not multiples of 32, kernel, stride, dilation, padding and
groups drawn per case, every family; integer parts exact."""

import copy
import json
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bnn_kernels
from bnn_kernels import ops, reference
from bnn_kernels.nn import (
    BinaryConv1d,
    BinaryWeightConv1d,
    BitSerialConv1d,
    BitSplitConv1d,
    OffsetBinaryConv1d,
)
from tests.helpers import pm1, random_bits


def configs(n: int, seed: int):
    """n random 1-D geometries; stride, padding and dilation differ from each other often, so a
    value taken from the wrong argument (or the height axis) shows."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        groups = rng.choice([1, 1, 2, 3])
        k = rng.choice([1, 2, 3, 5])
        d = rng.choice([1, 2, 3])
        p = rng.choice([0, 1, 2, 3])
        s = rng.choice([1, 2, 3])
        length = rng.randint(max(1, d * (k - 1) + 1 - 2 * p), 23) | 1  # odd
        length = max(length, d * (k - 1) + 1 - 2 * p)
        cin = rng.choice([1, 3, 31, 33, 40]) * groups
        out.append(dict(cin=cin, cout=rng.choice([1, 5, 8]) * groups, k=k, stride=s, padding=p, dilation=d,
                        groups=groups, n=rng.randint(1, 3), length=length))  # fmt: skip
    return out


def cid(c):
    return f"c{c['cin']}o{c['cout']}k{c['k']}s{c['stride']}p{c['padding']}d{c['dilation']}g{c['groups']}L{c['length']}"


CONFIGS = configs(12, seed=11)


def geo(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])


def ref1d(x, w, cfg, pad_value=0):
    """float64 F.conv1d, padded with pad_value (+-1) instead of zeros when given."""
    g = geo(cfg)
    if pad_value:
        x = F.pad(x.double(), (cfg["padding"],) * 2, value=float(pad_value))
        g["padding"] = 0
    return F.conv1d(x.double(), w.double(), None, **g)


def case(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(cfg["cout"], cfg["cin"] // cfg["groups"], cfg["k"], generator=g)
    x = torch.randn(cfg["n"], cfg["cin"], cfg["length"], generator=g)
    return w, x, torch.randn(cfg["cin"], generator=g) * 0.3, torch.randn(cfg["cout"], generator=g)


def check_out(y, want, rtol=1e-6, atol=1e-5):
    assert y.shape == want.shape and y.is_contiguous()
    torch.testing.assert_close(y.double(), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("cfg", CONFIGS, ids=cid)
@pytest.mark.parametrize("pad_value,ternary", [(0, False), (1, False), (-1, False), (0, True)])
def test_binary_conv1d(cfg, pad_value, ternary):
    w, x, t, mult = case(cfg, cfg["cin"] + pad_value)
    if ternary:
        w = torch.where(w.abs() < 0.4, 0.0, torch.sign(w))
    bias = -mult.flip(0)
    m = BinaryConv1d.from_weight(
        w, bias, **geo(cfg), multiplier=mult, threshold=t, pad_value=pad_value, ternary=ternary
    )
    want = ref1d(pm1(x, t), torch.sign(w) if ternary else pm1(w), cfg, pad_value)
    assert torch.equal(m.int_forward(x).double(), want) and m.int_forward(x).dtype == torch.int32
    check_out(m(x), want * mult.double().view(1, -1, 1) + bias.double().view(1, -1, 1))
    xt = x.transpose(1, 2).contiguous().transpose(1, 2)  # (N, L, C) storage: F.conv1d's output is contiguous
    assert torch.equal(m(xt), m(x)) and m(xt).is_contiguous()


@pytest.mark.parametrize("cfg", CONFIGS[:6], ids=cid)
def test_binary_conv1d_from_float(cfg):
    w, x, _, _ = case(cfg, 3)
    conv = nn.Conv1d(cfg["cin"], cfg["cout"], cfg["k"], **geo(cfg))
    m = BinaryConv1d.from_float(conv, scale="mean_abs", input_threshold=0.2, input_scale=0.5)
    alpha = conv.weight.detach().abs().mean((1, 2), keepdim=True).double()
    want = F.conv1d(0.5 * pm1(x, 0.2), pm1(conv.weight) * alpha, conv.bias.double(), **geo(cfg))
    check_out(m(x), want, 1e-5, 1e-5)
    assert m.kernel_size == (1, cfg["k"]) and m.config()["kernel_size"] == [cfg["k"]]


@pytest.mark.parametrize("cfg", CONFIGS[:8], ids=cid)
@pytest.mark.parametrize("ternary", [False, True])
def test_binary_weight_conv1d(cfg, ternary):
    w, x, _, mult = case(cfg, 5)
    if ternary:
        w = torch.where(w.abs() < 0.4, 0.0, torch.sign(w))
    bias = mult.flip(0)
    m = BinaryWeightConv1d.from_weight(w, bias, **geo(cfg), multiplier=mult, ternary=ternary)
    wq = (torch.sign(w) if ternary else pm1(w)) * mult.double().view(-1, 1, 1)
    check_out(m(x), F.conv1d(x.double(), wq, bias.double(), **geo(cfg)), 1e-5, 1e-4)
    xt = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert torch.equal(m(xt), m(x)) and m(xt).is_contiguous()
    assert torch.equal(m.unpacked_weight(torch.float64), wq)


@pytest.mark.parametrize("cfg", CONFIGS[:8], ids=cid)
@pytest.mark.parametrize("nbits", [1, 3])
def test_bitserial_conv1d(cfg, nbits):
    w, x, t, mult = case(cfg, nbits)
    conv = nn.Conv1d(cfg["cin"], cfg["cout"], cfg["k"], **geo(cfg))
    conv.weight.data.copy_(w)
    xr = x.abs() * 0.6
    m = BitSerialConv1d.from_float(conv, nbits=nbits)
    q = torch.clamp(torch.round(xr * (2**nbits - 1)), 0, 2**nbits - 1)
    want = ref1d(q, pm1(w), cfg)
    assert torch.equal(m.int_forward(xr).double(), want)
    check_out(m(xr), want / (2**nbits - 1) + conv.bias.double().view(1, -1, 1), 1e-5, 1e-5)
    step = BitSerialConv1d.from_weight(w, **geo(cfg), nbits=1, act="step", threshold=t, ternary=nbits == 3)
    wt = torch.sign(w) if nbits == 3 else pm1(w)
    assert torch.equal(step.int_forward(x).double(), ref1d((x >= t.view(1, -1, 1)).double(), wt, cfg))


@pytest.mark.parametrize("cfg", CONFIGS[:6], ids=cid)
@pytest.mark.parametrize("plane_values,reduce", [("01", False), ("pm1", True)])
def test_bitsplit_conv1d(cfg, plane_values, reduce):
    w, x, _, _ = case(cfg, 7)
    conv = nn.Conv1d(cfg["cin"], cfg["cout"], cfg["k"], **geo(cfg))
    conv.weight.data.copy_(w)
    ths, coefs = [-0.3, 0.4], [1.0, 2.0]
    m = BitSplitConv1d.from_float(conv, ths, plane_values=plane_values, coefs=coefs, reduce=reduce)
    planes = [(x >= th).double() if plane_values == "01" else pm1(x, th) for th in ths]
    ints = torch.stack([ref1d(p, pm1(w), cfg) for p in planes])
    assert torch.equal(m.int_forward(x).double(), ints)
    paths = ints * torch.tensor(coefs, dtype=torch.float64).view(2, 1, 1, 1)
    paths[0] += conv.bias.double().view(1, -1, 1)
    want = paths.sum(0) if reduce else paths
    torch.testing.assert_close(m(x).double(), want, rtol=1e-5, atol=1e-5)
    assert m(x).shape == want.shape


@pytest.mark.parametrize("cfg", CONFIGS[:6], ids=cid)
def test_offset_binary_conv1d(cfg):
    g = torch.Generator().manual_seed(cfg["cin"])
    o, cg = cfg["cout"], cfg["cin"] // cfg["groups"]
    s_w = torch.where(torch.rand(o, cg, cfg["k"], generator=g) < 0.5, 1.0, -1.0)
    alpha, beta = torch.rand(o, generator=g) + 0.2, torch.randn(o, generator=g) * 0.5
    w = s_w * alpha.view(-1, 1, 1) + beta.view(-1, 1, 1)
    a, b = 1.3, 0.4
    x = torch.randn(cfg["n"], cfg["cin"], cfg["length"], generator=g) + b
    bias = torch.randn(o, generator=g)
    m = OffsetBinaryConv1d.from_weight(w, bias, act_scale=a, act_offset=b, **geo(cfg))
    s_a = torch.where(x >= b, 1.0, -1.0).double()
    mid = (w.amax((1, 2)) + w.amin((1, 2))).view(-1, 1, 1) / 2
    assert torch.equal(m.int_forward(x).double(), ref1d(s_a, torch.where(w >= mid, 1.0, -1.0), cfg))
    assert m.window_terms(x).shape == (4, *m.int_forward(x).shape)
    check_out(m(x), F.conv1d(s_a * a + b, w.double(), bias.double(), **geo(cfg)), 1e-5, 1e-4)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("cls", [BinaryConv1d, BinaryWeightConv1d, BitSerialConv1d])
def test_padding_modes_as_nn_conv1d(mode, cls):
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 5, 3, stride=2, padding=2, dilation=2, padding_mode=mode)
    x = torch.rand(2, 6, 13)
    with torch.no_grad():
        conv.weight.copy_(torch.sign(conv.weight))
        m = cls.from_float(conv, scale=None) if cls is not BitSerialConv1d else cls.from_float(conv, nbits=2)
        xin = x if cls is BinaryWeightConv1d else (torch.sign(x - 0.5) if cls is BinaryConv1d else x)
        if cls is BitSerialConv1d:
            xin = torch.round(x * 3) / 3
        want = conv.double()(xin.double())
    assert m.config()["padding_mode"] == mode
    torch.testing.assert_close(m(x if cls is not BinaryConv1d else x - 0.5).double(), want, rtol=1e-5, atol=1e-5)


def test_packed_chain_residual_and_activation():
    """set_out_threshold gives packed bits [N, L, words] that the next BinaryConv1d takes as they
    are; residual (N, O, L) and PReLU run in the fused epilogue."""
    torch.manual_seed(0)
    a = BinaryConv1d.from_weight(torch.randn(40, 33, 3), torch.randn(40), padding=1, multiplier=torch.rand(40))
    b = BinaryConv1d.from_weight(torch.randn(7, 40, 5), torch.randn(7), padding=2, dilation=1)
    x, t = torch.randn(2, 33, 17), torch.randn(40) * 0.1
    y = a(x)
    a.set_out_threshold(t)
    bits = a(x)
    assert bits.dtype == torch.int32 and bits.shape == (2, 17, 2)
    assert torch.equal(bits, ops.pack_bits(y.transpose(1, 2), t))
    assert torch.equal(b(bits), b(y - t.view(1, -1, 1)))
    a.set_out_threshold(None).set_activation(0.25)
    r = torch.randn(2, 40, 17)
    z = a(x, r)
    want = y + r
    torch.testing.assert_close(z, torch.where(want > 0, want, 0.25 * want), rtol=0, atol=1e-6)
    assert torch.equal(a(x, residual=r), z)


def test_kernel_height_one_geometry_matches_reference():
    """binary_conv2d with kernel (1, k), stride (1, s), padding (0, p), dilation (1, d) and groups,
    as the 1-D modules call it, against bnn_kernels.reference."""
    rng = random.Random(5)
    for i in range(8):
        cg, groups, k = rng.choice([3, 33, 64]), rng.choice([1, 2]), rng.choice([1, 3, 4])
        length, s, p, d = rng.randint(9, 21), rng.choice([1, 2, 3]), rng.choice([0, 2]), rng.choice([1, 2])
        x = random_bits(2, 1, length, k=cg * groups, seed=i)
        w = random_bits(4 * groups, 1, k, k=cg, seed=100 + i)
        args = (cg * groups, (1, s), (0, p), (1, d), groups, rng.choice([0, 1, -1]))
        got = ops.binary_conv2d(x, w, *args)
        assert torch.equal(got, reference.binary_conv2d(x, w, *args))


def packed_1d_modules():
    """(module, input) of every 1-D family (also used by tests/test_serialization.py)."""
    g = torch.Generator().manual_seed(3)
    conv = nn.Conv1d(36, 9, 3, stride=2, padding=1, dilation=2, groups=3, padding_mode="circular")
    zconv = nn.Conv1d(36, 9, 3, stride=2, padding=1, dilation=2, groups=3)
    w = torch.where(torch.rand(8, 6, 5, generator=g) < 0.5, 0.7, -0.3)
    x = torch.randn(2, 36, 15, generator=g)
    return [
        (BinaryConv1d.from_float(conv, scale="mean_abs", input_threshold=torch.randn(36, generator=g)), x),
        (BinaryConv1d.from_weight(torch.randn(9, 12, 3, generator=g), ternary=True, groups=3).set_out_threshold(None), x),
        (BinaryWeightConv1d.from_float(conv), x),
        (BitSerialConv1d.from_float(conv, nbits=3), x.abs()),
        (BitSplitConv1d.from_float(zconv, [0.0, 0.5]), x),
        (OffsetBinaryConv1d.from_weight(w, torch.randn(8, generator=g), act_scale=1.3, act_offset=0.4, padding=2), x[:, :6]),
    ]  # fmt: skip


@pytest.mark.parametrize("i", range(6))
def test_config_state_dict_save_load(i, tmp_path):
    m, x = packed_1d_modules()[i]
    cfg = m.config()
    assert json.loads(json.dumps(cfg)) == cfg and cfg["kernel_size"] == [m.kernel_size[1]]
    fresh = type(m).from_config(cfg)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh(x), m(x)) and torch.equal(copy.deepcopy(m)(x), m(x))
    assert f"kernel_size=({m.kernel_size[1]},)" in repr(m)
    bnn_kernels.save(nn.Sequential(m), tmp_path / "m.safetensors")
    back = bnn_kernels.load(tmp_path / "m.safetensors", nn.Sequential(nn.Identity()))
    assert type(back[0]) is type(m) and torch.equal(back[0](x), m(x))


BAD = [
    (lambda: BinaryConv1d(8, 4, 3)(torch.randn(8, 5)), ValueError, "BinaryConv1d: input must have 3 dims"),
    (lambda: BinaryConv1d(8, 4, 3)(torch.randn(1, 8, 1, 5)), ValueError, "input must have 3 dims"),
    (lambda: BitSplitConv1d(8, 4, 3)(torch.randn(1, 8, 1, 5)), ValueError, "BitSplitConv1d: input must have 3"),
    (lambda: BinaryConv1d(8, 4, 3)(torch.randn(1, 7, 9)), ValueError, "8 features in dim 1"),
    (lambda: BinaryWeightConv1d(8, 4, 3)(torch.randn(1, 7, 9)), ValueError, "8 features in dim 1"),
    (lambda: BinaryConv1d(8, 4, 3)("x"), TypeError, "input must be a tensor"),
    (lambda: BinaryConv1d(8, 4, 3)(torch.zeros(1, 1, 5, 1, dtype=torch.int32)), ValueError, "packed input must be int32 \\[N, L, 1\\]"),
    (lambda: BinaryConv1d(8, 4, 3)(torch.randn(1, 8, 9), torch.randn(1, 4, 1, 7)), ValueError, "residual must have the output's shape \\(N, O, Lout\\)"),
    (lambda: BinaryConv1d(8, 4, (1, 3)), ValueError, "kernel_size must be an int or a tuple of one int"),
    (lambda: BinaryConv1d(8, 4, 3, stride=True), TypeError, "stride must be an int"),
    (lambda: BinaryConv1d(8, 4, 3, padding=1.0), TypeError, "padding must be an int"),
    (lambda: BinaryConv1d(8, 4, 3, dilation=0), ValueError, "dilation must be >= 1"),
    (lambda: BinaryConv1d(8, 4, 3, groups=3), ValueError, "groups=3"),
    (lambda: BinaryConv1d.from_weight(torch.randn(4, 8, 1, 3)), ValueError, "weight must be a 3-D tensor"),
    (lambda: BinaryConv1d.from_float(nn.Conv2d(4, 4, 3)), TypeError, "conv must be an nn.Conv1d"),
    (lambda: BinaryConv1d.from_float(nn.Conv1d(4, 4, 3, padding="same")), ValueError, "string padding"),
    (lambda: BitSplitConv1d.from_float(nn.Conv1d(4, 4, 3, padding_mode="reflect"), [0.0]), ValueError, "padding_mode='reflect' is not supported"),
    (lambda: BitSplitConv1d.from_weight(torch.randn(4, 4, 3)), AttributeError, "BitSplitConv1d has no from_weight"),
]  # fmt: skip


@pytest.mark.parametrize("fn,exc,msg", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_inputs(fn, exc, msg):
    with pytest.raises(exc, match=msg):
        fn()


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = BinaryConv1d.from_weight(torch.randn(16, 10, 3), torch.randn(16), padding=1).set_activation(0.1)
        self.b = BinaryWeightConv1d.from_weight(torch.randn(8, 16, 3), stride=2, padding_mode="reflect", padding=1)
        self.c = BitSerialConv1d.from_weight(torch.randn(8, 8, 1), nbits=2, in_mul=3.0)

    def forward(self, x):
        y = self.a(x, x[:, :1].expand(-1, 16, -1))
        return self.c(torch.relu(self.b(y)))


def test_torch_compile_fullgraph_and_export():
    torch._dynamo.reset()
    net, x = _Net().eval(), torch.randn(3, 10, 13)
    with torch.no_grad():
        eager = net(x)
        compiled = torch.compile(net, fullgraph=True, backend="aot_eager")(x)
        torch.testing.assert_close(compiled, eager, rtol=0, atol=0)
        ep = torch.export.export(net, (x,))
        assert "bnn_kernels.binary_conv2d.default" in {str(n.target) for n in ep.graph.nodes}
        x2 = torch.randn(3, 10, 13)
        torch.testing.assert_close(ep.module()(x2), net(x2), rtol=0, atol=0)


def test_bnn_kernels_compile_with_fusion():
    """bnn_kernels.compile (Inductor and its fusion pass) on a model holding 1-D modules: equal to
    eager; the unsqueeze / squeeze views around the ops do not break the pass."""
    torch._dynamo.reset()
    net, x = _Net().eval(), torch.randn(2, 10, 11)
    fusion = bnn_kernels.FusionPass()
    compiled = bnn_kernels.compile(net, fuse=fusion, options={"fx_graph_cache": False})
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-5, atol=1e-5)
    assert fusion.reports
