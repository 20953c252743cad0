"""The fused epilogue of xnor_gemm and binary_conv2d (csrc/common/epilogue.h): every
combination of steps and outputs equals the unfused torch sequence (reference.epilogue) bit
for bit, on randomized shapes, on every CPU ISA path."""

import itertools
import random

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import gen, random_bits
from tests.helpers import same_bits as same

STEPS = ["multiplier", "bias", "residual"]
ACTS = [
    (),
    ("act_slope",),
    ("act_slope", "act_shift_in"),
    ("act_slope", "act_shift_out"),
    ("act_slope", "act_shift_in", "act_shift_out"),
]
OUTPUTS = [None, torch.float32, torch.float16, torch.bfloat16, "bits"]


def channel_values(name, n, g, k):
    """Per-channel float32 [n] values for argument `name`, with special cases mixed in."""
    if name == "multiplier":
        v = torch.randn(n, generator=g) * 0.1
        special = torch.tensor([1.0, -1.0, 0.0, 0.5])  # exact, sign flip, zero (-0.0 results)
        v[: min(n, 4)] = special[: min(n, 4)]
        return v
    if name == "act_slope":
        return torch.rand(n, generator=g) * 0.5 - 0.1
    if name == "out_threshold":
        # integers, which the integer-valued y often equals exactly (>= versus >)
        return torch.randint(-k, k + 1, (n,), generator=g).float() * 0.5
    return torch.randn(n, generator=g) * (k**0.5)


def epilogue_args(steps, output, n, float_shape, seed, k):
    g = gen(seed)
    kw = {}
    for name in steps:
        if name == "residual":
            kw[name] = torch.randn(*float_shape, generator=g) * (k**0.5)
        else:
            kw[name] = channel_values(name, n, g, k)
    if output == "bits":
        kw["out_threshold"] = channel_values("out_threshold", n, g, k)
    elif output is not None:
        kw["out_dtype"] = output
    return kw


COMBOS = [
    tuple(s for s, on in zip(STEPS, flags) if on) + act for flags in itertools.product([0, 1], repeat=3) for act in ACTS
]


def gemm_shape(rng):
    m = rng.choice([1, 2, 3, 4, 9, rng.randint(1, 80)])
    n = rng.choice([1, 7, 31, 32, 33, 65, 257, 300, rng.randint(1, 200)])
    k = rng.choice([1, 31, 33, 64, 100, rng.randint(1, 700)])
    return m, n, k


@pytest.mark.parametrize("output", OUTPUTS, ids=str)
@pytest.mark.parametrize("steps", COMBOS, ids="+".join)
def test_xnor_gemm_epilogue_combinations(steps, output, rng, cpu_isa):
    m, n, k = gemm_shape(rng)
    seed = rng.randint(0, 2**31)
    a, b = random_bits(m, k=k, seed=seed), random_bits(n, k=k, seed=seed + 1)
    kw = epilogue_args(steps, output, n, (m, n), seed, k)
    got = bk.xnor_gemm(a, b, k, **kw)
    same(got, R.xnor_gemm(a, b, k, **kw))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 8, 37])
@pytest.mark.parametrize("output", [torch.float32, torch.float16, "bits"], ids=str)
def test_xnor_gemm_epilogue_small_m_and_tiled(m, output, cpu_isa):
    """Rows of the GEMV path (M <= 3) and of the tiled path, N across vector and chunk tails."""
    for n, k in [(5, 40), (47, 130), (270, 97), (513, 64)]:
        a, b = random_bits(m, k=k, seed=m + n), random_bits(n, k=k, seed=n)
        kw = epilogue_args(STEPS + ["act_slope", "act_shift_in", "act_shift_out"], output, n, (m, n), m * n, k)
        same(bk.xnor_gemm(a, b, k, **kw), R.xnor_gemm(a, b, k, **kw))


