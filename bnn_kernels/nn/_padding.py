"""padding_mode of the packed conv modules, as nn.Conv2d has it.

'zeros' is computed by the kernels themselves (exactly: a padded tap adds nothing). 'reflect',
'replicate' and 'circular' copy input values into the border, which is what nn.Conv2d does
too: ``F.pad(x, (pw, pw, ph, ph), mode)``, then the convolution with padding 0. Binarizing or
quantizing a copied value gives the copy of the binarized value (the thresholds are per
channel and the copies stay in their channel), so padding the float input first is exact for
every packed module that binarizes or quantizes its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PADDING_MODES", "check_padding_mode", "pad_input", "op_padding"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def check_padding_mode(mode) -> str:
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    return mode


def pad_input(x: torch.Tensor, padding: tuple[int, int], mode: str) -> torch.Tensor:
    """x [N, C, H, W] padded by (height, width) on both sides in mode; x itself for 'zeros'
    (the kernels pad) or no padding."""
    if mode == "zeros" or padding == (0, 0):
        return x
    ph, pw = padding
    return F.pad(x, (pw, pw, ph, ph), mode=mode)


def op_padding(padding: tuple[int, int], mode: str) -> tuple[int, int]:
    """The padding the kernel applies after pad_input: the module's for 'zeros', else none."""
    return padding if mode == "zeros" else (0, 0)
