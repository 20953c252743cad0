"""Shared helpers for the test suite."""
import torch


def gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(*shape, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed)).to(dtype)


def random_bits(*shape, k: int, seed: int) -> torch.Tensor:
    """Packed rows of k random bits with clean tails: [..., ceil(k/32)]."""
    from bnn_kernels import reference

    x = torch.randint(0, 2, (*shape, k), generator=gen(seed)) * 2 - 1
    return reference.pack_bits(x.float())


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

    out = [[float(Fraction(d) * Fraction(s) + Fraction(b)) for d, s, b in zip(row, scale.tolist(), bias.tolist())]
           for row in dot.tolist()]
    return torch.tensor(out, dtype=torch.float64).to(acc)
