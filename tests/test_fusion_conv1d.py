"""bnn_kernels.fusion through the views of the 1-D convs (bnn_kernels.nn.conv1d): the conv2d
output of height 1 squeezed to (N, O, L), the next layer's input unsqueezed back to
(N, C, 1, L) before its pack_bits. Each chain fused is bit-identical to the unfused graph on
fresh inputs; squeezes the epilogue cannot follow are left alone with the reason."""

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels.nn import BinaryConv1d, BinaryConv2d
from tests.test_fusion import fuse_checked, only_op, targets
from tests.test_fusion_dual import DUALS
from tests.test_fusion_dual import fuse_checked as fuse_checked_outputs

ops = torch.ops.bnn_kernels
aten = torch.ops.aten


class Case1d:
    """Packed (N, 1, L, words) input, [O, 1, 3, words] weights, per-channel vectors of odd sizes."""

    def __init__(self, rng, o=None):
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        self.c, self.o = rng.randrange(20, 90), o or rng.randrange(3, 70)
        self.n, self.length = rng.randrange(1, 4), rng.randrange(3, 12)
        self.x = bk.pack_bits(torch.randn(self.n, 1, self.length, self.c, generator=g))
        self.wt = bk.pack_bits(torch.randn(self.o, 1, 3, self.c, generator=g))
        self.vec = lambda scale=1.0: (torch.randn(self.o, generator=g) * scale).contiguous()
        self.res = torch.randn(self.n, self.o, self.length, generator=g)
        self.m, self.b, self.slope = self.vec(0.3).abs() + 0.01, self.vec(), self.vec(0.5)
        self.s_in, self.s_out, self.thr = self.vec(), self.vec(), self.vec(3)

    def acc(self, x, w):
        return ops.binary_conv2d(x, w, self.c, [1, 1], [0, 1]).float()


def _ch(v):
    return v.view(1, -1, 1)


@pytest.mark.parametrize("squeeze", ["dim", "dims", "negative"])
def test_full_chain_through_squeeze_into_bits(rng, squeeze):
    t = Case1d(rng)

    def f(x, w, m, b, r, slope, s_in, s_out, thr):
        y = t.acc(x, w)
        y = {"dim": lambda: y.squeeze(2), "dims": lambda: y.squeeze([2]), "negative": lambda: y.squeeze(-2)}[squeeze]()
        y = y * _ch(m) + _ch(b) + r
        u = y - _ch(s_in)
        y = torch.where(u > 0, u, _ch(slope) * u) + _ch(s_out)
        return ops.pack_bits(y.unsqueeze(2).permute(0, 2, 3, 1), 0.0, thr)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m, t.b, t.res, t.slope, t.s_in, t.s_out, t.thr)
    assert len(only_op(rep)["fused"]) == 7, str(rep)
    assert ops.pack_bits.default not in targets(gm)


def test_float_output_squeezed_back(rng):
    """A chain ending in the 1-D float value: the fused op's output is squeezed as the graph was."""
    t = Case1d(rng)

    def f(x, w, m, b, r, slope):
        y = t.acc(x, w).squeeze(2) * _ch(m) + _ch(b)
        return torch.nn.functional.prelu(y + r, slope)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m, t.b, t.res, t.slope)
    assert only_op(rep)["fused"] == ["multiplier", "bias", "residual", "act_slope"], str(rep)


def test_permuted_after_squeeze_residual_in_op_layout(rng):
    """squeeze then permute to (N, L, O): the residual, given as (N, L, O), is handed to the op as
    (N, O, 1, L), and the output is permuted and squeezed back."""
    t = Case1d(rng)

    def f(x, w, m, r):
        return t.acc(x, w).squeeze(2).permute(0, 2, 1) * m + r

    rep, _ = fuse_checked(f, t.x, t.wt, t.m, t.res.permute(0, 2, 1).contiguous())
    assert only_op(rep)["fused"] == ["multiplier", "residual"], str(rep)


def test_dual_through_squeeze_and_unsqueeze(rng):
    """A 1-D block output read as float (the next shortcut) and, unsqueezed and permuted, by the
    next layer's pack_bits: the op's dual form, the pack_bits gone."""
    t = Case1d(rng)

    def f(x, w, m, b, r, thr):
        y = t.acc(x, w).squeeze(2) * _ch(m) + _ch(b) + r
        return y * 0.5, ops.pack_bits(y.unsqueeze(2).permute(0, 2, 3, 1), 0.0, thr)

    rep, gm = fuse_checked_outputs(f, t.x, t.wt, t.m, t.b, t.res, t.thr)
    assert only_op(rep)["dual"] and rep.dual == 1, str(rep)
    assert ops.pack_bits.default not in targets(gm) and sum(x in DUALS for x in targets(gm)) == 1


