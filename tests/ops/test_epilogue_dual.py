"""The dual ops xnor_gemm_dual and binary_conv2d_dual: one call returning the float output and
the packed bits of the same epilogue. Each output equals the separate calls bit for bit (the op
with out_dtype, the op with out_threshold, and pack_bits of a float32 output), on randomized
shapes with tails, every step combination, groups, dirty tail bits, every CPU ISA path."""

import random

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import gen, random_bits
from tests.helpers import same_bits as same
from tests.ops.test_epilogue import COMBOS, channel_values, epilogue_args, gemm_shape, random_conv

FLOATS = [None, torch.float32, torch.float16, torch.bfloat16]


def dual_args(steps, out_dtype, n, float_shape, seed, k):
    """Epilogue keywords of steps, out_dtype (None: the default) and an out_threshold."""
    kw = epilogue_args(steps, "bits", n, float_shape, seed, k)
    thr = kw["out_threshold"]
    thr[: min(n, 3)] = torch.tensor([0.0, -0.0, float(k)])[: min(n, 3)]  # ties with y = +-0.0 and y = k
    if out_dtype is not None:
        kw["out_dtype"] = out_dtype
    return kw


def separate_calls(op, args, kw, channels_last_bits):
    """(float output, bits) from the two single-output calls, checked against pack_bits of a
    float32 output too."""
    thr = kw["out_threshold"]
    float_kw = {name: v for name, v in kw.items() if name != "out_threshold"}
    float_kw.setdefault("out_dtype", torch.float32)
    y = op(*args, **float_kw)
    bits = op(*args, **{name: v for name, v in kw.items() if name != "out_dtype"})
    if y.dtype == torch.float32:
        same(bits, bk.pack_bits(y.permute(0, 2, 3, 1) if channels_last_bits else y, thr))
    return y, bits


@pytest.mark.parametrize("out_dtype", FLOATS, ids=str)
@pytest.mark.parametrize("seed", range(12))
def test_xnor_gemm_dual_equals_separate_calls(seed, out_dtype, cpu_isa):
    rng = random.Random(seed)
    m, n, k = gemm_shape(rng)
    a, b = random_bits(m, k=k, seed=seed, dirty=True), random_bits(n, k=k, seed=seed + 1, dirty=True)
    kw = dual_args(rng.choice(COMBOS), out_dtype, n, (m, n), seed, k)
    y, bits = bk.xnor_gemm_dual(a, b, k, **kw)
    want_y, want_bits = separate_calls(bk.xnor_gemm, (a, b, k), kw, False)
    same(y, want_y)
    same(bits, want_bits)
    same(bits, R.xnor_gemm(a, b, k, **{name: v for name, v in kw.items() if name != "out_dtype"}))
    ref_y, ref_bits = R.xnor_gemm_dual(a, b, k, **kw)
    same(y, ref_y)
    same(bits, ref_bits)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 37])
def test_xnor_gemm_dual_small_m_tiled_and_chunks(m, cpu_isa):
    """GEMV rows (M <= 3) and tiled rows; N across vector, word and 256-column chunk tails."""
    for n, k in [(5, 40), (32, 64), (47, 130), (256, 33), (270, 97), (513, 64)]:
        a, b = random_bits(m, k=k, seed=m + n), random_bits(n, k=k, seed=n)
        kw = dual_args(["multiplier", "bias", "residual", "act_slope", "act_shift_in"], None, n, (m, n), m * n, k)
        y, bits = bk.xnor_gemm_dual(a, b, k, **kw)
        want_y, want_bits = separate_calls(bk.xnor_gemm, (a, b, k), kw, False)
        same(y, want_y)
        same(bits, want_bits)


