"""Shared helpers of the tests of bnn_kernels.nn: float64 references of the packed modules."""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F


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
        out.append(dict(cin=cg * groups, cout=og * groups, k=(kh, kw), stride=stride, padding=padding,
                        dilation=dilation, groups=groups, n=rng.randint(1, 3), h=h, w=w_))
    return out


def conv_id(c):
    return f"c{c['cin']}o{c['cout']}k{c['k'][0]}{c['k'][1]}s{c['stride']}p{c['padding']}d{c['dilation']}g{c['groups']}"
