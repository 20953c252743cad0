import itertools
import random

import pytest
import torch
import torch.nn.functional as F

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import clean_tail, gen, noncontiguous, randn, random_bits, same

pytestmark = pytest.mark.usefixtures("conv_path")


def random_conv(rng, seed):
    groups = rng.choice([1, 1, 2, 3, 4])
    cg = rng.choice([1, 3, 16, 31, 32, 33, 40, 64, 65, rng.randint(1, 100)])
    og = rng.choice([1, 2, 3, 5, 8, 17, 40, rng.randint(1, 12)])
    kh, kw = rng.choice([(1, 1), (3, 3), (2, 3), (3, 1), (5, 5), (rng.randint(1, 4), rng.randint(1, 4))])
    stride = rng.choice([1, 2, (2, 3), (1, 2)])
    dilation = rng.choice([1, 1, 2, (3, 2)])
    padding = rng.choice([0, 1, 2, (1, 0), (0, 2), (3, 1)])
    pad_value = rng.choice([0, 0, 1, -1])
    n = rng.choice([1, 2, 3])
    dh = dilation if isinstance(dilation, int) else dilation[0]
    dw = dilation if isinstance(dilation, int) else dilation[1]
    ph = padding if isinstance(padding, int) else padding[0]
    pw = padding if isinstance(padding, int) else padding[1]
    min_h, min_w = max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dw * (kw - 1) + 1 - 2 * pw)
    h, w = rng.randint(min_h, max(min_h, 12)), rng.randint(min_w, max(min_w, 12))
    x = randn(n, groups * cg, h, w, seed=seed)
    wt = randn(groups * og, cg, kh, kw, seed=seed + 1)
    return x, wt, dict(stride=stride, padding=padding, dilation=dilation, groups=groups, pad_value=pad_value)


def pack_nhwc(x):
    return bk.pack_bits(x.permute(0, 2, 3, 1))


def run(x, wt, **kw):
    return bk.binary_conv2d(pack_nhwc(x), pack_nhwc(wt), x.shape[1], **kw)


@pytest.mark.parametrize("seed", range(40))
def test_binary_conv2d_matches_reference(seed, rng):
    x, wt, kw = random_conv(rng, seed)
    got = run(x, wt, **kw)
    want = R.binary_conv2d(pack_nhwc(x), pack_nhwc(wt), x.shape[1], **kw)
    assert got.dtype == torch.int32 and got.shape == want.shape, kw
    assert torch.equal(got, want), kw


@pytest.mark.parametrize("seed", range(6))
def test_binary_conv2d_equals_float_conv_of_signs(seed, rng):
    """Zero padding of a +-1 tensor, exactly what F.conv2d does in training code."""
    x, wt, kw = random_conv(rng, seed + 100)
    kw["pad_value"] = 0
    sx = torch.where(x >= 0, 1.0, -1.0).double()
    sw = torch.where(wt >= 0, 1.0, -1.0).double()
    want = F.conv2d(sx, sw, None, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    assert torch.equal(run(x, wt, **kw), want.to(torch.int32))


@pytest.fixture
def threads(request):
    """Sets torch's CPU thread count for one test and restores it after."""
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


@pytest.mark.parametrize("pad_value", [0, 1, -1])
@pytest.mark.parametrize("nthreads", [1, 3])
def test_binary_conv2d_padding_correction(pad_value, nthreads, threads):
    """Outputs that see some, many or only padded taps (padding past the kernel's reach),
    many output channels per group (several B tiles) and channel groups that start inside a
    32-bit word, against F.conv2d of the signs with the same padding value."""
    threads(nthreads)
    x, wt = randn(3, 2 * 37, 7, 9, seed=20), randn(2 * 45, 37, 3, 2, seed=21)
    stride, padding, dilation = (1, 2), (4, 3), (2, 1)
    sx = F.pad(torch.where(x >= 0, 1.0, -1.0).double(), (3, 3, 4, 4), value=float(pad_value))
    sw = torch.where(wt >= 0, 1.0, -1.0).double()
    want = F.conv2d(sx, sw, None, stride, 0, dilation, groups=2).to(torch.int32)
    got = run(x, wt, stride=stride, padding=padding, dilation=dilation, groups=2, pad_value=pad_value)
    assert torch.equal(got, want)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("nthreads", [1, 3])
def test_binary_conv2d_thread_counts(seed, nthreads, rng, threads):
    threads(nthreads)
    x, wt, kw = random_conv(rng, seed + 200)
    assert torch.equal(run(x, wt, **kw), R.binary_conv2d(pack_nhwc(x), pack_nhwc(wt), x.shape[1], **kw)), kw


def test_binary_conv2d_pad_values_differ_at_border():
    x, wt = randn(1, 40, 6, 6, seed=1), randn(4, 40, 3, 3, seed=2)
    outs = {pv: run(x, wt, padding=1, pad_value=pv) for pv in (0, 1, -1)}
    # interior pixels do not see padding
    assert torch.equal(outs[0][..., 1:-1, 1:-1], outs[1][..., 1:-1, 1:-1])
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[1], outs[-1])
    for pv, y in outs.items():
        assert torch.equal(y, R.binary_conv2d(pack_nhwc(x), pack_nhwc(wt), 40, 1, 1, 1, 1, pv))