@pytest.mark.parametrize("seed", range(16))
def test_binary_conv2d_dual_equals_separate_calls(seed, cpu_isa):
    rng = random.Random(1000 + seed)
    x, wt, cin, geo, s = random_conv(rng)
    x = random_bits(*x.shape[:3], k=cin, seed=s, dirty=True)  # tail bits past C must not count
    acc = R.binary_conv2d(x, wt, cin, **geo)
    k = cin // geo["groups"] * wt.shape[1] * wt.shape[2]
    kw = dual_args(rng.choice(COMBOS), FLOATS[seed % 4], wt.shape[0], tuple(acc.shape), s, k)
    y, bits = bk.binary_conv2d_dual(x, wt, cin, **geo, **kw)
    assert y.is_contiguous(memory_format=torch.channels_last)
    want_y, want_bits = separate_calls(bk.binary_conv2d, (x, wt, cin), {**geo, **kw}, True)
    same(y, want_y)
    same(bits, want_bits)
    ref_y, ref_bits = R.binary_conv2d_dual(x, wt, cin, **geo, **kw)
    same(y, torch.empty_like(y).copy_(ref_y))  # channels_last strides (ambiguous for O = 1)
    same(bits, ref_bits)


@pytest.mark.parametrize("groups,cout", [(1, 70), (1, 64), (2, 64), (2, 70), (4, 128)])
def test_binary_conv2d_dual_in_block_and_after(groups, cout, cpu_isa):
    """Both outputs per pixel block (groups of whole words) and after the conv (groups that
    split words), several blocks and threads."""
    torch.set_num_threads(2)
    x = random_bits(2, 13, 11, k=groups * 20, seed=groups + cout, dirty=True)
    wt = random_bits(cout, 3, 3, k=20, seed=cout)
    geo = dict(padding=1, groups=groups)
    acc = R.binary_conv2d(x, wt, groups * 20, **geo)
    steps = ["multiplier", "bias", "residual", "act_slope", "act_shift_out"]
    kw = dual_args(steps, None, cout, tuple(acc.shape), groups * cout, 180)
    y, bits = bk.binary_conv2d_dual(x, wt, groups * 20, **geo, **kw)
    want_y, want_bits = separate_calls(bk.binary_conv2d, (x, wt, groups * 20), {**geo, **kw}, True)
    same(y, want_y)
    same(bits, want_bits)
    # the bits are the next conv's packed input
    w2 = random_bits(5, 1, 1, k=cout, seed=3)
    same(
        bk.binary_conv2d(bits, w2, cout),
        bk.binary_conv2d(bk.pack_bits(y.permute(0, 2, 3, 1), kw["out_threshold"]), w2, cout),
    )


def test_dual_noncontiguous_arguments():
    """Strided packed inputs, thresholds and vectors, a transposed residual; the conv's
    residual in NCHW and in channels_last."""
    m, n, k = 6, 40, 70
    a, b = random_bits(m, k=k, seed=4), random_bits(n, k=k, seed=5)
    kw = dual_args(["multiplier", "bias", "residual", "act_slope"], None, n, (m, n), 6, k)
    nc = {name: torch.stack([v, v], -1)[..., 0] for name, v in kw.items()}
    nc["residual"] = kw["residual"].T.contiguous().T
    a_nc, b_nc = torch.stack([a, a], 1)[:, 0], torch.stack([b, b], 1)[:, 1]
    assert not (nc["out_threshold"].is_contiguous() or nc["residual"].is_contiguous() or a_nc.is_contiguous())
    want = bk.xnor_gemm_dual(a, b, k, **kw)
    for got in (bk.xnor_gemm_dual(a_nc, b_nc, k, **nc), bk.xnor_gemm_dual(a, b, k, **nc)):
        same(got[0], want[0])
        same(got[1], want[1])
    x, wt = random_bits(2, 7, 6, k=45, seed=20), random_bits(70, 3, 3, k=45, seed=21)
    res = torch.randn(2, 70, 7, 6, generator=gen(22)) * 5
    thr = torch.randn(70, generator=gen(23))
    want = bk.binary_conv2d_dual(x, wt, 45, padding=1, residual=res, out_threshold=thr)
    x_nc = torch.stack([x, x], 1)[:, 1]
    res_cl = res.contiguous(memory_format=torch.channels_last)
    got = bk.binary_conv2d_dual(x_nc, wt, 45, padding=1, residual=res_cl, out_threshold=thr)
    same(got[0], want[0])
    same(got[1], want[1])
    same(want[0], bk.binary_conv2d(x, wt, 45, padding=1, residual=res))


