"""conv1d calls in convert: F.conv1d, torch.conv1d and aten.conv1d (nn.Conv1d, keyword-spotting,
audio and sensor BNNs) are recorded like conv2d calls, as kind "conv1d" with their own 1-D
tensors (input (N, C, L), weight [O, C/groups, K], output (N, O, Lout)), so that every check
that compares the call with the module's input and output is the conv2d one. Where a check
computes the convolution itself, it computes the conv2d of height 1 the call is: the tensors
viewed as (N, C, 1, L) and [O, C/groups, 1, K] (as_2d), the geometry as kernel (1, K), stride
(1, s), padding (0, p), dilation (1, d) (geometry_1d), the result viewed back (from_2d); the
packed module is the 2-D family's module of height 1 turned into its 1-D form (packed_of,
bnn_kernels.nn.conv1d).

nn.Conv1d with padding_mode 'reflect' / 'replicate' / 'circular' pads its 3-D input with F.pad
first, then calls F.conv1d without padding: record_pad_1d records that pad as _padmode.record_pad
does for 4-D inputs, so the call is planned with the pad's input and the padding mode.
"""

from __future__ import annotations

import torch

from ..nn.conv1d import as_conv1d
from ._padmode import MODES
from ._report import Skip

__all__ = ["CONV1D", "geometry_1d", "as_2d", "from_2d", "packed_of", "record_pad_1d"]

CONV1D = "conv1d"


def _one(v, name: str) -> int:
    """An int or a sequence of one int (F.conv1d's stride=(s,)) as an int; raises Skip."""
    if isinstance(v, (list, tuple)) and len(v) == 1:
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, int):
        raise Skip(f"conv1d {name}={v!r} not understood")
    return v


def geometry_1d(call) -> dict:
    """The conv2d geometry (pairs: height, width) of a conv1d call: stride (1, s), padding (0, p),
    dilation (1, d), and groups; raises Skip."""
    k = call.w.shape[2]
    s, d = _one(call.stride, "stride"), _one(call.dilation, "dilation")
    p = call.padding
    if p == "valid":
        p = 0
    elif p == "same":
        if d * (k - 1) % 2:
            raise Skip("padding='same' with an even kernel pads asymmetrically (not supported)")
        p = d * (k - 1) // 2
    elif isinstance(p, str):
        raise Skip(f"padding={p!r} not understood")
    return dict(stride=(1, s), padding=(0, _one(p, "padding")), dilation=(1, d), groups=int(call.groups))


def as_2d(call, *ts: torch.Tensor):
    """The tensors of a conv1d call (input, weight) viewed as those of its conv2d: unsqueezed at
    dim 2; those of other calls as they are. A tuple."""
    return tuple(t.unsqueeze(2) for t in ts) if call.kind == CONV1D else ts


def from_2d(call, y: torch.Tensor) -> torch.Tensor:
    """A conv2d result (N, O, 1, Lout) of a conv1d call viewed back as (N, O, Lout)."""
    return y.squeeze(2) if call.kind == CONV1D else y


def packed_of(call, new):
    """The packed module for the call: the 1-D form of the 2-D module built for a conv1d call."""
    return as_conv1d(new) if call.kind == CONV1D else new


def record_pad_1d(pads: dict, pre: dict, name: str, args, kwargs, out) -> None:
    """Before an invocation's first call: remember a symmetric F.pad of the last dim of a 3-D
    tensor that is an elementwise function of the module's input, in a copying mode, in pads by
    its output's id as (its input, mode, (p,)) (what _padmode.unpad returns for the call)."""
    if name != "pad" or not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 3:
        return
    pad = kwargs.get("pad", args[1] if len(args) > 1 else None)
    mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    if mode not in MODES or pad is None or len(pad) != 2 or int(pad[0]) != int(pad[1]) or int(pad[0]) < 0:
        return
    if isinstance(out, torch.Tensor) and id(args[0]) in pre and pre[id(args[0])] is None:
        pads[id(out)] = (args[0], mode, (int(pad[0]),))