def test_binary_conv2d_resnet_layer_and_layout():
    x, wt = randn(2, 128, 14, 14, seed=3), randn(128, 128, 3, 3, seed=4)
    y = run(x, wt, padding=1)
    assert y.shape == (2, 128, 14, 14)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, R.binary_conv2d(pack_nhwc(x), pack_nhwc(wt), 128, 1, 1, 1, 1, 0))


def test_binary_conv2d_depthwise_and_odd_groups():
    x, wt = randn(2, 48, 7, 7, seed=5), randn(48, 1, 3, 3, seed=6)
    assert torch.equal(
        run(x, wt, padding=1, groups=48), R.binary_conv2d(pack_nhwc(x), pack_nhwc(wt), 48, 1, 1, 1, 48, 0)
    )
    x, wt = randn(1, 3 * 37, 5, 5, seed=7), randn(6, 37, 3, 3, seed=8)
    assert torch.equal(
        run(x, wt, padding=1, groups=3, pad_value=1), R.binary_conv2d(pack_nhwc(x), pack_nhwc(wt), 111, 1, 1, 1, 3, 1)
    )


def test_binary_conv2d_noncontiguous_and_empty():
    x, wt = randn(2, 40, 5, 5, seed=9), randn(3, 40, 3, 3, seed=10)
    xb, wb = pack_nhwc(x), pack_nhwc(wt)
    want = R.binary_conv2d(xb, wb, 40, 1, 1, 1, 1, 0)
    assert torch.equal(bk.binary_conv2d(noncontiguous(xb), noncontiguous(wb), 40, padding=1), want)
    empty = bk.binary_conv2d(xb[:0], wb, 40, padding=1)
    assert empty.shape == (0, 3, 5, 5)


def test_binary_conv2d_ignores_dirty_channel_tail():
    x, wt = randn(1, 40, 4, 4, seed=11), randn(2, 40, 3, 3, seed=12)
    xb, wb = pack_nhwc(x), pack_nhwc(wt)
    dirty = torch.tensor([0, -(1 << 10)], dtype=torch.int32)
    assert torch.equal(
        bk.binary_conv2d(xb | dirty, wb | dirty, 40, padding=1), R.binary_conv2d(xb, wb, 40, 1, 1, 1, 1, 0)
    )


def test_binary_conv2d_opcheck_and_compile():
    x, wt = randn(2, 36, 5, 6, seed=13), randn(4, 18, 3, 2, seed=14)
    xb, wb = pack_nhwc(x), pack_nhwc(wt)
    torch.library.opcheck(torch.ops.bnn_kernels.binary_conv2d, (xb, wb, 36, [2, 1], [1, 0], [1, 2], 2, -1))
    f = torch.compile(lambda a, b: bk.binary_conv2d(a, b, 36, 2, 1, 1, 2, 1) + 1, fullgraph=True, backend="eager")
    assert torch.equal(f(xb, wb), R.binary_conv2d(xb, wb, 36, 2, 1, 1, 2, 1) + 1)


