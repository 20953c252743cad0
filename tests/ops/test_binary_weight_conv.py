"""binary_weight_conv2d: binary weights times real activations, against the float64
reference, on every CPU path (cpu_isa) and on CUDA.

The rounding contract tested here (csrc/wconv/binary_weight_conv.h):
- integer-valued x: every partial sum is exact, so every path and device gives exactly
  ``float32(dot) * multiplier`` rounded, ``+ bias`` rounded;
- random x: within 3 * K * 2^-24 of sum |x| * |multiplier| of the float64 result;
- the CPU scalar path is one sequential sum over k = tap * Cg + c from +0 (checked against a
  float32 loop), which the float32 AVX2 panel kernel and the CUDA kernel reproduce bit for
  bit (signed zeros included).
"""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import conv_id, noncontiguous, random_bits, random_conv_configs, same_bits

CONFIGS = random_conv_configs(14, seed=11) + [
    dict(cin=64, cout=16, k=(1, 1), stride=1, padding=0, dilation=1, groups=1, n=2, h=5, w=7),  # direct 1x1 path
    dict(cin=5, cout=9, k=(1, 1), stride=1, padding=0, dilation=1, groups=1, n=3, h=4, w=3),
    # 1x1 kernels that must not take the direct path: groups, a stride, padding
    dict(cin=12, cout=6, k=(1, 1), stride=1, padding=0, dilation=1, groups=3, n=2, h=5, w=4),
    dict(cin=10, cout=4, k=(1, 1), stride=(1, 2), padding=0, dilation=1, groups=1, n=2, h=5, w=7),
    dict(cin=7, cout=3, k=(1, 1), stride=1, padding=(0, 1), dilation=1, groups=1, n=1, h=4, w=5),
    dict(cin=40, cout=8, k=(3, 3), stride=1, padding=1, dilation=1, groups=4, n=2, h=9, w=8),
    dict(cin=33, cout=6, k=(2, 3), stride=(2, 1), padding=(0, 2), dilation=(2, 1), groups=3, n=1, h=7, w=6),
]


def make(cfg, seed, integer=False, dirty=True, affine=True):
    g = torch.Generator().manual_seed(seed)
    cg, kh, kw = cfg["cin"] // cfg["groups"], *cfg["k"]
    shape = (cfg["n"], cfg["cin"], cfg["h"], cfg["w"])
    if integer:
        x = torch.randint(-8, 9, shape, generator=g).float()
    else:
        x = torch.randn(shape, generator=g)
    w = random_bits(cfg["cout"], kh, kw, k=cg, gen=g, dirty=dirty)
    m = b = None
    if affine:
        # halves and small integers: every epilogue result of an integer dot is exact too
        m = (
            (torch.randint(1, 8, (cfg["cout"],), generator=g) * 0.5)
            if integer
            else torch.randn(cfg["cout"], generator=g)
        )
        b = (
            torch.randint(-3, 4, (cfg["cout"],), generator=g).float()
            if integer
            else torch.randn(cfg["cout"], generator=g)
        )
    return x, w, m, b


