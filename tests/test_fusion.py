"""bnn_kernels.fusion.fuse_graph on FX graphs of aten ops: each pattern fused and bit-identical
(float32) to the unfused graph on fresh random inputs; each variant that the epilogue cannot
reproduce exactly left alone, with the reason in the report."""

import pytest
import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx

import bnn_kernels as bk
from bnn_kernels.fusion import FusionReport, fuse_graph

ops = torch.ops.bnn_kernels


def _ch(v, dims=4, dim=1):
    shape = [1] * dims
    shape[dim] = -1
    return v.view(shape)


class Case:
    """Random packed conv (or gemm) inputs and per-channel vectors of odd sizes."""

    def __init__(self, rng, gemm=False):
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        self.gemm = gemm
        self.c, self.o = rng.randrange(20, 90), rng.randrange(3, 70)
        self.n, self.h, self.w = rng.randrange(1, 4), rng.randrange(2, 7), rng.randrange(2, 7)
        if gemm:
            self.x = bk.pack_bits(torch.randn(rng.randrange(1, 9), self.c, generator=g))
            self.wt = bk.pack_bits(torch.randn(self.o, self.c, generator=g))
            out = (self.x.shape[0], self.o)
        else:
            self.x = bk.pack_bits(torch.randn(self.n, self.h, self.w, self.c, generator=g))
            self.wt = bk.pack_bits(torch.randn(self.o, 3, 3, self.c, generator=g))
            out = (self.n, self.o, self.h, self.w)
        self.vec = lambda scale=1.0: (torch.randn(self.o, generator=g) * scale).contiguous()
        self.res = torch.randn(out, generator=g)
        # a multiplier that is not a power of two, so every rounding shows
        self.m, self.b, self.slope = self.vec(0.3).abs() + 0.01, self.vec(), self.vec(0.5)
        self.s_in, self.s_out, self.thr = self.vec(), self.vec(), self.vec(3)

    def acc(self, x, w):
        if self.gemm:
            return ops.xnor_gemm(x, w, self.c)
        return ops.binary_conv2d(x, w, self.c, [1, 1], [1, 1])

    def ch(self, v):
        return _ch(v, 2 if self.gemm else 4)


def fuse_checked(fn, *args, reps=2):
    """Traces fn, fuses it, checks the fused graph equals the unfused one bit for bit on the
    traced inputs and on fresh float operands; returns (report, fused GraphModule)."""
    gm = make_fx(fn, tracing_mode="fake")(*args)
    unfused = make_fx(fn, tracing_mode="fake")(*args)
    report = fuse_graph(gm)
    for i in range(reps):
        fresh = [a if i == 0 or not a.is_floating_point() else torch.randn_like(a) for a in args]
        want, got = unfused(*fresh), gm(*fresh)
        assert bits_equal(got, want), f"fused differs by {(got.double() - want.double()).abs().max()}"
    return report, gm


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bits (so -0.0 != 0.0 and NaN payloads count)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        as_int = {
            torch.float64: torch.int64,
            torch.float32: torch.int32,
            torch.float16: torch.int16,
            torch.bfloat16: torch.int16,
        }[a.dtype]
        a, b = a.contiguous().view(as_int), b.contiguous().view(as_int)
    return torch.equal(a, b)


def targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def only_op(report):
    assert len(report.ops) == 1
    return report.ops[0]


@pytest.mark.parametrize("gemm", [False, True], ids=["conv", "gemm"])
def test_full_chain_into_bits(rng, gemm):
    t = Case(rng, gemm)
    perm = [0, 1] if gemm else [0, 2, 3, 1]

    def f(x, w, m, b, r, slope, s_in, s_out, thr):
        y = t.acc(x, w).float() * t.ch(m) + t.ch(b)
        y = y + r
        u = y - t.ch(s_in)
        u = torch.where(u > 0, u, t.ch(slope) * u)
        y = u + t.ch(s_out)
        return ops.pack_bits(y.permute(perm), 0.0, thr)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m, t.b, t.res, t.slope, t.s_in, t.s_out, t.thr)
    assert only_op(rep)["fused"] == [
        "multiplier",
        "bias",
        "residual",
        "act_shift_in",
        "act_slope",
        "act_shift_out",
        "out_threshold",
    ]
    assert torch.ops.bnn_kernels.pack_bits.default not in targets(gm)
    assert torch.ops.aten.where.self not in targets(gm)


