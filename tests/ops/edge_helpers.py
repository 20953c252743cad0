"""Helpers of the kernel edge tests: dirty tails, extreme rows, thread counts."""

import contextlib

import torch

from tests.helpers import gen


def dirty_tail(bits: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """bits with random garbage in the unused high bits of every row's last word (bits k..)."""
    r = k % 32
    if r == 0:
        return bits.clone()
    noise = torch.randint(-(2**31), 2**31 - 1, bits.shape[:-1], generator=gen(seed), dtype=torch.int64)
    noise = (noise >> r) << r  # only bits r..31
    noise = torch.where(noise >= 2**31, noise - 2**32, noise)
    out = bits.clone()
    out[..., -1] = (out[..., -1].to(torch.int64) | noise).to(torch.int32)
    return out


def complement_rows(bits: torch.Tensor, k: int) -> torch.Tensor:
    """Rows with every valid bit flipped (tails kept clean)."""
    from bnn_kernels import reference as R

    return R._pack01(1 - R._unpack01(bits, k))


@contextlib.contextmanager
def num_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
