"""bnn_kernels.compile and export(fuse=True): converted small Bi-Real- and ReActNet-style models,
compiled with the fusion pass, equal to the eager converted model bit for bit on inputs not used
for conversion. torch.compile is slow: each model is converted and compiled once per module."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import bnn_kernels as bk
from bnn_kernels import models as M
from bnn_kernels.models.full_size import _ReActABlock


class SeparateAddcmul(TorchDispatchMode):
    """Eager addcmul as its separate rounded product and sum (what Inductor compiles and the
    epilogue computes; the eager CPU kernel may contract them into an FMA)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.addcmul.default and kwargs.get("value", 1) == 1:
            return args[0] + args[1] * args[2]
        return func(*args, **kwargs)


class Features(torch.nn.Module):
    """The converted model up to its last binary block (the float pooling and classifier
    after it are compiled differently with and without fusion)."""

    def __init__(self, model, blocks):
        super().__init__()
        self.stem, self.blocks = model.stem, getattr(model, blocks)

    def forward(self, x):
        return self.blocks(self.stem(x))


def _converted(make, seed):
    torch.manual_seed(seed)
    model = M.randomize_bn(make(), seed=seed).eval()
    with torch.no_grad():
        packed, report = bk.convert(model, (torch.randn(4, 3, 8, 8),))
    assert report.converted
    return packed