xb = torch.zeros(1, 5, 5, 2, dtype=torch.int32)
wb = torch.zeros(4, 3, 3, 2, dtype=torch.int32)


def _op_conv(x, w, stride, padding, dilation):
    """The registered op itself, past the Python wrapper's checks (the kernels' own checks)."""
    return torch.ops.bnn_kernels.binary_conv2d(x, w, 40, stride, padding, dilation, 1, 0)


BAD = [
    (lambda: bk.binary_conv2d(xb.float(), wb, 40), TypeError, "x_bits must be an int32"),
    (lambda: bk.binary_conv2d(xb, wb[0], 40), ValueError, "w_bits must have 4 dims"),
    (lambda: bk.binary_conv2d(xb, wb, 70), ValueError, "in_channels=70"),
    (lambda: bk.binary_conv2d(xb, wb, 0), ValueError, "in_channels must be >= 1"),
    (lambda: bk.binary_conv2d(xb, wb, 40, groups=3), ValueError, "groups=3 must divide in_channels"),
    (lambda: bk.binary_conv2d(xb, wb[:3], 40, groups=2), ValueError, "must divide the out channels"),
    (lambda: bk.binary_conv2d(xb, wb, 40, groups=0), ValueError, "groups must be >= 1"),
    (lambda: bk.binary_conv2d(xb, wb, 40, groups=2), ValueError, "w_bits"),
    (lambda: bk.binary_conv2d(xb, wb, 40, stride=0), ValueError, "stride must be >= 1"),
    (lambda: bk.binary_conv2d(xb, wb, 40, stride=(1, 0)), ValueError, "stride must be >= 1"),
    (lambda: bk.binary_conv2d(xb, wb, 40, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: bk.binary_conv2d(xb, wb, 40, dilation=0), ValueError, "dilation must be >= 1"),
    (lambda: bk.binary_conv2d(xb, wb, 40, pad_value=2), ValueError, "pad_value must be 0, 1 or -1"),
    (lambda: bk.binary_conv2d(xb, wb, 40, pad_value=0.5), TypeError, "pad_value"),
    (lambda: bk.binary_conv2d(xb, wb, 40, stride=(1, 2, 3)), ValueError, "stride"),
    (lambda: bk.binary_conv2d(xb, wb, 40, stride=(1.5, 1)), TypeError, "stride must be an int or a pair"),
    (lambda: bk.binary_conv2d(xb, wb, 40, padding=(True, 1)), TypeError, "padding must be an int or a pair"),
    (lambda: R.binary_conv2d(xb, wb, 40, dilation="2"), TypeError, "dilation must be an int or a pair"),
    (lambda: bk.binary_conv2d(xb, wb, 40, dilation=3), ValueError, "larger than the padded input"),
    (lambda: bk.binary_conv2d(xb[:, :2], wb, 40), ValueError, "larger than the padded input"),
    # beyond int32 the sizes derived from the geometry could overflow: named, in Python and in the op
    (lambda: bk.binary_conv2d(xb, wb, 40, padding=2**62), ValueError, r"padding must be at most 2\^31 - 1"),
    (lambda: bk.binary_conv2d(xb, wb, 40, stride=(1, 2**40)), ValueError, r"stride must be at most 2\^31 - 1"),
    (lambda: bk.binary_conv2d(xb, wb, 40, dilation=(2**62, 1)), ValueError, r"dilation must be at most 2\^31 - 1"),
    (lambda: _op_conv(xb, wb, [1, 1], [2**62, 0], [1, 1]), ValueError, r"padding must be at most 2\^31 - 1"),
    (lambda: _op_conv(xb, wb, [1, 1], [0, 0], [1, 2**62]), ValueError, r"dilation must be at most 2\^31 - 1"),
    (lambda: _op_conv(xb, wb, [1, 1], [2**31 - 1] * 2, [1, 1]), ValueError, "pixels per channel, too large"),
    (lambda: _op_conv(xb.to("meta"), wb.to("meta"), [1, 1], [2**31 - 1] * 2, [1, 1]), ValueError, "too large"),
    (lambda: _op_conv(xb.to("meta"), wb.to("meta"), [1, 1], [0, 0], [1, 2**62]), ValueError, "dilation must be at"),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_binary_conv2d_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------- on every device (CPU, CUDA)
# gemm_device: the CPU, then CUDA under every forced GEMM path. Dirty weight tails included.


def _conv_cases(n_cases: int, seed: int):
    rnd = random.Random(seed)
    grid = list(
        itertools.product(
            [3, 32, 40, 64, 100],  # channels
            [(1, 1), (3, 3), (2, 3)],  # kernel
            [1, 2, 4],  # groups
            [(1, 1), (2, 3)],  # stride
            [(1, 1), (3, 2)],  # dilation
            [(0, 0), (1, 1), (2, 1)],  # padding
            [0, 1, -1],  # pad_value
        )
    )
    cases = [c for c in grid if c[0] % c[2] == 0]
    rnd.shuffle(cases)
    return cases[:n_cases]


@pytest.mark.parametrize("c,kernel,groups,stride,dilation,padding,pad_value", _conv_cases(60, 0))
def test_binary_conv2d_on_device(gemm_device, c, kernel, groups, stride, dilation, padding, pad_value):
    g = gen(c + 7 * groups + 13 * pad_value)
    n, h, w, o = 2, 11, 9, 4 * groups
    kh, kw = kernel
    if (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) < 0 or (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) < 0:
        pytest.skip("kernel larger than the padded input")
    x = random_bits(n, h, w, k=c, gen=g)
    wt = random_bits(o, kh, kw, k=c // groups, dirty=True, gen=g)
    args = (c, stride, padding, dilation, groups, pad_value)
    out = bk.binary_conv2d(x.to(gemm_device), wt.to(gemm_device), *args)
    assert out.is_contiguous(memory_format=torch.channels_last)
    same(out, bk.binary_conv2d(x, wt, *args), gemm_device)
    want = R.binary_conv2d(x, clean_tail(wt, c // groups), *args).contiguous(memory_format=torch.channels_last)
    same(out, want, gemm_device)


@pytest.mark.parametrize("c,groups", [(64, 64), (96, 3), (512, 1), (33, 1)])
def test_binary_conv2d_shapes_on_device(gemm_device, c, groups):
    g = gen(c + groups)
    x = random_bits(3, 14, 14, k=c, gen=g)
    wt = random_bits(2 * groups if groups > 1 else 70, 3, 3, k=c // groups, gen=g)
    for pad_value in (0, 1, -1):
        args = (c, 1, 1, 1, groups, pad_value)
        want = R.binary_conv2d(x, wt, *args).contiguous(memory_format=torch.channels_last)
        same(bk.binary_conv2d(x.to(gemm_device), wt.to(gemm_device), *args), want, gemm_device)


def test_binary_conv2d_non_contiguous_and_empty_on_device(gemm_device):
    g = gen(9)
    x = random_bits(2, 8, 8, k=64, gen=g).permute(0, 2, 1, 3)  # not contiguous
    wt = random_bits(16, 3, 3, k=64, gen=g)
    want = R.binary_conv2d(x, wt, 64, 1, 1).contiguous(memory_format=torch.channels_last)
    same(bk.binary_conv2d(x.to(gemm_device), wt.to(gemm_device), 64, 1, 1), want, gemm_device)
    e = bk.binary_conv2d(x[:0].to(gemm_device), wt.to(gemm_device), 64, 1, 1)
    same(e, bk.binary_conv2d(x[:0], wt, 64, 1, 1), gemm_device)


@pytest.mark.cuda
def test_binary_conv2d_large_cuda():
    g = gen(10)
    x = random_bits(8, 56, 56, k=256, gen=g)
    wt = random_bits(256, 3, 3, k=256, gen=g)
    same(bk.binary_conv2d(x.cuda(), wt.cuda(), 256, 1, 1), bk.binary_conv2d(x, wt, 256, 1, 1), "cuda")


def test_binary_conv2d_opcheck_on_device(device):
    g = gen(14)
    args = (
        random_bits(2, 6, 6, k=40, gen=g).to(device),
        random_bits(8, 3, 3, k=20, gen=g).to(device),
        40,
        [1, 1],
        [1, 1],
        [1, 1],
        2,
        0,
    )
    torch.library.opcheck(torch.ops.bnn_kernels.binary_conv2d.default, args)