def test_xnor_gemm_epilogue_several_k_blocks_and_threads(cpu_isa):
    """k past one K block (16384 bits) and a threaded run."""
    torch.set_num_threads(2)
    m, n, k = 40, 70, 16384 + 4100
    a, b = random_bits(m, k=k, seed=1), random_bits(n, k=k, seed=2)
    for output in [torch.float32, "bits"]:
        kw = epilogue_args(["multiplier", "bias", "residual", "act_slope"], output, n, (m, n), 3, k)
        same(bk.xnor_gemm(a, b, k, **kw), R.xnor_gemm(a, b, k, **kw))


def test_xnor_gemm_epilogue_noncontiguous_arguments():
    m, n, k = 6, 40, 70
    a, b = random_bits(m, k=k, seed=4), random_bits(n, k=k, seed=5)
    kw = epilogue_args(["multiplier", "bias", "residual", "act_slope"], torch.float32, n, (m, n), 6, k)
    nc = {name: torch.stack([v, v], -1)[..., 0] for name, v in kw.items() if isinstance(v, torch.Tensor)}
    nc["residual"] = kw["residual"].T.contiguous().T
    assert not nc["multiplier"].is_contiguous() and not nc["residual"].is_contiguous()
    same(bk.xnor_gemm(a, b, k, **nc), R.xnor_gemm(a, b, k, **kw))


def test_xnor_gemm_epilogue_bits_feed_the_next_layer():
    """Packed output of one GEMM is the packed input of the next: equal to pack_bits of y."""
    m, n, k = 9, 77, 120
    a, b = random_bits(m, k=k, seed=7), random_bits(n, k=k, seed=8)
    kw = epilogue_args(["multiplier", "bias"], "bits", n, (m, n), 9, k)
    bits = bk.xnor_gemm(a, b, k, **kw)
    y = bk.xnor_gemm(a, b, k, multiplier=kw["multiplier"], bias=kw["bias"])
    same(bits, bk.pack_bits(y, kw["out_threshold"]))
    c = random_bits(5, k=n, seed=10)
    same(bk.xnor_gemm(bits, c, n), R.xnor_gemm(R.pack_bits(y - kw["out_threshold"]), c, n))


def test_xnor_gemm_epilogue_out_dtype_alone():
    a, b = random_bits(5, k=50, seed=11), random_bits(6, k=50, seed=12)
    acc = bk.xnor_gemm(a, b, 50)
    for dt in [torch.float32, torch.float16, torch.bfloat16]:
        same(bk.xnor_gemm(a, b, 50, out_dtype=dt), acc.to(dt))
    same(bk.xnor_gemm(a, b, 50, out_dtype=torch.int32), acc)


def test_epilogue_nan_and_inf(cpu_isa):
    """NaN propagates (compared as NaN, payload unspecified) and thresholds to bit 0; inf
    follows IEEE float32; large values round to inf in float16 exactly as torch does."""
    m, n, k = 5, 40, 64
    a, b = random_bits(m, k=k, seed=13), random_bits(n, k=k, seed=14)
    mult = torch.full((n,), 0.5)
    mult[1], mult[2], mult[3], mult[4] = float("nan"), float("inf"), -float("inf"), 3e38
    bias = torch.zeros(n)
    bias[5], bias[6] = float("inf"), -float("inf")
    bias[2] = -float("inf")  # inf + -inf = NaN where acc != 0
    res = torch.zeros(m, n)
    res[0, 7], res[1, 8] = float("nan"), 7e4  # 7e4 overflows float16
    for out in [torch.float32, torch.float16, torch.bfloat16, "bits"]:
        kw = dict(multiplier=mult, bias=bias, residual=res, act_slope=torch.full((n,), 0.25))
        kw.update({"out_threshold": torch.zeros(n)} if out == "bits" else {"out_dtype": out})
        got, want = bk.xnor_gemm(a, b, k, **kw), R.xnor_gemm(a, b, k, **kw)
        same(got, want)
        if out != "bits":
            assert got[:, 1].isnan().all() and got[0, 7].isnan()
    bits = bk.unpack_bits(bk.xnor_gemm(a, b, k, multiplier=mult, out_threshold=torch.full((n,), -1e30)), n)
    assert (bits[:, 1] == -1).all() and (bits[:, 0] == 1).all()  # NaN >= t is false
    assert (bk.unpack_bits(bk.xnor_gemm(a, b, k, out_threshold=torch.full((n,), float("nan"))), n) == -1).all()