@pytest.mark.parametrize(
    "name,fn,reason",
    [
        ("channels", lambda y: y.squeeze(1).squeeze(1) * 2.0, "squeeze of a dim that is not of size 1, or of the channels"),
        ("new dim", lambda y: y.unsqueeze(0) * 2.0, "unsqueeze that does not restore a squeezed dim"),
        ("twice", lambda y: y.squeeze(2).unsqueeze(2).unsqueeze(2) * 2.0, "unsqueeze that does not restore"),
        ("wide dim", lambda y: y.squeeze(3) * 2.0, "squeeze of a dim that is not of size 1"),  # a no-op in torch
    ],
)  # fmt: skip
def test_squeezes_left_alone(rng, name, fn, reason):
    t = Case1d(rng, o=1)  # one channel: a squeeze could drop the channel dim

    def f(x, w):
        return fn(t.acc(x, w))

    rep, gm = fuse_checked(f, t.x, t.wt)
    assert only_op(rep)["fused"] == [] and reason in only_op(rep)["stopped"], str(rep)


@pytest.mark.parametrize("cls", [BinaryConv2d])  # BinaryConv1d: test_compiled_keyword_spotting_bnn
def test_compiled_packed_layers_residual_prelu_into_bits(cls):
    """Two packed layers (the first's call spells out_dtype=float32), a residual and a PReLU
    between them: compiled with fusion, the residual, the PReLU and the second layer's
    pack_bits move into the first call (out_dtype dropped for out_threshold; this used to fail
    in Inductor with "out_dtype and out_threshold exclude each other"); equal to eager."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    k, p = (3, 1) if cls is BinaryConv1d else ((1, 3), (0, 1))
    w1, w2 = torch.randn(32, 32, 1, 3), torch.randn(8, 32, 1, 3)
    if cls is BinaryConv1d:
        w1, w2 = w1.squeeze(2), w2.squeeze(2)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = cls.from_weight(w1, torch.randn(32), padding=p, multiplier=torch.rand(32))
            self.b = cls.from_weight(w2, padding=p)
            self.slope = torch.nn.Parameter(torch.rand(32) * 0.3)

        def forward(self, x):
            return self.b(torch.nn.functional.prelu(self.a(x) + x, self.slope))

    net, fusion = Net().eval(), bk.FusionPass()
    compiled = bk.compile(net, fuse=fusion, options={"fx_graph_cache": False})
    for n in (2, 3):
        x = torch.randn(n, 32, 11) if cls is BinaryConv1d else torch.randn(n, 32, 1, 11)
        with torch.no_grad():
            assert torch.equal(compiled(x), net(x))
    assert fusion.report.fused["out_threshold"] >= 1 and fusion.report.fused["residual"] >= 1, str(fusion.report)


class _KwsFeatures(torch.nn.Module):
    """A converted keyword-spotting BNN's binary part (tests/convert/models_conv1d.py)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        m = self.m
        return m.act(m.bn(m.down(m.sign(m.b2(m.b1(x))))))


def test_compiled_keyword_spotting_bnn():
    """Converted 1-D residual blocks compiled with fusion: each block's residual and PReLU fuse,
    the first block's output (the second's shortcut and, packed, its input) comes from the dual
    op, the second's bits (the strided layer's input) from out_threshold; bit for bit equal to
    the graph compiled without fusion and to eager."""
    from tests.convert import models_conv1d as P
    from tests.convert.test_public_models import _fresh, _random_bn, _x

    torch._dynamo.reset()
    torch.manual_seed(0)
    cm, _ = bk.convert(_random_bn(P.KwsBNN()), (_x(4, 10, 24),))
    feat, fusion = _KwsFeatures(cm).eval(), bk.FusionPass()
    compiled = bk.compile(feat, fuse=fusion, options={"fx_graph_cache": False})
    plain = bk.compile(feat, fuse=False)
    x = _fresh((3, 36, 19), 1)
    with torch.no_grad():
        got = compiled(x)
        assert torch.equal(got, plain(x)) and torch.equal(got, feat(x))
    r = fusion.report
    assert r.fused["residual"] == r.fused["act_slope"] == 2 and r.fused["out_threshold"] == 1 and r.dual == 1, str(r)