def test_addcmul_prelu_module_forms(rng):
    """The converted layers' addcmul(bias, float(acc), multiplier) and F.prelu / leaky_relu."""
    t = Case(rng)

    def f(x, w, m, b, r, slope, zeta):
        y = torch.addcmul(t.ch(b), t.acc(x, w).float(), t.ch(m)) + r
        return F.prelu(y, slope) + t.ch(zeta)

    gm = make_fx(f, tracing_mode="fake")(t.x, t.wt, t.m, t.b, t.res, t.slope, t.s_out)
    rep = fuse_graph(gm)
    assert only_op(rep)["fused"] == ["multiplier", "bias", "residual", "act_slope", "act_shift_out"]
    # eager CPU addcmul may contract to an FMA; the epilogue (and Inductor) round the product first
    y = t.acc(t.x, t.wt).float() * t.ch(t.m) + t.ch(t.b) + t.res
    want = torch.where(y > 0, y, t.ch(t.slope) * y) + t.ch(t.s_out)
    assert bits_equal(gm(t.x, t.wt, t.m, t.b, t.res, t.slope, t.s_out), want)

    def g(x, w, m):
        return F.leaky_relu(t.acc(x, w) * t.ch(m), 0.125)  # int32 * float32: float(acc) first

    rep, _ = fuse_checked(g, t.x, t.wt, t.m)
    assert only_op(rep)["fused"] == ["multiplier", "act_slope"]


