"""bnn_kernels.fusion's dual outputs (_fusion_dual.py): a binary op whose float32 result is read
as float and by a pack_bits over its channels becomes the op's dual form, bit-identical to the
unfused graph on fresh inputs; the variants it cannot take exactly are left alone with a reason."""

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import bnn_kernels as bk
from bnn_kernels.fusion import fuse_graph
from tests.test_fusion import Case, _ch, bits_equal, only_op, targets

ops = torch.ops.bnn_kernels
PACK = ops.pack_bits.default
DUALS = {ops.binary_conv2d_dual.default, ops.xnor_gemm_dual.default}


def fuse_checked(fn, *args, reps=3):
    """Traces fn, fuses it, checks every output of the fused graph equals the unfused one's bit
    for bit on the traced inputs and on fresh float operands; returns (report, fused graph)."""
    gm = make_fx(fn, tracing_mode="fake")(*args)
    unfused = make_fx(fn, tracing_mode="fake")(*args)
    report = fuse_graph(gm)
    for i in range(reps):
        fresh = [a if i == 0 or not a.is_floating_point() else torch.randn_like(a) * 3 for a in args]
        want, got = unfused(*fresh), gm(*fresh)
        for g, w in zip(got, want):
            assert bits_equal(g, w)
    return report, gm


def duals(gm):
    return sum(t in DUALS for t in targets(gm))


@pytest.mark.parametrize("gemm", [False, True], ids=["conv", "gemm"])
def test_float_and_bits_of_one_op(rng, gemm):
    t = Case(rng, gemm)
    perm = [0, 1] if gemm else [0, 2, 3, 1]

    def f(x, w, m, b, r, thr):
        y = t.acc(x, w).float() * t.ch(m) + t.ch(b) + r
        return y * 0.5, ops.pack_bits(y.permute(perm), 0.0, thr)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m, t.b, t.res, t.thr)
    e = only_op(rep)
    assert e["fused"] == ["multiplier", "bias", "residual"] and e["dual"] and rep.dual == 1
    assert PACK not in targets(gm) and duals(gm) == 1
    assert "pack_bits dropped): 1" in str(rep)  # the dual call count


def test_scalar_threshold_through_a_copy_and_same_shape_view(rng):
    """conv_output_format's .contiguous() (a clone to NCHW) and a same-shape view between the
    op and the permute; a scalar threshold, rounded to float32 as pack_bits rounds it."""
    t = Case(rng)

    def f(x, w, m):
        y = (t.acc(x, w).float() * t.ch(m)).contiguous().view(t.n, t.o, t.h, t.w)
        return y + 1.0, ops.pack_bits(y.permute(0, 2, 3, 1), 0.1)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m)
    assert rep.dual == 1 and PACK not in targets(gm)


def test_op_with_its_own_epilogue_and_two_packs(rng):
    """The packed layers pass multiplier and bias to the op themselves; of two pack_bits of the
    output one goes into the dual op, the other stays."""
    t = Case(rng)
    thr2 = t.vec()

    def f(x, w, m, b, thr, thr2):
        y = ops.binary_conv2d(x, w, t.c, [1, 1], [1, 1], multiplier=m, bias=b)
        y_last = y.permute(0, 2, 3, 1)
        return y, ops.pack_bits(y_last, 0.0, thr), ops.pack_bits(y_last, 0.0, thr2)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m, t.b, t.thr, thr2)
    assert only_op(rep)["fused"] == [] and rep.dual == 1
    assert targets(gm).count(PACK) == 1 and duals(gm) == 1


def test_bireal_style_blocks(rng):
    """Block 1's output is block 2's shortcut and, packed, block 2's input: block 1 becomes dual,
    block 2 takes the shortcut as its residual and feeds only float."""
    t = Case(rng)
    w2 = bk.pack_bits(torch.randn(t.o, 3, 3, t.o))

    def f(x, w, w2, m, b, r, thr):
        y1 = t.acc(x, w).float() * t.ch(m) + t.ch(b) + r
        x2 = ops.pack_bits(y1.permute(0, 2, 3, 1), 0.0, thr)
        y2 = ops.binary_conv2d(x2, w2, t.o, [1, 1], [1, 1]).float() * t.ch(m) + y1
        return y2

    rep, gm = fuse_checked(f, t.x, t.wt, w2, t.m, t.b, t.res, t.thr)
    assert [e.get("dual", False) for e in rep.ops] == [True, False]
    assert rep.ops[1]["fused"] == ["multiplier", "residual"]
    assert PACK not in targets(gm)


