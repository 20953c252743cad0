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