def test_scalars_residual_first_and_sub(rng):
    t = Case(rng)

    def f(x, w, r):
        y = t.acc(x, w).float() * 0.37 - 1.5
        return r + y  # residual as the first argument

    rep, _ = fuse_checked(f, t.x, t.wt, t.res)
    assert only_op(rep)["fused"] == ["multiplier", "bias", "residual"]

    def g(x, w, r):
        return t.acc(x, w).float() - r  # y - r = y + (-r) exactly

    rep, _ = fuse_checked(g, t.x, t.wt, t.res)
    assert only_op(rep)["fused"] == ["residual"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_out_dtype(rng, dtype):
    t = Case(rng)
    rep, _ = fuse_checked(lambda x, w, m, b: (t.acc(x, w).float() * t.ch(m) + t.ch(b)).to(dtype), t.x, t.wt, t.m, t.b)
    assert only_op(rep)["fused"] == ["multiplier", "bias", "out_dtype"]


def test_permuted_chain_residual_in_op_layout(rng):
    """NCHW output permuted to NHWC, [O] vectors and an NHWC residual, permuted back."""
    t = Case(rng)
    r = t.res.permute(0, 2, 3, 1).contiguous()

    def f(x, w, m, b, r, slope):
        y = t.acc(x, w).float().permute(0, 2, 3, 1) * m + b + r
        y = torch.where(y > 0, y, y * slope)
        return y.permute(0, 3, 1, 2).contiguous()

    rep, gm = fuse_checked(f, t.x, t.wt, t.m, t.b, r, t.slope)
    assert only_op(rep)["fused"] == ["multiplier", "bias", "residual", "act_slope"]


def test_extends_an_existing_epilogue(rng):
    t = Case(rng)

    def f(x, w, m, b, r, slope):
        y = ops.binary_conv2d(x, w, t.c, [1, 1], [1, 1], multiplier=m, bias=b)
        return F.prelu(y + r, slope)

    rep, _ = fuse_checked(f, t.x, t.wt, t.m, t.b, t.res, t.slope)
    assert only_op(rep)["fused"] == ["residual", "act_slope"]


def test_bits_and_float_both_needed_takes_the_dual_op(rng):
    """The float result is returned and packed: the chain stops there, and the op's dual form
    writes both (tests/test_fusion_dual.py has the variants)."""
    t = Case(rng)

    def f(x, w, m, b, thr):
        y = t.acc(x, w).float() * t.ch(m) + t.ch(b)
        return y, ops.pack_bits(y.permute(0, 2, 3, 1), 0.0, thr)

    gm = make_fx(f, tracing_mode="fake")(t.x, t.wt, t.m, t.b, t.thr)
    want = gm(t.x, t.wt, t.m, t.b, t.thr)
    e = only_op(fuse_graph(gm))
    assert e["fused"] == ["multiplier", "bias"] and "several" in e["stopped"] and e["dual"]
    got = gm(t.x, t.wt, t.m, t.b, t.thr)
    assert bits_equal(got[0], want[0]) and bits_equal(got[1], want[1])
    assert torch.ops.bnn_kernels.pack_bits.default not in targets(gm)
    assert torch.ops.bnn_kernels.binary_conv2d_dual.default in targets(gm)


def test_scalar_pack_threshold(rng):
    t = Case(rng, gemm=True)
    rep, _ = fuse_checked(lambda x, w, m: ops.pack_bits(t.acc(x, w).float() * m, 0.25), t.x, t.wt, t.m)
    assert only_op(rep)["fused"] == ["multiplier", "out_threshold"]


# -- left alone ------------------------------------------------------------------------------
def test_other_order_fuses_only_the_valid_prefix(rng):
    """(acc + bias) * multiplier: the bias is the epilogue's, the product after it is not."""
    t = Case(rng)
    rep, gm = fuse_checked(lambda x, w, m, b: (t.acc(x, w).float() + t.ch(b)) * t.ch(m), t.x, t.wt, t.m, t.b)
    e = only_op(rep)
    assert e["fused"] == ["bias"] and "multiplies first" in e["stopped"]
    assert torch.ops.aten.mul.Tensor in targets(gm)


def _not_fused(fn, args, reason):
    rep, gm = fuse_checked(fn, *args)
    e = only_op(rep)
    assert e["fused"] == [], e
    assert reason in e["stopped"], e["stopped"]
    return gm


def test_float64_left_alone(rng):
    t = Case(rng)
    _not_fused(
        lambda x, w, m, b: t.acc(x, w).double() * t.ch(m).double() + t.ch(b).double(),
        (t.x, t.wt, t.m, t.b),
        "float64",
    )
    # float32 value, float64 vector: promotes to float64
    _not_fused(lambda x, w, m: t.acc(x, w).float() * t.ch(m).double(), (t.x, t.wt, t.m), "float64")


def test_per_sample_scale_left_alone(rng):
    t = Case(rng)
    s = torch.rand(t.n, t.o, 1, 1) + 0.5
    if t.n == 1:
        s = torch.rand(1, t.o, t.h, 1) + 0.5  # per pixel row instead
    _not_fused(lambda x, w, s: t.acc(x, w).float() * s, (t.x, t.wt, s), "not per channel")


def test_residual_depending_on_the_output_left_alone(rng):
    t = Case(rng)

    def f(x, w, m, b):
        y = t.acc(x, w).float() * t.ch(m) + t.ch(b)
        return y + y.flip(2)

    rep, gm = fuse_checked(f, t.x, t.wt, t.m, t.b)
    e = only_op(rep)
    assert e["fused"] == ["multiplier", "bias"] and "several" in e["stopped"]
    assert torch.ops.aten.flip.default in targets(gm)


@pytest.mark.parametrize(
    "name, fn, reason",
    [
        ("relu", lambda y, v: torch.relu(y * v), "relu"),
        ("ge", lambda y, v: (lambda z: torch.where(z >= 0, z, 0.25 * z))(y * v), "several"),
        ("div", lambda y, v: y / v, "division"),
        ("reversed_sub", lambda y, v: v - y, "c - y"),
        ("alpha", lambda y, v: torch.add(y, v, alpha=2), "alpha"),
        ("shift_without_act", lambda y, v: y + v + v, "no activation"),
    ],
)
def test_unsupported_steps_left_alone(rng, name, fn, reason):
    t = Case(rng)
    v = t.vec(0.3).abs() + 0.01
    gm = make_fx(lambda x, w, v: fn(t.acc(x, w).float(), t.ch(v)), tracing_mode="fake")(t.x, t.wt, v)
    want = gm(t.x, t.wt, v)
    e = only_op(fuse_graph(gm))
    assert bits_equal(gm(t.x, t.wt, v), want)
    if name == "shift_without_act":  # y + v is the bias; the second add has no activation after it
        assert e["fused"] == ["bias"]
    elif name == "ge":  # the multiplier fuses; where(>= 0) is not the epilogue's t > 0
        assert e["fused"] == ["multiplier"]
    else:
        assert "multiplier" not in e["fused"][1:]
    assert reason in e["stopped"], e["stopped"]


def test_report_text_and_graph_without_metadata(rng):
    t = Case(rng)
    gm = torch.fx.symbolic_trace(lambda x, w: ops.binary_conv2d(x, w, t.c).float() * 2.0)
    rep = fuse_graph(gm)
    assert only_op(rep)["stopped"].startswith("no tensor metadata")
    r = FusionReport()
    r.merge(rep)
    assert "fused 0 of 1" in str(r) and rep.ops_fused == 0


@pytest.mark.parametrize("other", ["binary", "float"])
def test_through_a_cat_of_binary_convs(rng, other):
    """ReActNet-A's doubled block: cat([bn(conv1) + x, bn(conv2) + x], 1) -> RPReLU over both
    halves. With two binary convs, each takes its slice of the RPReLU; with a float input in the
    cat, each conv keeps its own steps and the RPReLU stays."""
    t = Case(rng)
    w2 = bk.pack_bits(torch.randn(t.o, 3, 3, t.c))
    m2, b2 = t.vec(0.2).abs() + 0.01, t.vec()
    two = torch.cat([t.vec(), t.vec()])
    gamma, slope, zeta = two, torch.cat([t.slope, t.vec()]), torch.cat([t.s_out, t.vec()])

    def f(x, w, w2, m, b, m2, b2, r, gamma, slope, zeta):
        y1 = t.acc(x, w).float() * t.ch(m) + t.ch(b) + r
        y2 = t.acc(x, w2).float() * t.ch(m2) + t.ch(b2) + r if other == "binary" else r * 0.5
        u = torch.cat([y1, y2], 1) - t.ch(gamma)
        u = torch.where(u > 0, u, t.ch(slope) * u)
        return u + t.ch(zeta)

    rep, gm = fuse_checked(f, t.x, t.wt, w2, t.m, t.b, m2, b2, t.res, gamma, slope, zeta)
    if other == "binary":
        rpr = ["act_shift_in", "act_slope", "act_shift_out"]
        assert [e["fused"] for e in rep.ops] == [["multiplier", "bias", "residual", *rpr]] * 2
        assert torch.ops.aten.where.self not in targets(gm) and torch.ops.aten.cat.default in targets(gm)
        assert all(e["stopped"].startswith("after the cat") for e in rep.ops)
    else:
        assert only_op(rep)["fused"] == ["multiplier", "bias", "residual"]
        assert torch.ops.aten.where.self in targets(gm)


def test_device_without_fused_epilogue_left_alone(rng, monkeypatch):
    from bnn_kernels import fusion

    assert fusion.epilogue_supported("binary_conv2d", "cpu") and fusion.epilogue_supported("xnor_gemm", "cpu")
    monkeypatch.setattr(fusion, "epilogue_supported", lambda op, device: False)
    t = Case(rng)
    _not_fused(lambda x, w, m: t.acc(x, w).float() * t.ch(m), (t.x, t.wt, t.m), "has no fused epilogue")


def test_same_shape_views_followed(rng):
    """BinaryLinear's reshape of the gemm output to the input's batch dims, as in a 2-D input."""
    t = Case(rng, gemm=True)
    rep, _ = fuse_checked(lambda x, w, m, b: t.acc(x, w).reshape(-1, t.o).float() * m + b, t.x, t.wt, t.m, t.b)
    assert only_op(rep)["fused"] == ["multiplier", "bias"]
    rep, _ = fuse_checked(lambda x, w, m: (t.acc(x, w).float() * m).reshape(-1), t.x, t.wt, t.m)
    assert only_op(rep)["fused"] == ["multiplier"] and "reshape" in only_op(rep)["stopped"]


def test_one_pixel_output_at_batch_one(rng):
    """A 1x1 output at batch 1 (late layers of a small input): per-channel operands have the
    output's shape, so they also look like residuals; every slot still fills in order."""
    t = Case(rng)
    x = bk.pack_bits(torch.randn(1, 1, 1, t.c))
    r = torch.randn(1, t.o, 1, 1)

    def f(x, w, m, b, r, s_in, slope, s_out):
        y = t.acc(x, w).float() * t.ch(m) + t.ch(b) + r - t.ch(s_in)
        return torch.where(y > 0, y, t.ch(slope) * y) + t.ch(s_out)

    rep, _ = fuse_checked(f, x, t.wt, t.m, t.b, r, t.s_in, t.slope, t.s_out)
    assert only_op(rep)["fused"] == ["multiplier", "bias", "residual", "act_shift_in", "act_slope", "act_shift_out"]