@pytest.mark.parametrize("first", [32, 64])
def test_through_a_cat_of_binary_convs(rng, first):
    """ReActNet-A's doubled block: cat([bn(conv1) + r, bn(conv2) + r], 1) is the next block's
    shortcut and, packed, its input; each conv packs its slice of the threshold (the first has
    whole words of channels) and the bit words are concatenated."""
    t = Case(rng)
    w1 = bk.pack_bits(torch.randn(first, 3, 3, t.c))
    m1, b1 = torch.rand(first) + 0.1, torch.randn(first)
    thr = torch.randn(first + t.o)

    def f(x, w1, w, m1, b1, m, b, r, thr):
        y1 = t.acc(x, w1).float() * _ch(m1) + _ch(b1)
        y2 = t.acc(x, w).float() * _ch(m) + _ch(b) + r
        y = torch.cat([y1, y2], 1)
        return y * 2.0, ops.pack_bits(y.permute(0, 2, 3, 1), 0.0, thr)

    rep, gm = fuse_checked(f, t.x, w1, t.wt, m1, b1, t.m, t.b, t.res, thr)
    assert [e.get("dual") for e in rep.ops] == [True, True] and rep.dual == 2
    assert PACK not in targets(gm) and duals(gm) == 2


def test_cat_splitting_words_left_alone(rng):
    t = Case(rng)
    w1 = bk.pack_bits(torch.randn(33, 3, 3, t.c))

    def f(x, w1, w, m):
        y = torch.cat([t.acc(x, w1).float() * 0.5, t.acc(x, w).float() * _ch(m)], 1)
        return y, ops.pack_bits(y.permute(0, 2, 3, 1), 0.5)

    rep, gm = fuse_checked(f, t.x, w1, t.wt, t.m)
    assert rep.dual == 0 and PACK in targets(gm)
    assert "split bit words" in rep.ops[1]["dual_skipped"]


# -- left alone ------------------------------------------------------------------------------
def test_pack_over_another_dim_left_alone(rng):
    t = Case(rng)
    thr = torch.randn(t.w)
    rep, gm = fuse_checked(
        lambda x, w, m, thr: (y := t.acc(x, w).float() * t.ch(m), ops.pack_bits(y, 0.0, thr)), t.x, t.wt, t.m, thr
    )
    assert rep.dual == 0 and PACK in targets(gm)


def test_float64_threshold_left_alone(rng):
    """pack_bits rounds a float64 threshold to float32 itself: not an epilogue operand."""
    t = Case(rng)

    def f(x, w, m, thr):
        y = t.acc(x, w).float() * t.ch(m)
        return y, ops.pack_bits(y.permute(0, 2, 3, 1), 0.0, thr)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m, t.thr.double())
    assert rep.dual == 0 and "float32 vector" in only_op(rep)["dual_skipped"] and PACK in targets(gm)


def test_threshold_from_the_output_left_alone(rng):
    t = Case(rng)

    def f(x, w, m):
        y = t.acc(x, w).float() * t.ch(m)
        return y, ops.pack_bits(y.permute(0, 2, 3, 1), 0.0, y.mean((0, 2, 3)))

    rep, gm = fuse_checked(f, t.x, t.wt, t.m)
    assert rep.dual == 0 and "after the op" in only_op(rep)["dual_skipped"]


def test_rounded_output_left_alone(rng):
    """A float16 output packed: pack_bits compares the rounded values, the dual op y itself."""
    t = Case(rng)

    def f(x, w, m):
        y = (t.acc(x, w).float() * t.ch(m)).half()
        return y, ops.pack_bits(y.permute(0, 2, 3, 1), 0.0)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m)
    assert rep.dual == 0 and PACK in targets(gm)


def test_device_without_the_dual_op_left_alone(rng, monkeypatch):
    from bnn_kernels import _fusion_dual

    assert _fusion_dual.dual_supported("binary_conv2d", "cpu") and _fusion_dual.dual_supported("xnor_gemm", "cpu")
    monkeypatch.setattr(_fusion_dual, "dual_supported", lambda op, device: False)
    t = Case(rng)

    def f(x, w, m):
        y = t.acc(x, w).float() * t.ch(m)
        return y, ops.pack_bits(y.permute(0, 2, 3, 1), 0.0)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m)
    assert rep.dual == 0 and "no dual form" in only_op(rep)["dual_skipped"] and PACK in targets(gm)