def test_float_to_half_rounding_matches_torch(cpu_isa):
    """float16 / bfloat16 rounding of y over every binade (subnormal, normal, ties at odd
    multipliers, overflow to inf) equals torch's conversion."""
    n = 192
    mult = 2.0 ** torch.arange(-40, 56, dtype=torch.float32).repeat(2)
    mult[1::2] *= 1.0 + 2.0**-11 + 2.0**-20  # off-grid mantissas: ties and near-ties
    a, b = random_bits(16, k=333, seed=16), random_bits(n, k=333, seed=17)
    for dt in [torch.float16, torch.bfloat16]:
        kw = dict(multiplier=mult, out_dtype=dt)
        same(bk.xnor_gemm(a, b, 333, **kw), R.xnor_gemm(a, b, 333, **kw))


# ---------------------------------------------------------------- conv


def random_conv(rng):
    groups = rng.choice([1, 1, 2, 3])
    cg = rng.choice([1, 3, 31, 33, 40, rng.randint(1, 70)])
    og = rng.choice([1, 3, 11, 17, 40, rng.randint(1, 24)])
    kh, kw = rng.choice([(1, 1), (3, 3), (2, 3), (3, 1)])
    stride = rng.choice([1, 2, (2, 3)])
    dilation = rng.choice([1, 1, (2, 1)])
    padding = rng.choice([0, 1, (1, 2)])
    pad_value = rng.choice([0, 0, 1, -1])
    n = rng.choice([1, 2])
    h, w = rng.randint(2 * kh + 2, 10), rng.randint(2 * kw + 2, 10)
    seed = rng.randint(0, 2**31)
    x = random_bits(n, h, w, k=groups * cg, seed=seed)
    wt = random_bits(groups * og, kh, kw, k=cg, seed=seed + 1)
    geo = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, pad_value=pad_value)
    return x, wt, groups * cg, geo, seed


@pytest.mark.parametrize("seed", range(30))
def test_binary_conv2d_epilogue_matches_reference(seed, conv_path):
    rng = random.Random(seed)
    x, wt, cin, geo, s = random_conv(rng)
    acc = R.binary_conv2d(x, wt, cin, **geo)
    steps, output = rng.choice(COMBOS), rng.choice(OUTPUTS)
    kw = epilogue_args(steps, output, wt.shape[0], tuple(acc.shape), s, cin * wt.shape[1] * wt.shape[2])
    got = bk.binary_conv2d(x, wt, cin, **geo, **kw)
    want = R.binary_conv2d(x, wt, cin, **geo, **kw)
    if output != "bits":
        assert got.is_contiguous(memory_format=torch.channels_last)
        want = torch.empty_like(got).copy_(want)  # channels_last strides (ambiguous for O = 1)
    same(got, want)


