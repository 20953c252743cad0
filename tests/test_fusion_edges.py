"""Chains of bnn_kernels.fusion that take some steps and must stop at the next one: a second
shift or activation after the activation, a where() whose test is not t > 0, a float16
per-channel vector, a pack_bits over a dim that is not the channels, an op that spells out
out_dtype=int32; dual outputs not taken for a pack of a narrowed copy or over another dim. Each fused graph equals the unfused one bit for bit on fresh inputs (random
shapes of tests.test_fusion.Case), and the report lists exactly the steps the epilogue can take."""

import pytest
import torch
import torch.nn.functional as F

from tests.test_fusion import Case, fuse_checked, only_op, targets
from tests.test_fusion_dual import fuse_checked as fuse_checked_all

ops = torch.ops.bnn_kernels
PACK = ops.pack_bits.default


def _cases(t):
    """name -> (fn of (x, w, m, b, slope, s1, s2), the steps it must fuse)."""
    ch = t.ch
    return {
        "two_shifts_after_prelu": (
            lambda x, w, m, b, slope, s1, s2: F.prelu(t.acc(x, w).float() * ch(m) + ch(b), slope) + ch(s1) + ch(s2),
            ["multiplier", "bias", "act_slope", "act_shift_out"],
        ),
        "two_prelus": (
            lambda x, w, m, b, slope, s1, s2: F.prelu(F.prelu(t.acc(x, w).float() * ch(m), slope), s1),
            ["multiplier", "act_slope"],
        ),
        "where_above_a_nonzero_bound": (
            lambda x, w, m, b, slope, s1, s2: (lambda z: torch.where(z > 0.5, z, ch(slope) * z))(
                t.acc(x, w).float() * ch(m)
            ),
            ["multiplier"],
        ),
        "float16_vector": (
            lambda x, w, m, b, slope, s1, s2: t.acc(x, w).float() * ch(m) + ch(b).half(),
            ["multiplier"],
        ),
        "int32_out_dtype_spelled_out": (
            lambda x, w, m, b, slope, s1, s2: (
                ops.binary_conv2d(x, w, t.c, [1, 1], [1, 1], out_dtype=torch.int32).float() * ch(m) + ch(b)
            ),
            ["multiplier", "bias"],
        ),
        "pack_over_the_width": (
            lambda x, w, m, b, slope, s1, s2: ops.pack_bits(t.acc(x, w).float() * ch(m), 0.0),
            ["multiplier"],
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "two_shifts_after_prelu",
        "two_prelus",
        "where_above_a_nonzero_bound",
        "float16_vector",
        "int32_out_dtype_spelled_out",
        "pack_over_the_width",
    ],
)
def test_chain_stops_where_the_epilogue_cannot_follow(rng, name):
    t = Case(rng)
    fn, fused = _cases(t)[name]
    rep, _ = fuse_checked(fn, t.x, t.wt, t.m, t.b, t.slope, t.vec(0.5), t.s_out)
    assert only_op(rep)["fused"] == fused, only_op(rep)


@pytest.mark.parametrize("cast", [torch.float16, torch.bfloat16])
def test_pack_of_a_narrowed_copy_stays(rng, cast):
    """pack_bits of the float output cast to float16 / bfloat16 compares the rounded values: not
    the dual op's bits (which compare the float32 y)."""
    t = Case(rng)

    def f(x, w, m, thr):
        y = t.acc(x, w).float() * t.ch(m)
        return y, ops.pack_bits(y.to(cast).permute(0, 2, 3, 1), 0.0, thr)

    rep, gm = fuse_checked_all(f, t.x, t.wt, t.m, t.thr)
    assert rep.dual == 0 and PACK in targets(gm)


def test_pack_over_the_width_with_a_scalar_threshold_stays(rng):
    """A pack over a dim that is not the channels is no dual output, whatever its threshold."""
    t = Case(rng)
    rep, gm = fuse_checked_all(
        lambda x, w, m: (y := t.acc(x, w).float() * t.ch(m), ops.pack_bits(y, 0.25)), t.x, t.wt, t.m
    )
    assert rep.dual == 0 and PACK in targets(gm)