def test_dual_nan_and_inf(cpu_isa):
    """NaN y or NaN threshold gives bit 0 on every path; inf compares as IEEE."""
    m, n, k = 5, 70, 64
    a, b = random_bits(m, k=k, seed=13), random_bits(n, k=k, seed=14)
    mult = torch.full((n,), 0.5)
    mult[1], mult[2], mult[40] = float("nan"), float("inf"), -float("inf")
    thr = channel_values("out_threshold", n, gen(3), k)
    thr[3], thr[41], thr[42] = float("nan"), float("inf"), -float("inf")
    y, bits = bk.xnor_gemm_dual(a, b, k, multiplier=mult, out_threshold=thr)
    same(y, bk.xnor_gemm(a, b, k, multiplier=mult))
    same(bits, bk.xnor_gemm(a, b, k, multiplier=mult, out_threshold=thr))
    same(bits, bk.pack_bits(y, thr))
    u = bk.unpack_bits(bits, n)
    assert (u[:, 1] == -1).all() and (u[:, 3] == -1).all() and (u[:, 42] == 1).all()


def test_dual_without_float_steps_is_float_of_the_count():
    a, b = random_bits(4, k=50, seed=1), random_bits(9, k=50, seed=2)
    thr = torch.zeros(9)
    y, bits = bk.xnor_gemm_dual(a, b, 50, out_threshold=thr)
    same(y, bk.xnor_gemm(a, b, 50).float())
    same(bits, bk.xnor_gemm(a, b, 50, out_threshold=thr))


def test_dual_empty_outputs():
    a, b = random_bits(0, k=40, seed=1), random_bits(5, k=40, seed=2)
    y, bits = bk.xnor_gemm_dual(a, b, 40, out_threshold=torch.zeros(5))
    assert y.shape == (0, 5) and bits.shape == (0, 1) and y.dtype == torch.float32


# ---------------------------------------------------------------- opcheck, fake tensors, bad input


def test_dual_opcheck():
    a, b = random_bits(5, k=70, seed=30), random_bits(40, k=70, seed=31)
    for out_dtype in [None, torch.bfloat16]:
        kw = dual_args(["multiplier", "bias", "residual", "act_slope", "act_shift_in"], out_dtype, 40, (5, 40), 32, 70)
        torch.library.opcheck(torch.ops.bnn_kernels.xnor_gemm_dual, (a, b, 70), kw)
    x, wt = random_bits(1, 5, 5, k=33, seed=33), random_bits(35, 3, 3, k=33, seed=34)
    for out_dtype in [torch.float16, None]:
        kw = dual_args(["multiplier", "residual", "act_slope"], out_dtype, 35, (1, 35, 3, 3), 35, 33)
        args = (x, wt, 33, [1, 1], [0, 0], [1, 1], 1, 0)
        torch.library.opcheck(torch.ops.bnn_kernels.binary_conv2d_dual, args, kw)


def test_dual_fake_tensors_and_compile():
    x, wt = random_bits(2, 6, 5, k=40, seed=40), random_bits(70, 3, 3, k=20, seed=41)
    thr = torch.zeros(70)
    with FakeTensorMode() as mode:
        fx, fw, ft = mode.from_tensor(x), mode.from_tensor(wt), mode.from_tensor(thr)
        y, bits = bk.binary_conv2d_dual(
            fx, fw, 40, stride=2, padding=1, groups=2, out_threshold=ft, out_dtype=torch.float16
        )
    assert y.shape == (2, 70, 3, 3) and y.dtype == torch.float16
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert bits.shape == (2, 3, 3, 3) and bits.dtype == torch.int32
    a, b = random_bits(5, k=70, seed=36), random_bits(40, k=70, seed=37)
    kw = dual_args(["multiplier", "bias"], None, 40, (5, 40), 38, 70)
    f = torch.compile(lambda a, b: bk.xnor_gemm_dual(a, b, 70, **kw), fullgraph=True, backend="eager")
    got, want = f(a, b), bk.xnor_gemm_dual(a, b, 70, **kw)
    same(got[0], want[0])
    same(got[1], want[1])


_a, _b = random_bits(3, k=40, seed=0), random_bits(4, k=40, seed=1)
_v = torch.zeros(4)
_x, _w = random_bits(1, 4, 4, k=8, seed=2), random_bits(4, 3, 3, k=8, seed=3)