def test_binary_conv2d_epilogue_residual_layouts_and_bits_chain():
    """residual in NCHW or channels_last gives the same result; bits output [N, Ho, Wo,
    ceil(O/32)] is the x_bits of the next conv."""
    x = random_bits(2, 7, 6, k=45, seed=20)
    wt = random_bits(70, 3, 3, k=45, seed=21)
    acc = R.binary_conv2d(x, wt, 45, padding=1)
    res = torch.randn(acc.shape, generator=gen(22)) * 5
    a = bk.binary_conv2d(x, wt, 45, padding=1, residual=res)
    b = bk.binary_conv2d(x, wt, 45, padding=1, residual=res.contiguous(memory_format=torch.channels_last))
    same(a, b)
    thr = torch.randn(70, generator=gen(23))
    bits = bk.binary_conv2d(x, wt, 45, padding=1, residual=res, out_threshold=thr)
    assert bits.shape == (2, 7, 6, 3)
    same(bits, bk.pack_bits(a.permute(0, 2, 3, 1), thr))
    w2 = random_bits(5, 1, 1, k=70, seed=24)
    same(bk.binary_conv2d(bits, w2, 70), R.binary_conv2d(bits, w2, 70).contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("groups,cout", [(1, 70), (2, 64), (2, 70), (4, 128)])
@pytest.mark.parametrize("output", [torch.float32, torch.bfloat16, "bits"], ids=str)
def test_binary_conv2d_epilogue_in_block_and_pass(groups, cout, output, conv_path):
    """The epilogue per pixel block (floats; bits when a group's channels are whole words) and
    after the conv (bits of groups that split words), several blocks and threads."""
    torch.set_num_threads(2)
    x = random_bits(2, 13, 11, k=groups * 20, seed=groups + cout)
    wt = random_bits(cout, 3, 3, k=20, seed=cout)
    geo = dict(padding=1, groups=groups)
    acc = R.binary_conv2d(x, wt, groups * 20, **geo)
    steps = ["multiplier", "bias", "residual", "act_slope", "act_shift_out"]
    kw = epilogue_args(steps, output, cout, tuple(acc.shape), groups * cout, 180)
    got = bk.binary_conv2d(x, wt, groups * 20, **geo, **kw)
    want = R.binary_conv2d(x, wt, groups * 20, **geo, **kw)
    same(got, want if output == "bits" else torch.empty_like(got).copy_(want))


# ---------------------------------------------------------------- opcheck and bad input


def test_epilogue_opcheck():
    a, b = random_bits(5, k=70, seed=30), random_bits(40, k=70, seed=31)
    for output in [torch.float32, torch.bfloat16, "bits"]:
        kw = epilogue_args(["multiplier", "bias", "residual", "act_slope", "act_shift_in"], output, 40, (5, 40), 32, 70)
        torch.library.opcheck(torch.ops.bnn_kernels.xnor_gemm, (a, b, 70), kw)
    x, wt = random_bits(1, 5, 5, k=33, seed=33), random_bits(35, 3, 3, k=33, seed=34)
    for output in [torch.float16, "bits"]:
        kw = epilogue_args(["multiplier", "residual", "act_slope"], output, 35, (1, 35, 3, 3), 35, 33)
        torch.library.opcheck(torch.ops.bnn_kernels.binary_conv2d, (x, wt, 33, [1, 1], [0, 0], [1, 1], 1, 0), kw)


def test_epilogue_torch_compile():
    a, b = random_bits(5, k=70, seed=36), random_bits(40, k=70, seed=37)
    kw = epilogue_args(["multiplier", "bias"], "bits", 40, (5, 40), 38, 70)
    f = torch.compile(lambda a, b: bk.xnor_gemm(a, b, 70, **kw), fullgraph=True, backend="eager")
    same(f(a, b), R.xnor_gemm(a, b, 70, **kw))


_a, _b = random_bits(3, k=40, seed=0), random_bits(4, k=40, seed=1)
_v = torch.zeros(4)
_x, _w = random_bits(1, 4, 4, k=8, seed=2), random_bits(4, 3, 3, k=8, seed=3)


def _g(**kw):
    return lambda: bk.xnor_gemm(_a, _b, 40, **kw)


def _c(**kw):
    return lambda: bk.binary_conv2d(_x, _w, 8, **kw)


BAD = [
    (_g(multiplier=_v.double()), TypeError, "multiplier must be a float32 tensor"),
    (_g(bias=_v.half()), TypeError, "bias must be a float32 tensor"),
    (_g(act_slope=torch.zeros(4, dtype=torch.int32)), TypeError, "act_slope must be a float32"),
    (_g(multiplier=torch.zeros(5)), ValueError, r"multiplier must have shape \[4\]"),
    (_g(bias=torch.zeros(1, 4)), ValueError, r"bias must have shape \[4\]"),
    (_g(act_slope=_v, act_shift_in=torch.zeros(3)), ValueError, r"act_shift_in must have shape \[4\]"),
    (_g(act_slope=_v, act_shift_out=torch.zeros(3)), ValueError, r"act_shift_out must have shape \[4\]"),
    (_g(out_threshold=torch.zeros(3)), ValueError, r"out_threshold must have shape \[4\]"),
    (_g(out_threshold=_v.double()), TypeError, "out_threshold must be a float32"),
    (_g(act_shift_in=_v), ValueError, "need act_slope"),
    (_g(act_shift_out=_v), ValueError, "need act_slope"),
    (_g(residual=torch.zeros(4, 3)), ValueError, "residual must have the float output's shape"),
    (_g(residual=torch.zeros(3, 4, dtype=torch.float64)), TypeError, "residual must be a float32"),
    (_g(out_dtype=torch.float64), TypeError, "out_dtype must be torch.float32"),
    (_g(out_dtype=torch.int8), TypeError, "out_dtype must be"),
    (_g(bias=_v, out_dtype=torch.int32), TypeError, "out_dtype must be"),
    (_g(out_dtype=torch.float32, out_threshold=_v), ValueError, "exclude each other"),
    (_c(multiplier=torch.zeros(3)), ValueError, r"multiplier must have shape \[4\]"),
    (_c(residual=torch.zeros(1, 2, 2, 4)), ValueError, "residual must have the float output's shape"),
    (_c(out_dtype=torch.float16, out_threshold=_v), ValueError, "exclude each other"),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_epilogue_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_epilogue_mixed_devices_rejected():
    with pytest.raises(ValueError, match="same device"):
        bk.xnor_gemm(_a, _b, 40, bias=_v.cuda())


# ---------------------------------------------------------------- on every device (CPU, CUDA)
# gemm_device: the CPU, then CUDA under every forced GEMM path; CUDA must equal the CPU.


@pytest.mark.parametrize("output", OUTPUTS, ids=str)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 70, 33), (9, 257, 300), (130, 65, 1025)])
def test_xnor_gemm_epilogue_on_device(gemm_device, m, n, k, output):
    a, b = random_bits(m, k=k, seed=m + n), random_bits(n, k=k, seed=k)
    for steps in [(), ("multiplier", "bias", "residual", "act_slope", "act_shift_in", "act_shift_out")]:
        kw = epilogue_args(steps, output, n, (m, n), m * n + k, k)
        dev_kw = {name: v.to(gemm_device) if isinstance(v, torch.Tensor) else v for name, v in kw.items()}
        out = bk.xnor_gemm(a.to(gemm_device), b.to(gemm_device), k, **dev_kw)
        same(out, bk.xnor_gemm(a, b, k, **kw), gemm_device)


@pytest.mark.parametrize("seed", range(6))
def test_binary_conv2d_epilogue_on_device(gemm_device, seed):
    rng = random.Random(seed)
    x, wt, cin, geo, s = random_conv(rng)
    acc = R.binary_conv2d(x, wt, cin, **geo)
    kw = epilogue_args(rng.choice(COMBOS), OUTPUTS[seed % len(OUTPUTS)], wt.shape[0], tuple(acc.shape), s, cin)
    dev_kw = {name: v.to(gemm_device) if isinstance(v, torch.Tensor) else v for name, v in kw.items()}
    out = bk.binary_conv2d(x.to(gemm_device), wt.to(gemm_device), cin, **geo, **dev_kw)
    same(out, bk.binary_conv2d(x, wt, cin, **geo, **kw), gemm_device)
