"""binary_conv2d edges on every CPU path: dirty channel tails with groups, many channels per
group (several K blocks of the GEMM), groups whose out channels do not fill a tile, zero
padding corrections per group, several pixel blocks and thread counts, sequences of shapes
that reuse the kernel's work buffers."""

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import clean_tail, gen
from tests.ops.edge_helpers import dirty_tail, num_threads

pytestmark = pytest.mark.usefixtures("conv_path")


def random_signs(*shape, seed):
    return torch.randint(0, 2, shape, generator=gen(seed)).float() * 2 - 1


def case(rng, seed, cg=None, groups=None, size=None, min_pad=0):
    groups = groups or rng.choice([1, 2, 3, 4])
    cg = cg or rng.choice([rng.randint(1, 31), rng.randint(33, 63), rng.randint(65, 140), 32, 64])
    og = rng.choice([1, 3, 5, 7, 11, 17, rng.randint(1, 20)])
    kh, kw = rng.choice([(1, 1), (3, 3), (2, 3), (3, 1), (rng.randint(1, 4), rng.randint(1, 4))])
    stride = (rng.randint(1, 3), rng.randint(1, 3))
    dilation = (rng.randint(1, 3), rng.randint(1, 3))
    padding = (rng.randint(min_pad, 3), rng.randint(min_pad, 3))
    h0 = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0])
    w0 = max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1])
    h, w = size or (rng.randint(h0, h0 + 9), rng.randint(w0, w0 + 9))
    h, w = max(h, h0), max(w, w0)
    n = rng.randint(1, 3)
    x = bk.pack_bits(random_signs(n, h, w, groups * cg, seed=seed))
    wt = bk.pack_bits(random_signs(groups * og, kh, kw, cg, seed=seed + 1))
    kw_ = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, pad_value=rng.choice([0, 0, 1, -1]))
    return x, wt, groups * cg, kw_


