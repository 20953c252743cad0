"""Helpers shared by the whole test suite: random inputs, exact comparison, float64
references of the packed modules, random conv geometries."""

from __future__ import annotations

import importlib.util
import os
import random
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str):
    """scripts/<name>.py imported as module `name` (once; registered in sys.modules, where
    dataclasses look their module up while a class is created)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


# ---------------------------------------------------------------- random inputs


def gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(*shape, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed)).to(dtype)


def random_bits(
    *shape, k: int, seed: int | None = None, gen: torch.Generator | None = None, dirty: bool = False
) -> torch.Tensor:
    """Packed rows of k random bits, [..., ceil(k/32)] int32, from seed or gen; the tail bits
    past k are 0, or random with dirty=True (kernels must ignore them)."""
    if gen is None:
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
    w = (k + 31) // 32
    t = torch.randint(-(2**31), 2**31, (*shape, w), dtype=torch.int64, generator=gen).to(torch.int32)
    if not dirty and k % 32:
        t[..., -1] &= (1 << (k % 32)) - 1
    return t


def clean_tail(bits: torch.Tensor, k: int) -> torch.Tensor:
    """A copy of packed rows of k bits with the tail bits past k cleared (the reference wants
    clean tails; the kernels ignore them)."""
    bits = bits.clone()
    if k % 32:
        bits[..., -1] &= (1 << (k % 32)) - 1
    return bits


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous view (every other element of a doubled last dim)."""
    wide = torch.stack([t, torch.zeros_like(t)], dim=-1).reshape(*t.shape[:-1], 2 * t.shape[-1])
    v = wide[..., ::2]
    assert not v.is_contiguous() and torch.equal(v, t)
    return v


def fma_exposing_case(dtype, seed, m=5, n=48, k=300):
    """Inputs on which dot * scale + bias rounds differently with and without an FMA.

    x holds small integers, so every dot product is an exact integer whatever the summation
    order; scales have full-precision mantissas; the biases of the even features cancel row 0's
    rounded product, which leaves exactly 0 when the product is rounded before the add and the
    product's rounding error when both are fused. Returns x, w, scale, bias, the exact dot
    products (float64) and the accumulation dtype."""
    from bnn_kernels import reference

    g = torch.Generator().manual_seed(seed)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x = torch.randint(-8, 9, (m, k), generator=g).to(dtype)
    w = random_bits(n, k=k, seed=seed)
    dot = x.double() @ reference.unpack_bits(w, k, torch.float64).T
    scale = (torch.rand(n, generator=g, dtype=torch.float64) + 0.5).to(acc)
    bias = torch.randn(n, generator=g, dtype=torch.float64).to(acc)
    bias[0::2] = -(dot[0, 0::2].to(acc) * scale[0::2])
    return x, w, scale, bias, dot, acc


def fused(dot, scale, bias, acc):
    """dot * scale + bias rounded once (an FMA): the exact value (fractions) rounded to float64,
    then to acc (for float32 inputs of fma_exposing_case the float64 value is already exact)."""
    from fractions import Fraction

    out = [
        [float(Fraction(d) * Fraction(s) + Fraction(b)) for d, s, b in zip(row, scale.tolist(), bias.tolist())]
        for row in dot.tolist()
    ]
    return torch.tensor(out, dtype=torch.float64).to(acc)


# ---------------------------------------------------------------- comparison


def same(out: torch.Tensor, expect: torch.Tensor, device: str | None = None) -> None:
    """out equals expect exactly: values (NaN == NaN), dtype, shape and strides; out lies on
    `device` when given (expect may lie elsewhere, e.g. a CPU result for a CUDA one)."""
    if device is not None:
        assert out.device.type == torch.device(device).type
    assert out.dtype == expect.dtype
    assert out.shape == expect.shape
    assert out.stride() == expect.stride()
    torch.testing.assert_close(out.cpu(), expect.cpu(), rtol=0, atol=0, equal_nan=True)


_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def same_bits(out: torch.Tensor, expect: torch.Tensor, device: str | None = None) -> None:
    """same(), and float32 / float16 / bfloat16 bit for bit: -0.0 differs from +0.0 (only a
    NaN's payload may differ)."""
    same(out, expect, device)
    if out.dtype in _INT_VIEW:
        o, e = out.cpu(), expect.cpu()
        keep = ~o.isnan()
        assert torch.equal(o[keep].view(_INT_VIEW[o.dtype]), e[keep].view(_INT_VIEW[o.dtype]))


# ---------------------------------------------------------------- float64 references of the packed modules


def pm1(x: torch.Tensor, t=0.0, ch_dim: int = 1) -> torch.Tensor:
    """+1 where x >= t (t per channel along ch_dim) else -1, float64."""
    if isinstance(t, torch.Tensor) and t.dim() == 1:
        shape = [1] * x.dim()
        shape[ch_dim] = -1
        t = t.view(shape)
    return torch.where(x >= t, 1.0, -1.0).double()


def ref_conv(x, w, stride=1, padding=0, dilation=1, groups=1, pad_value=0):
    """float64 conv with optional constant padding (pad_value) instead of zeros."""
    x, w = x.double(), w.double()
    if pad_value:
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        x = F.pad(x, (pw, pw, ph, ph), value=float(pad_value))
        padding = 0
    return F.conv2d(x, w, None, stride, padding, dilation, groups)


def random_conv_configs(n: int, seed: int = 0):
    """n random conv geometries (channels not multiples of 32, odd kernels, groups, strides)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        groups = rng.choice([1, 1, 2, 4])
        cg = rng.choice([1, 3, 8, 31, 33, 40, 70])
        og = rng.choice([1, 3, 8])
        kh, kw = rng.choice([(1, 1), (3, 3), (2, 3), (3, 1)])
        stride = rng.choice([1, (2, 3), 2])
        dilation = rng.choice([1, 1, (3, 2)])
        padding = rng.choice([0, 1, (2, 1)])
        h = rng.randint(kh * 3 + 2, 12)
        w_ = rng.randint(kw * 3 + 2, 12)
        out.append(
            dict(
                cin=cg * groups,
                cout=og * groups,
                k=(kh, kw),
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                n=rng.randint(1, 3),
                h=h,
                w=w_,
            )
        )
    return out


def conv_id(c):
    return f"c{c['cin']}o{c['cout']}k{c['k'][0]}{c['k'][1]}s{c['stride']}p{c['padding']}d{c['dilation']}g{c['groups']}"