class ReActA(torch.nn.Module):
    """Two ReActNet-A blocks after a float stem: one doubles the channels (two 1x1 convs whose
    outputs are concatenated before the RPReLU, an average-pooled shortcut), one does not."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(3, RWIDTH, 3, padding=1, bias=False), torch.nn.BatchNorm2d(RWIDTH)
        )
        self.blocks = torch.nn.Sequential(_ReActABlock(RWIDTH, 2 * RWIDTH, 2), _ReActABlock(2 * RWIDTH, 2 * RWIDTH, 1))

    def forward(self, x):
        return self.blocks(self.stem(x))


@pytest.fixture(scope="module")
def reactnet():
    """The binary blocks alone (the float stem's BatchNorm is rounded differently compiled)."""
    return _converted(ReActA, 1).blocks


@pytest.fixture(scope="module")
def bireal():
    return Features(_converted(lambda: M.BiRealSmall(width=24), 2), "layers")


RWIDTH = 24


def _inputs(seed, n=3, c=3):
    return torch.randn(n, c, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_compile_reactnet_fused_equals_eager(reactnet, rng):
    # every RSign is folded into the thresholds of the convs reading it (both 1x1 convs of the
    # doubled block): the packed convs binarize the float activations themselves
    assert all(isinstance(b.sign1, bk.nn.Folded) and isinstance(b.sign2, bk.nn.Folded) for b in reactnet)
    assert reactnet[0].sign2.into == "blocks.0.pw1, blocks.0.pw2"
    fusion = bk.FusionPass()
    compiled = bk.compile(reactnet, fuse=fusion, options={"fx_graph_cache": False})
    assert compiled.fusion_pass is fusion
    for batch in (1, rng.randrange(2, 6)):
        x = _inputs(rng.randrange(2**31), batch, RWIDTH)
        with torch.no_grad():
            got = compiled(x)
            with SeparateAddcmul():
                want = reactnet(x)
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    r = fusion.report
    # all 5 convs: folded BN (multiplier, bias), shortcut, RPReLU with both shifts (the doubled
    # block's two 1x1 convs through the cat)
    assert r.ops_fused == 5 * len(fusion.reports) and r.fused["residual"] == r.fused["act_slope"] == r.ops_fused
    assert r.fused["act_shift_in"] == r.fused["act_shift_out"] == r.ops_fused
    assert "fused 5 of 5" in str(fusion.reports[0])
    assert sum(s.startswith("after the cat") for s in fusion.reports[0].stopped.elements()) == 2
    # each block's 3x3 conv output is its shortcut and, packed, its 1x1 convs' input (the RSign
    # between them is folded into their thresholds): two dual calls; the cat's members have
    # channel counts that split words, so the block outputs stay float + pack_bits
    ops = fusion.reports[0].ops
    assert r.dual == 2 * len(fusion.reports) and ops[0]["dual"] and ops[3]["dual"]


def test_compile_bireal_fused_equals_unfused(bireal, rng):
    fusion = bk.FusionPass()
    compiled = bk.compile(bireal, fuse=fusion, options={"fx_graph_cache": False})
    plain = bk.compile(bireal, fuse=False)
    assert plain.fusion_pass is None
    x = _inputs(rng.randrange(2**31))
    with torch.no_grad():
        got, want = compiled(x), plain(x)
        with SeparateAddcmul():
            eager = bireal(x)
    # bit for bit against the same graph compiled unfused (the float downsample branch, BN
    # included, is compiled: eager rounds it differently), close to eager
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)
    r = fusion.report
    # the packed layers pass their multiplier and bias to the op themselves; the pass adds the shortcut
    assert r.ops_fused == 2 and r.fused["residual"] == 2 and "multiplier" not in r.fused
    # the first block's output feeds the next conv's pack_bits and its shortcut: kept in float,
    # and the bits come from the same call (the dual op), the pack_bits gone
    assert any("several" in s for s in r.stopped)
    assert r.dual == len(fusion.reports) and r.ops[0]["dual"]


def test_bireal_first_block_equals_eager(bireal, rng):
    block = bireal.blocks[0]
    fusion = bk.FusionPass()
    compiled = bk.compile(block, fuse=fusion, options={"fx_graph_cache": False})
    x = torch.randn(2, 24, 6, 5, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
    with torch.no_grad():
        got = compiled(x)
        with SeparateAddcmul():
            want = block(x)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    assert fusion.report.fused == {"residual": 1}  # multiplier and bias: already in the layer's call


def test_compile_bad_arguments(reactnet):
    with pytest.raises(TypeError, match="fuse must be a bool"):
        bk.compile(reactnet, fuse="yes")
    with pytest.raises(ValueError, match="inductor backend"):
        bk.compile(reactnet, backend="eager")
    with pytest.raises(ValueError, match="post_grad_custom_post_pass"):
        bk.compile(reactnet, options={"post_grad_custom_post_pass": bk.FusionPass()})


def test_export_fused_equals_eager(reactnet, rng, tmp_path):
    fusion = bk.FusionPass()
    path = bk.export(
        reactnet,
        (_inputs(0, 2, RWIDTH),),
        tmp_path / "fused.pt2",
        fuse=fusion,
        inductor_configs={"fx_graph_cache": False},
    )
    assert fusion.report.ops_fused == 5
    run = bk.load_exported(path)
    for batch in (1, rng.randrange(2, 7)):
        x = _inputs(rng.randrange(2**31), batch, RWIDTH)
        with torch.no_grad(), SeparateAddcmul():
            want = reactnet(x)
        assert torch.equal(run(x).view(torch.int32), want.view(torch.int32))


class ReActA32(torch.nn.Module):
    """ReActA's two blocks at 32 channels: the doubled block's halves are whole bit words, so its
    output (the next block's shortcut) comes with its packed bits through the cat."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1, bias=False), torch.nn.BatchNorm2d(32))
        self.blocks = torch.nn.Sequential(_ReActABlock(32, 64, 2), _ReActABlock(64, 64, 1))

    def forward(self, x):
        return self.blocks(self.stem(x))


def test_compile_dual_through_a_cat_equals_eager(rng):
    blocks = _converted(ReActA32, 3).blocks
    fusion = bk.FusionPass()
    compiled = bk.compile(blocks, fuse=fusion, options={"fx_graph_cache": False})
    for batch in (1, rng.randrange(2, 5)):
        x = _inputs(rng.randrange(2**31), batch, 32)
        with torch.no_grad():
            got = compiled(x)
            with SeparateAddcmul():
                want = blocks(x)
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    r = fusion.reports[0]
    # both 3x3 convs (their RSign folded into the 1x1 convs' thresholds) and the doubled
    # block's two 1x1 convs (through the cat)
    assert r.dual == 4 and [bool(e.get("dual")) for e in r.ops] == [True, True, True, True, False]
