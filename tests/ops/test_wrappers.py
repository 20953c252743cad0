"""The Python op wrappers' own plumbing (bnn_kernels/ops): documented defaults, and each
argument reaching the op under its own name, checked against bnn_kernels.reference on random
shapes."""

import random

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import bnn_kernels as bk
from bnn_kernels import reference as R
from tests.helpers import random_bits


@pytest.mark.parametrize("seed", range(3))
def test_unpack_bits_default_dtype_is_float32(seed):
    rng = random.Random(seed)
    k = rng.randint(1, 200)
    bits = random_bits(rng.randint(1, 5), k=k, seed=seed)
    y = bk.unpack_bits(bits, k)
    assert y.dtype == torch.float32
    assert torch.equal(y, R.unpack_bits(bits, k))


# ---------------------------------------------------------------- the fakes agree with the kernels


def fake_run(fn, args, kwargs):
    """fn's outputs under FakeTensorMode (the register_fake kernels), tensors converted."""
    with FakeTensorMode() as mode:

        def conv(v):
            return mode.from_tensor(v) if isinstance(v, torch.Tensor) else v

        return fn(*[conv(a) for a in args], **{k: conv(v) for k, v in kwargs.items()})


def assert_fake_matches(fn, args, kwargs=None):
    """The fake's outputs have the real outputs' shapes, dtypes and memory layouts."""
    kwargs = kwargs or {}
    real, fake = fn(*args, **kwargs), fake_run(fn, args, kwargs)
    real, fake = (real, fake) if isinstance(real, tuple) else ((real,), (fake,))
    assert len(real) == len(fake)
    for r, f in zip(real, fake):
        assert (tuple(f.shape), f.dtype, layout(f)) == (tuple(r.shape), r.dtype, layout(r))


def layout(t):
    """The strides that matter: those of the dims longer than 1."""
    return [s for s, d in zip(t.stride(), t.shape) if d > 1]


def epilogue_kwargs(rng, n, float_shape, g):
    """A random subset of the float steps (never out_dtype: the default output dtype is checked)."""
    kw = {}
    for name in ("multiplier", "bias", "act_slope"):
        if rng.random() < 0.5:
            kw[name] = torch.randn(n, generator=g)
    if "act_slope" in kw and rng.random() < 0.5:
        kw["act_shift_in"] = torch.randn(n, generator=g)
    if rng.random() < 0.4:
        kw["residual"] = torch.randn(float_shape, generator=g)
    return kw or {"bias": torch.randn(n, generator=g)}


def random_conv(rng, g):
    """Packed conv inputs of a random geometry (non-square kernels, pairs of strides, paddings
    and dilations, groups) and its arguments."""
    groups = rng.choice([1, 2, 3])
    cin, cout = groups * rng.randint(1, 40), groups * rng.randint(1, 5)
    kh, kw = rng.randint(1, 4), rng.randint(1, 4)
    stride, padding, dilation = ((rng.randint(1, 3), rng.randint(1, 3)) for _ in range(3))
    padding = (rng.randint(0, 2), rng.randint(0, 2))
    h = dilation[0] * (kh - 1) + rng.randint(1, 9)
    w = dilation[1] * (kw - 1) + rng.randint(1, 9)
    x = random_bits(rng.randint(1, 3), h, w, k=cin, gen=g)
    wt = random_bits(cout, kh, kw, k=cin // groups, gen=g)
    return (x, wt, cin, stride, padding, dilation, groups, rng.choice([0, 1, -1]))


@pytest.mark.parametrize("seed", range(6))
def test_fakes_match_the_kernels_on_random_geometry_and_epilogues(seed):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    args = random_conv(rng, g)
    assert_fake_matches(bk.binary_conv2d, args)
    n, ho_wo = args[1].shape[0], bk.binary_conv2d(*args).shape[2:]
    float_shape = (args[0].shape[0], n, *ho_wo)
    assert_fake_matches(bk.binary_conv2d, args, epilogue_kwargs(rng, n, float_shape, g))
    assert_fake_matches(bk.binary_conv2d, args, {"out_threshold": torch.randn(n, generator=g)})
    m, n, k = rng.randint(1, 9), rng.randint(1, 70), rng.randint(1, 200)
    a, b = random_bits(m, k=k, gen=g), random_bits(n, k=k, gen=g)
    assert_fake_matches(bk.xnor_gemm, (a, b, k))
    assert_fake_matches(bk.xnor_gemm, (a, b, k), epilogue_kwargs(rng, n, (m, n), g))
    assert_fake_matches(bk.xnor_gemm, (a, b, k), {"out_threshold": torch.randn(n, generator=g)})


@pytest.mark.parametrize("seed", range(3))
def test_fakes_reject_extra_words_as_the_kernels_do(seed):
    """Packed rows with more words than ceil(k / 32): the kernels raise, and so must the fakes
    (else torch.compile accepts what eager rejects)."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    k = rng.randint(1, 200)
    extra = (k + 31) // 32 + rng.randint(1, 3)
    a, b = (torch.randint(-(2**31), 2**31, (r, extra), generator=g, dtype=torch.int64).int() for r in (3, 5))
    for fn, args in ((bk.xnor_gemm, (a, b, k)), (bk.unpack_bits, (a, k))):
        with pytest.raises(ValueError, match="words"):
            fn(*args)
        with pytest.raises(Exception, match="words"):
            fake_run(fn, args, {})


@pytest.mark.parametrize("seed", range(4))
def test_fakes_of_the_real_valued_ops_keep_leading_dims(seed):
    """binary_weight_linear over x [..., k] with any leading dims, bitserial_gemm reduced or not."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    k, n = rng.randint(1, 150), rng.randint(1, 40)
    lead = [rng.randint(1, 4) for _ in range(rng.randint(1, 3))]
    x, w = torch.randn(*lead, k, generator=g), random_bits(n, k=k, gen=g)
    assert_fake_matches(bk.binary_weight_linear, (x, w, k, torch.randn(n, generator=g), torch.randn(n, generator=g)))
    p, q, m = rng.randint(1, 3), rng.randint(1, 2), rng.randint(1, 6)
    a, wp = random_bits(p, m, k=k, gen=g), random_bits(q, n, k=k, gen=g)
    coefs = ([1 << i for i in range(p)], [2] * q)
    for reduce in (True, False):
        assert_fake_matches(bk.bitserial_gemm, (a, wp, k, *coefs, 0, -1, reduce))