def args(cfg):
    return cfg["cin"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"]


def bound(x, cfg, m):
    """sum over the taps of |x| * |multiplier| for each output (float64)."""
    cg, (kh, kw) = cfg["cin"] // cfg["groups"], cfg["k"]
    ones = torch.ones(cfg["cout"], cg, kh, kw, dtype=torch.float64)
    s = F.conv2d(x.double().abs(), ones, None, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    return s if m is None else s * m.double().abs().view(-1, 1, 1)


def check_close(got, x, w, cfg, m, b, eps=2.0**-24):
    want = R.binary_weight_conv2d(x.double(), w, *args(cfg), m, b)
    assert got.shape == want.shape and got.dtype == x.dtype
    k = cfg["k"][0] * cfg["k"][1] * cfg["cin"] // cfg["groups"]
    tol = 3 * (k + 2) * eps * bound(x, cfg, m) + 2 * eps * (
        want.abs() + (0 if b is None else b.double().abs().view(-1, 1, 1))
    )
    err = (got.double() - want).abs()
    assert (err <= tol + 1e-30).all(), f"max err {err.max()} tol {tol.min()}"


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("cfg", CONFIGS, ids=conv_id)
def test_matches_reference(cfg):
    x, w, m, b = make(cfg, 1)
    check_close(bk.binary_weight_conv2d(x, w, *args(cfg), m, b), x, w, cfg, m, b)


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("cfg", CONFIGS, ids=conv_id)
@pytest.mark.parametrize("fmt", ["nchw", "channels_last", "strided"])
def test_exact_on_integers_every_layout(cfg, fmt):
    x, w, m, b = make(cfg, 2, integer=True)
    dot = R.binary_weight_conv2d(x.double(), w, *args(cfg))
    want = (dot.float() * m.view(-1, 1, 1)) + b.view(-1, 1, 1)  # two roundings, as the kernel
    if fmt == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif fmt == "strided":
        x = noncontiguous(x)
    got = bk.binary_weight_conv2d(x, w, *args(cfg), m, b)
    assert torch.equal(got, want)
    # output in x's memory format, as F.conv2d
    wz = torch.zeros(cfg["cout"], cfg["cin"] // cfg["groups"], *cfg["k"])
    ref = F.conv2d(x, wz, None, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    for mf in (torch.contiguous_format, torch.channels_last):
        assert got.is_contiguous(memory_format=mf) == ref.is_contiguous(memory_format=mf)


def sequential(x, w, cfg, m, b):
    """The scalar path's contract in float32: one sum over k = tap * Cg + c from +0 per output."""
    cg, (kh, kw) = cfg["cin"] // cfg["groups"], cfg["k"]
    sh, sw = (cfg["stride"],) * 2 if isinstance(cfg["stride"], int) else cfg["stride"]
    ph, pw = (cfg["padding"],) * 2 if isinstance(cfg["padding"], int) else cfg["padding"]
    dh, dw = (cfg["dilation"],) * 2 if isinstance(cfg["dilation"], int) else cfg["dilation"]
    xp = F.pad(x, (pw, pw, ph, ph)).numpy()
    sg = R.unpack_bits(w, cg, torch.float32).numpy()  # [O, KH, KW, Cg]
    want = R.binary_weight_conv2d(x.double(), w, *args(cfg))
    out = np.zeros(want.shape, np.float32)
    og = cfg["cout"] // cfg["groups"]
    for n, o, i, j in np.ndindex(*want.shape):
        c0 = (o // og) * cg
        s = np.float32(0)
        for t in range(kh * kw):
            a, c = divmod(t, kw)
            for ch in range(cg):
                v = xp[n, c0 + ch, i * sh + a * dh, j * sw + c * dw]
                s = np.float32(s + (v if sg[o, a, c, ch] > 0 else -v))
        out[n, o, i, j] = np.float32(np.float32(s * m[o].item()) + np.float32(b[o].item()))
    return torch.from_numpy(out)


@pytest.mark.parametrize("cfg", [CONFIGS[i] for i in (0, 3, 15, 16, 19, 20)], ids=conv_id)
def test_scalar_path_sums_in_order(cfg, monkeypatch):
    monkeypatch.setenv("BNN_KERNELS_CPU_ISA", "scalar")
    small = dict(cfg, n=1, h=min(cfg["h"], 7), w=min(cfg["w"], 7))
    x, w, m, b = make(small, 3)
    assert torch.equal(bk.binary_weight_conv2d(x, w, *args(small), m, b), sequential(x, w, small, m, b))


@pytest.mark.usefixtures("cpu_isa")
def test_deterministic_across_threads():
    cfg = dict(cin=70, cout=12, k=(3, 3), stride=1, padding=1, dilation=1, groups=2, n=3, h=20, w=17)
    x, w, m, b = make(cfg, 4)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = bk.binary_weight_conv2d(x, w, *args(cfg), m, b)
        torch.set_num_threads(max(2, old))
        assert torch.equal(bk.binary_weight_conv2d(x, w, *args(cfg), m, b), one)
    finally:
        torch.set_num_threads(old)


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_dtypes(dtype):
    cfg = CONFIGS[2]
    x, w, m, b = make(cfg, 5)
    x = x.to(dtype)
    got = bk.binary_weight_conv2d(x, w, *args(cfg), m, b)
    assert got.dtype == dtype
    if dtype == torch.float64:
        check_close(got, x, w, cfg, m, b, eps=2.0**-53)
    else:  # computed in float32 and rounded once to dtype
        want = bk.binary_weight_conv2d(x.float(), w, *args(cfg), m, b).to(dtype)
        assert torch.equal(got, want)


def test_no_affine_and_empty_batch():
    cfg = CONFIGS[1]
    x, w, _, _ = make(cfg, 6, integer=True, affine=False)
    want = R.binary_weight_conv2d(x.double(), w, *args(cfg)).float()
    assert torch.equal(bk.binary_weight_conv2d(x, w, *args(cfg)), want)
    assert bk.binary_weight_conv2d(x[:0], w, *args(cfg)).shape == (0, *want.shape[1:])


def test_opcheck_and_compile():
    cfg = CONFIGS[-1]
    x, w, m, b = make(cfg, 7)
    op = torch.ops.bnn_kernels.binary_weight_conv2d
    s, p, d = ([v] * 2 if isinstance(v, int) else list(v) for v in (cfg["stride"], cfg["padding"], cfg["dilation"]))
    torch.library.opcheck(op, (x, w, cfg["cin"], s, p, d, cfg["groups"], m, b))
    torch.library.opcheck(op, (x.contiguous(memory_format=torch.channels_last), w, cfg["cin"], s, p, d, 3, None, None))
    f = torch.compile(lambda a: bk.binary_weight_conv2d(a, w, *args(cfg), m, b) * 2, fullgraph=True, backend="eager")
    assert torch.equal(f(x), bk.binary_weight_conv2d(x, w, *args(cfg), m, b) * 2)


x4 = torch.zeros(1, 40, 5, 5)
w4 = torch.zeros(6, 3, 3, 1, dtype=torch.int32)  # groups=2: 20 channels per group
BAD = [
    (lambda: bk.binary_weight_conv2d(x4.int(), w4, 40, groups=2), TypeError, "x must be float"),
    (lambda: bk.binary_weight_conv2d(x4[0], w4, 40, groups=2), ValueError, r"x must have 4 dims"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 41, groups=2), ValueError, "in_channels=41 channels"),
    (lambda: bk.binary_weight_conv2d(x4, w4.float(), 40, groups=2), TypeError, "w_bits must be an int32"),
    (lambda: bk.binary_weight_conv2d(x4, w4[0], 40, groups=2), ValueError, "w_bits must have 4 dims"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, groups=3), ValueError, "groups=3 must divide in_channels"),
    (lambda: bk.binary_weight_conv2d(x4, w4[:5], 40, groups=2), ValueError, "must divide the out channels"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, groups=0), ValueError, "groups must be >= 1"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, groups=1), ValueError, "must have 2 words"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, 0, groups=2), ValueError, "stride must be >= 1"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, 1, -1, groups=2), ValueError, "padding must be >= 0"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, 1, 0, 0, groups=2), ValueError, "dilation must be >= 1"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, 1, 0, 3, groups=2), ValueError, "larger than the padded input"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, (1, 2, 3), groups=2), ValueError, "stride must be an int or a pair"),
    (lambda: bk.binary_weight_conv2d(x4, w4, 40, 1.5, groups=2), TypeError, "stride must be an int or a pair"),
    (
        lambda: bk.binary_weight_conv2d(x4, w4, 40, groups=2, multiplier=torch.ones(5)),
        ValueError,
        r"multiplier must have shape \[6\]",
    ),
    (
        lambda: bk.binary_weight_conv2d(x4, w4, 40, groups=2, bias=torch.ones(6, 1)),
        ValueError,
        r"bias must have shape \[6\]",
    ),
    (
        lambda: bk.binary_weight_conv2d(x4, w4, 40, groups=2, multiplier=torch.ones(6, dtype=torch.int32)),
        TypeError,
        "multiplier must be a floating",
    ),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------- on every device (CPU, CUDA)