def _g(**kw):
    kw.setdefault("out_threshold", _v)
    return lambda: torch.ops.bnn_kernels.xnor_gemm_dual(_a, _b, 40, **kw)


def _c(**kw):
    kw.setdefault("out_threshold", _v)
    return lambda: bk.binary_conv2d_dual(_x, _w, 8, **kw)


BAD = [
    (_g(out_threshold=torch.zeros(3)), ValueError, r"out_threshold must have shape \[4\]"),
    (_g(out_threshold=_v.double()), TypeError, "out_threshold must be a float32"),
    (_g(out_dtype=torch.int32), TypeError, "out_dtype must be torch.float32, torch.float16 or torch.bfloat16"),
    (_g(out_dtype=torch.float64), TypeError, "out_dtype must be torch.float32"),
    (_g(multiplier=torch.zeros(5)), ValueError, r"multiplier must have shape \[4\]"),
    (_g(act_shift_in=_v), ValueError, "need act_slope"),
    (_g(residual=torch.zeros(4, 3)), ValueError, "residual must have the float output's shape"),
    (lambda: torch.ops.bnn_kernels.xnor_gemm_dual(_a, _b, 40), RuntimeError, "out_threshold"),
    (lambda: torch.ops.bnn_kernels.xnor_gemm_dual(_a, _b, 70, out_threshold=_v), ValueError, "k=70 needs"),
    (_c(out_threshold=torch.zeros(5)), ValueError, r"out_threshold must have shape \[4\]"),
    (_c(bias=_v.half()), TypeError, "bias must be a float32 tensor"),
    (_c(residual=torch.zeros(1, 2, 2, 4)), ValueError, "residual must have the float output's shape"),
    (_c(pad_value=True), TypeError, "pad_value must be the int"),
    (_c(groups=3), ValueError, "groups=3 must divide"),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_dual_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_dual_fake_rejects_what_the_kernel_rejects():
    with FakeTensorMode() as mode:
        a, b = mode.from_tensor(_a), mode.from_tensor(_b)
        with pytest.raises(Exception, match="out_threshold must have shape"):
            torch.ops.bnn_kernels.xnor_gemm_dual(a, b, 40, out_threshold=mode.from_tensor(torch.zeros(3)))
        with pytest.raises(Exception, match="out_dtype must be"):
            torch.ops.bnn_kernels.xnor_gemm_dual(a, b, 40, out_threshold=mode.from_tensor(_v), out_dtype=torch.int32)


# ---------------------------------------------------------------- on every device (CPU, CUDA)


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 70, 33), (130, 65, 1025)])
def test_xnor_gemm_dual_on_device(gemm_device, m, n, k):
    a, b = random_bits(m, k=k, seed=m + n), random_bits(n, k=k, seed=k)
    for steps, out_dtype in [((), None), (("multiplier", "bias", "residual", "act_slope"), torch.float16)]:
        kw = dual_args(steps, out_dtype, n, (m, n), m * n + k, k)
        dev_kw = {name: v.to(gemm_device) if isinstance(v, torch.Tensor) else v for name, v in kw.items()}
        y, bits = bk.xnor_gemm_dual(a.to(gemm_device), b.to(gemm_device), k, **dev_kw)
        want_y, want_bits = bk.xnor_gemm_dual(a, b, k, **kw)
        same(y, want_y, gemm_device)
        same(bits, want_bits, gemm_device)


@pytest.mark.parametrize("seed", range(4))
def test_binary_conv2d_dual_on_device(gemm_device, seed):
    rng = random.Random(seed)
    x, wt, cin, geo, s = random_conv(rng)
    acc = R.binary_conv2d(x, wt, cin, **geo)
    kw = dual_args(rng.choice(COMBOS), FLOATS[seed], wt.shape[0], tuple(acc.shape), s, cin)
    dev_kw = {name: v.to(gemm_device) if isinstance(v, torch.Tensor) else v for name, v in kw.items()}
    y, bits = bk.binary_conv2d_dual(x.to(gemm_device), wt.to(gemm_device), cin, **geo, **dev_kw)
    want_y, want_bits = bk.binary_conv2d_dual(x, wt, cin, **geo, **kw)
    same(y, want_y, gemm_device)
    same(bits, want_bits, gemm_device)