def check(x, wt, c, kw, seed, dirty=True):
    want = R.binary_conv2d(x, wt, c, **kw)
    if dirty:  # garbage past the last channel of x and past each group's channels in w
        x, wt = dirty_tail(x, c, seed + 7), dirty_tail(wt, c // kw["groups"], seed + 8)
    got = bk.binary_conv2d(x, wt, c, **kw)
    assert got.shape == want.shape and torch.equal(got, want), (tuple(x.shape), tuple(wt.shape), c, kw)


@pytest.mark.parametrize("seed", range(16))
def test_binary_conv2d_dirty_tails_groups_strides_dilations(seed, rng):
    x, wt, c, kw = case(rng, seed)
    with num_threads(rng.choice([1, 2, 3])):
        check(x, wt, c, kw, seed)


@pytest.mark.parametrize("seed", range(2))
def test_binary_conv2d_many_channels_per_group(seed, rng):
    """Rows of taps * words longer than one K block of the GEMM (256 64-bit words)."""
    cg = rng.randint(1900, 2300)  # 3x3 taps of >= 60 words: > 256 64-bit words
    x, wt, c, kw = case(rng, seed, cg=cg, groups=rng.choice([1, 2]), size=(rng.randint(3, 5), rng.randint(3, 5)))
    kw.update(padding=1, dilation=1, stride=1)
    wt = bk.pack_bits(random_signs(wt.shape[0], 3, 3, cg, seed=seed + 2))
    check(x, wt, c, kw, seed)


@pytest.mark.parametrize("seed", range(3))
def test_binary_conv2d_zero_padding_per_group(seed, rng):
    """Zero padding corrected with each group's own weights; out channels per group that do
    not fill a B tile, so every group's tiles start mid-way in a naive layout."""
    groups = rng.randint(3, 6)
    x, wt, c, kw = case(rng, seed, groups=groups, min_pad=1)
    kw.update(pad_value=0)
    check(x, wt, c, kw, seed)


@pytest.mark.parametrize("seed", range(3))
def test_binary_conv2d_many_pixel_blocks_threaded(seed, rng):
    """Enough output pixels for several blocks per thread, the last block partial."""
    x, wt, c, kw = case(rng, seed, size=(rng.randint(20, 30), rng.randint(20, 30)))
    kw.update(stride=1, dilation=1)
    with num_threads(rng.choice([2, 3])):
        check(x, wt, c, kw, seed)


def test_binary_conv2d_shape_sequences_reuse_buffers(rng):
    """Work buffers are kept between calls: a long row (dense garbage) then odd-length rows."""
    for i in range(8):
        cg = rng.choice([rng.randint(200, 400), rng.randint(1, 31)])
        x, wt, c, kw = case(rng, 1000 + i, cg=cg)
        check(x, wt, c, kw, 1000 + i, dirty=bool(i % 2))


def test_binary_conv2d_empty_batch_every_path(rng):
    x, wt, c, kw = case(rng, 5)
    out = bk.binary_conv2d(x[:0], wt, c, **kw)
    assert out.shape == (0, *R.binary_conv2d(x[:1], wt, c, **kw).shape[1:])


@pytest.mark.parametrize("seed", range(3))
def test_binary_conv2d_every_bit_differs_long_rows(seed, rng):
    """Inputs all +1 against weights all -1 (and all +1): every XOR bit counts, so per-lane byte
    counters that are widened too late would overflow; rows of many words (several folds)."""
    c = rng.randint(700, 1100)
    k = rng.choice([1, 3])
    pad = rng.choice([0, 1])
    h, w = rng.randint(k, 7), rng.randint(k, 7)
    o = rng.randint(1, 40)
    x = bk.pack_bits(torch.ones(rng.randint(1, 2), h, w, c))
    for sign in (-1.0, 1.0):
        wt = bk.pack_bits(torch.full((o, k, k, c), sign))
        kw = dict(stride=1, padding=pad, dilation=1, groups=1, pad_value=rng.choice([0, 1, -1]))
        check(x, wt, c, kw, seed)


@pytest.mark.parametrize("seed", range(4))
def test_binary_conv2d_groups_of_whole_words(seed, rng):
    """Groups whose channels are a multiple of 32 (each group starts at a word: the direct
    kernel takes them), out channels per group across 8-lane and 32-channel chunk edges."""
    groups = rng.randint(2, 4)
    x, wt, c, kw = case(rng, seed, cg=rng.choice([32, 64, 96]), groups=groups)
    og = rng.choice([7, 8, 9, 31, 33, 40])
    kh, kw_w = wt.shape[1], wt.shape[2]
    wt = bk.pack_bits(random_signs(groups * og, kh, kw_w, c // groups, seed=seed + 3))
    with num_threads(rng.choice([1, 2])):
        check(x, wt, c, kw, seed)


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_conv_path_choice(monkeypatch, isa):
    """By default the direct kernel runs wherever the GEMM would run its AVX2 or AVX-512
    kernel, the implicit GEMM on the scalar path; BNN_KERNELS_CONV_PATH forces either."""
    monkeypatch.delenv("BNN_KERNELS_CONV_PATH", raising=False)
    monkeypatch.setenv("BNN_KERNELS_CPU_ISA", isa)
    gemm = bk.cpu_gemm_isa()
    if not gemm.startswith(isa):
        pytest.skip(f"this CPU has no {isa} GEMM kernel")
    direct = "direct-" + isa
    assert bk.cpu_conv_path() == (gemm if isa == "scalar" else direct)
    monkeypatch.setenv("BNN_KERNELS_CONV_PATH", "gemm")
    assert bk.cpu_conv_path() == gemm
    monkeypatch.setenv("BNN_KERNELS_CONV_PATH", "direct")
    assert bk.cpu_conv_path() == direct


def test_binary_conv2d_weights_changed_in_place_between_calls(rng):
    """Prepared weights are reused only for the very same words: weights changed in place, or
    the same storage seen with another shape, give the new result at once."""
    x = bk.pack_bits(random_signs(1, 6, 7, 70, seed=31))
    wt = bk.pack_bits(random_signs(40, 3, 3, 70, seed=32))
    kw = dict(stride=1, padding=1, dilation=1, groups=1, pad_value=0)
    for step in range(4):
        check(x, wt, 70, kw, 40 + step, dirty=False)
        flat = wt.view(-1)
        flat[rng.randrange(flat.numel())] ^= 1 << rng.randrange(31)  # one bit, in place
    # the same storage as 1x1 weights of 9x the out channels (another layout, same address)
    x1 = bk.pack_bits(random_signs(1, 5, 5, 70, seed=33))
    check(x1, wt.view(360, 1, 1, 3), 70, dict(kw, padding=0), 50, dirty=False)


def test_binary_conv2d_same_words_other_layout():
    """The same weight words as 3x3 taps of 20 channels (bits 20..31 of every word unused) and
    then as one 1x1 tap of 276 channels (those bits used): each layout prepared on its own."""
    w = torch.randint(-(2**31), 2**31, (8, 1, 1, 9), generator=gen(61), dtype=torch.int64).to(torch.int32)
    x3 = bk.pack_bits(random_signs(1, 5, 6, 20, seed=62))
    x1 = bk.pack_bits(random_signs(1, 5, 6, 276, seed=63))
    for _ in range(2):
        got3 = bk.binary_conv2d(x3, w.view(8, 3, 3, 1), 20, padding=1)
        assert torch.equal(got3, R.binary_conv2d(x3, clean_tail(w.view(8, 3, 3, 1), 20), 20, padding=1))
        got1 = bk.binary_conv2d(x1, w, 276)
        assert torch.equal(got1, R.binary_conv2d(x1, clean_tail(w, 276), 276))