@pytest.mark.parametrize("cfg", CONFIGS, ids=conv_id)
@pytest.mark.parametrize("channels_last", [False, True])
def test_device_matches_cpu_scalar_bit_for_bit(device, cfg, channels_last, monkeypatch):
    """Random x: the device's result equals the CPU scalar path's exactly (same order)."""
    x, w, m, b = make(cfg, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    monkeypatch.setenv("BNN_KERNELS_CPU_ISA", "scalar")
    want = bk.binary_weight_conv2d(x, w, *args(cfg), m, b)
    monkeypatch.delenv("BNN_KERNELS_CPU_ISA")
    on = [t.to(device) for t in (x, w, m, b)]
    got = bk.binary_weight_conv2d(on[0], on[1], *args(cfg), on[2], on[3])
    assert got.device.type == torch.device(device).type and got.stride() == want.stride()
    if device == "cpu":
        check_close(got, x, w, cfg, m, b)
    else:
        assert torch.equal(got.cpu(), want)


def test_opcheck_on_device(device):
    cfg = CONFIGS[2]
    x, w, m, b = make(cfg, 9)
    s, p, d = ([v] * 2 if isinstance(v, int) else list(v) for v in (cfg["stride"], cfg["padding"], cfg["dilation"]))
    on = [t.to(device) for t in (x, w, m, b)]
    torch.library.opcheck(
        torch.ops.bnn_kernels.binary_weight_conv2d.default,
        (on[0], on[1], cfg["cin"], s, p, d, cfg["groups"], on[2], on[3]),
    )


def test_random_shapes(rng):
    """A few more random geometries, seeded by the test id (channel tails, big kernels)."""
    r = random.Random(rng.random())
    for i in range(6):
        groups = r.choice([1, 2, 3])
        cg, og = r.randint(1, 80), r.randint(1, 9)
        kh, kw = r.randint(1, 4), r.randint(1, 4)
        cfg = dict(
            cin=cg * groups,
            cout=og * groups,
            k=(kh, kw),
            stride=(r.randint(1, 3), r.randint(1, 3)),
            padding=(r.randint(0, 2), r.randint(0, 2)),
            dilation=(r.randint(1, 2), r.randint(1, 2)),
            groups=groups,
            n=r.randint(1, 3),
            h=r.randint(8, 14),
            w=r.randint(8, 14),
        )
        x, w, m, b = make(cfg, 100 + i)
        check_close(bk.binary_weight_conv2d(x, w, *args(cfg), m, b), x, w, cfg, m, b)
        xi, wi, mi, bi = make(cfg, 200 + i, integer=True)
        want = (R.binary_weight_conv2d(xi.double(), wi, *args(cfg)).float() * mi.view(-1, 1, 1)) + bi.view(-1, 1, 1)
        assert torch.equal(bk.binary_weight_conv2d(xi, wi, *args(cfg), mi, bi), want)


# ---------------------------------------------------------------- the float32 panel kernels

# Panels of 16 output channels and tiles of 6 (AVX2) or 12 (AVX-512) patch rows: channel tails
# (1, 17, 22 per group), row tails (pixel counts not a multiple of 6 or 12), several blocks,
# the direct 1x1 path, groups with several panels each, a long K. Blocks hold 12 rows at these
# sizes, so the last three leave a tail of 1, 2 and 3 rows, which runs tiles over 4, 3 and 2
# panels at once on AVX2 (4 on AVX-512), each with a partial last panel (2, 13 and 4
# channels); tails of 7-11 rows (35, 70, 143 pixels...) run the AVX-512 tiles over 3 and 2
# panels.
PANEL_CONFIGS = [
    dict(cin=16, cout=50, k=(1, 1), stride=1, padding=0, dilation=1, groups=1, n=1, h=7, w=7),
    dict(cin=18, cout=90, k=(3, 3), stride=1, padding=1, dilation=1, groups=2, n=1, h=2, w=7),
    dict(cin=9, cout=20, k=(3, 3), stride=1, padding=1, dilation=1, groups=1, n=1, h=3, w=5),
    dict(cin=24, cout=17, k=(3, 3), stride=1, padding=1, dilation=1, groups=1, n=1, h=7, w=5),
    dict(cin=64, cout=48, k=(1, 1), stride=1, padding=0, dilation=1, groups=1, n=2, h=5, w=7),
    dict(cin=30, cout=66, k=(2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=3, n=2, h=9, w=11),
    dict(cin=8, cout=1, k=(3, 3), stride=1, padding=1, dilation=1, groups=1, n=3, h=13, w=13),
    dict(cin=300, cout=32, k=(3, 3), stride=2, padding=1, dilation=1, groups=1, n=1, h=12, w=12),
    dict(cin=16, cout=40, k=(3, 3), stride=1, padding=1, dilation=1, groups=2, n=1, h=31, w=29),
    dict(cin=20, cout=40, k=(3, 3), stride=1, padding=1, dilation=1, groups=1, n=1, h=11, w=13),
    dict(cin=12, cout=70, k=(1, 3), stride=1, padding=(0, 1), dilation=1, groups=1, n=1, h=3, w=3),
]
AFFINE = {"both": (True, True), "multiplier": (True, False), "bias": (False, True), "none": (False, False)}


def signed_zeros(x, seed):
    """x with about 40% of its values replaced by +0.0 or -0.0."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(x.shape, generator=g)
    zero = torch.where(torch.rand(x.shape, generator=g) < 0.5, -0.0, 0.0)
    return torch.where(u < 0.4, zero, x)


# The ISA caps that run a panel kernel: AVX2 with FMA, and AVX-512 (where the CPU has it, or in
# the emulated AVX-512 build).
PANEL_ISAS = ["avx2", "avx512"]


def skip_without(isa, monkeypatch):
    """The cap falls back to a lower path on a CPU without that ISA: nothing to compare."""
    monkeypatch.setenv("BNN_KERNELS_CPU_ISA", isa)
    if not bk.cpu_gemm_isa().startswith(isa):
        pytest.skip(f"this CPU has no {isa} kernels")


def scalar_and_panel(isa, monkeypatch, x, w, cfg, m, b):
    skip_without(isa, monkeypatch)
    monkeypatch.setenv("BNN_KERNELS_CPU_ISA", "scalar")
    want = bk.binary_weight_conv2d(x, w, *args(cfg), m, b)
    monkeypatch.setenv("BNN_KERNELS_CPU_ISA", isa)
    return want, bk.binary_weight_conv2d(x, w, *args(cfg), m, b)


@pytest.mark.parametrize("cfg", CONFIGS + PANEL_CONFIGS, ids=conv_id)
@pytest.mark.parametrize("isa", PANEL_ISAS)
def test_panel_kernel_sums_in_scalar_order(cfg, isa, monkeypatch):
    """float32 with the ISA capped at AVX2 or AVX-512 (a panel kernel where the CPU has that
    ISA): random x, bit for bit the scalar path's result."""
    x, w, m, b = make(cfg, 12)
    want, got = scalar_and_panel(isa, monkeypatch, x, w, cfg, m, b)
    same_bits(got, want)


@pytest.mark.parametrize("cfg", PANEL_CONFIGS, ids=conv_id)
@pytest.mark.parametrize("affine", list(AFFINE))
@pytest.mark.parametrize("isa", PANEL_ISAS)
def test_panel_kernel_signed_zeros_and_affine(cfg, affine, isa, monkeypatch):
    """Sums from +0 in the scalar order, so signed zeros come out as on the scalar path; the
    multiplier and the bias apply only where given (adding no bias keeps a -0.0)."""
    x, w, m, b = make(cfg, 14)
    x = signed_zeros(x, 15)
    use_m, use_b = AFFINE[affine]
    m, b = (m.abs() if use_m else None), (b if use_b else None)
    want, got = scalar_and_panel(isa, monkeypatch, x, w, cfg, m, b)
    same_bits(got, want)


@pytest.mark.parametrize("isa", PANEL_ISAS)
def test_panel_kernel_all_zero_inputs_keep_the_scalar_sign(isa, monkeypatch):
    """Outputs whose every term is +-0 (a 1x1 conv of 2 channels on zero inputs): the sum
    starts from +0, so it stays +0 even where every term is -0, as in the scalar loop."""
    cfg = dict(cin=2, cout=20, k=(1, 1), stride=1, padding=0, dilation=1, groups=1, n=2, h=6, w=7)
    x, w, _, _ = make(cfg, 16)
    x = torch.where(torch.rand(x.shape, generator=torch.Generator().manual_seed(17)) < 0.5, -0.0, 0.0)
    want, got = scalar_and_panel(isa, monkeypatch, x, w, cfg, None, None)
    assert not torch.signbit(want).any()
    same_bits(got, want)


@pytest.mark.usefixtures("cpu_isa")
def test_weights_changed_in_place_between_calls(rng):
    """The panel kernel keeps its transposed weights between calls: weights changed in place,
    or the same storage seen with another shape, give the new result at once."""
    cfg = dict(cin=40, cout=20, k=(3, 3), stride=1, padding=1, dilation=1, groups=1, n=1, h=6, w=5)
    x, w, m, b = make(cfg, 18, integer=True)
    for _ in range(4):
        dot = R.binary_weight_conv2d(x.double(), w, *args(cfg)).float()
        assert torch.equal(bk.binary_weight_conv2d(x, w, *args(cfg), m, b), dot * m.view(-1, 1, 1) + b.view(-1, 1, 1))
        c = rng.randrange(cfg["cin"])  # one weight bit below cin, in place
        w[rng.randrange(cfg["cout"]), rng.randrange(3), rng.randrange(3), c // 32] ^= (
            1 << (c % 32) if c % 32 < 31 else -(2**31)
        )
    # the same storage as 1x1 weights of 18x the out channels (another layout, same address)
    cfg1 = dict(cfg, cin=20, cout=360, k=(1, 1), padding=0)
    w1, x1 = w.view(360, 1, 1, 1), x[:, :20].contiguous()
    want = R.binary_weight_conv2d(x1.double(), w1, *args(cfg1)).float()
    assert torch.equal(bk.binary_weight_conv2d(x1, w1, *args(cfg1)), want)
