"""Convolutions whose input is padded by F.pad in a copying mode first: nn.Conv2d with
padding_mode 'reflect', 'replicate' or 'circular' (its _conv_forward pads, then calls F.conv2d
with padding 0), or the same written out in a forward.

The trace records such a conv call with the pad's input as the call's input, the pad amounts
as its padding and the mode as its padding_mode, so the packed conv module pads the same way
(bnn_kernels/nn/_padding.py). Only a pad of data that is an elementwise function of the
module's input qualifies (as for any call input), and only a symmetric pad of the last two
dims of a 4-D tensor followed by a conv without padding of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("reflect", "replicate", "circular")


def pad_spec(name: str, args, kwargs):
    """(mode, (ph, pw)) of a qualifying F.pad call, else None."""
    if name != "pad" or not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 4:
        return None
    pad = kwargs.get("pad", args[1] if len(args) > 1 else None)
    mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    if mode not in MODES or pad is None or len(pad) != 4:
        return None
    pw, pw2, ph, ph2 = (int(p) for p in pad)
    if pw != pw2 or ph != ph2 or min(pw, ph) < 0:
        return None
    return mode, (ph, pw)


def record_pad(pads: dict, pre: dict, name: str, args, kwargs, out) -> None:
    """Before an invocation's first call: remember a qualifying pad of elementwise input data
    (pre[id] is None) in pads, by its output's id."""
    spec = pad_spec(name, args, kwargs)
    if spec is not None and isinstance(out, torch.Tensor) and id(args[0]) in pre and pre[id(args[0])] is None:
        pads[id(out)] = (args[0], *spec)


def unpad(pads: dict, pre: dict, z, padding):
    """(input, padding, padding_mode) of a conv call on z: the recorded pad's input, amounts and
    mode when z is the output of a recorded pad and the call pads nothing itself; else
    (z, padding, 'zeros')."""
    entry = pads.get(id(z))
    flat = (padding,) * 2 if isinstance(padding, int) else padding
    if entry is None or pre.get(id(z)) != "pad" or isinstance(flat, str) or tuple(flat) not in ((0, 0), (0,)):
        return z, padding, "zeros"
    src, mode, pp = entry
    return src, pp, mode


def conv_ref(z: torch.Tensor, w: torch.Tensor, geo: dict, mode: str) -> torch.Tensor:
    """F.conv2d(z, w) with geometry geo (classify.geometry) and the call's padding mode."""
    if mode == "zeros":
        return F.conv2d(z, w, None, **geo)
    ph, pw = geo["padding"]
    return F.conv2d(F.pad(z, (pw, pw, ph, ph), mode=mode), w, None, **dict(geo, padding=(0, 0)))
