"""Convolutions whose input is padded by F.pad first: nn.Conv2d with padding_mode 'reflect',
'replicate' or 'circular' (its _conv_forward pads, then calls F.conv2d with padding 0), the same
written out in a forward, or a constant F.pad (nn.ZeroPad2d...) before or after the binarizer.

The trace records such a conv call with the pad's input (or, where elementwise ops such as the
binarizer follow the pad, the interior of the call's input) as the call's input: for a copying
mode, the pad amounts as its padding and the mode as its padding_mode, so the packed conv module
pads the same way (bnn_kernels/nn/_padding.py); for a constant pad whose border is exactly 0 at
the call (torch.sign(0) = 0, a {0, 1} binarizer's 0, value 0 after the binarizer), the pad amounts
added to the call's own zero padding. Only a pad of data that is an elementwise function of the
module's input qualifies (as for any call input), and only a symmetric pad of the last two dims
of a 4-D tensor (a copying mode: followed by a conv without padding of its own). Other pads (a
constant border that is not 0, asymmetric amounts) leave the call's input as it is, with a note
saying why (_Call.pad_note).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("reflect", "replicate", "circular")
_OVERWRITE = {"__setitem__", "__set__", "copy_", "fill_", "zero_"}  # in place, whatever the values were
_ASYMMETRIC = "asymmetric"


def pad_spec(name: str, args, kwargs):
    """(mode, (ph, pw)) of an F.pad (or aten constant_pad_nd) call of a 4-D tensor that pads its last
    dim or two (pad of 2 or 4 amounts): mode 'asymmetric' where the two sides of a dim differ,
    'constant' with a constant value; else None."""
    if name not in ("pad", "constant_pad_nd") or not args or not isinstance(args[0], torch.Tensor):
        return None
    pad = kwargs.get("pad", args[1] if len(args) > 1 else None)
    mode = "constant" if name == "constant_pad_nd" else kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    if args[0].dim() != 4 or pad is None or len(pad) not in (2, 4) or mode not in (*MODES, "constant"):
        return None
    pw, pw2, ph, ph2 = (int(p) for p in (*pad, 0, 0)[:4])  # (left, right[, top, bottom])
    if min(pw, pw2, ph, ph2) < 0:
        return None
    if pw != pw2 or ph != ph2:
        return _ASYMMETRIC, (ph, pw)
    return mode, (ph, pw)


def record_pad(pads: dict, pre: dict, name: str, args, kwargs, out, srcs=None) -> None:
    """Before an invocation's first call: remember a pad of elementwise input data (pre[id] is
    None) in pads, by its output's id, as (pad input, mode, (ph, pw)). srcs: the input-derived
    tensors an elementwise op reads; where every one of them is a padded tensor of the same spec
    (sign(F.pad(x, ...)): the border stays apart), its output is recorded as padded too, with pad
    input None."""
    if name in _OVERWRITE and args and isinstance(args[0], torch.Tensor):
        pads.pop(id(args[0]), None)  # overwritten in place: its border no longer known
        return
    if not isinstance(out, torch.Tensor):
        return
    spec = pad_spec(name, args, kwargs)
    if spec is not None and id(args[0]) in pre and pre[id(args[0])] is None:
        pads[id(out)] = (args[0], *spec)
        return
    entries = {pads[id(a)][1:] if id(a) in pads else None for a in srcs or ()}
    if len(entries) != 1 or None in entries:
        return
    spec = entries.pop()
    if out.shape == next(iter(srcs)).shape:  # elementwise and the same shape: position by position
        pads[id(out)] = (None, *spec)


def unpad(inv, z, padding):
    """(input, padding, padding_mode, note, border) of a conv call on z (inv: the invocation making it).
    z computed from a recorded pad of the module's input through elementwise ops only:
    - a symmetric F.pad in a copying mode, and the call pads nothing itself: the padded data, its
      amounts and mode (the packed module pads its input so, then binarizes: the same values);
    - a constant pad whose border holds exactly 0 in z (F.pad(x, p) before torch.sign, value 0
      after the binarizer): the kernel's own zero padding, added to the call's;
    - a constant pad whose border holds one value per channel, the call padding nothing itself:
      its amounts, and border, those values (float64 [C]; the planner decides whether the packed
      module holds them: BinaryConv2d's pad_value +-1);
    otherwise (z, padding, 'zeros', why the pad is not packed, or None where z is no such pad, None).
    The input returned for a pad followed by elementwise ops is z's interior, recorded in inv.pre
    as elementwise input data."""
    entry = inv.pads.get(id(z))
    if entry is not None and z.dim() == 3:
        return _unpad_1d(inv, entry, z, padding)
    if entry is None or z.dim() != 4:
        return z, padding, "zeros", None, None
    src, mode, (ph, pw) = entry
    flat = (0, 0) if padding == "valid" else (padding,) * 2 if isinstance(padding, int) else padding
    if mode == _ASYMMETRIC:
        return z, padding, "zeros", _ASYMMETRIC_NOTE, None
    if isinstance(flat, str):
        return z, padding, "zeros", f"its input passes through F.pad and the conv pads {padding!r} besides", None
    flat = tuple(int(p) for p in (tuple(flat) * 2)[:2])
    inner = src if src is not None else z[..., ph : z.shape[-2] - ph, pw : z.shape[-1] - pw]
    if mode != "constant":
        if flat != (0, 0):
            return z, padding, "zeros", f"its input passes through F.pad(mode={mode!r}) and the conv pads besides", None
        return _inner(inv, inner), (ph, pw), mode, None, None
    interior = torch.zeros(z.shape[-2:], dtype=torch.bool, device=z.device)
    interior[ph : z.shape[-2] - ph, pw : z.shape[-1] - pw] = True
    border = z.detach().movedim(1, 0)[:, ..., ~interior].reshape(z.shape[1], -1).double()
    if not bool((border != 0).any()):
        return _inner(inv, inner), (flat[0] + ph, flat[1] + pw), "zeros", None, None
    vals = ", ".join(f"{v:g}" for v in torch.unique(border[border != 0])[:4].tolist())
    if flat != (0, 0) or not bool((border == border[:, :1]).all()):
        return z, padding, "zeros", BORDER_NOTE.format(vals), None
    return _inner(inv, inner), (ph, pw), "zeros", None, border[:, 0].cpu()


_ASYMMETRIC_NOTE = (
    "its input passes through an asymmetric F.pad (different amounts on the two sides: padding='same' with an even "
    "kernel, TensorFlow's 'SAME' at stride 2 ported as F.pad(x, (0, 1, 0, 1))): the conv's windows do not line up "
    "with a symmetric padding"
)
BORDER_NOTE = (
    "its input passes through a constant F.pad whose border is {} at the call (not 0): the packed modules pad with "
    "zeros, copy values (reflect, replicate, circular), or (a +-a input) pad with one value +-1 in every channel "
    "after the binarizer, without padding of the conv's own"
)


def _unpad_1d(inv, entry, z, padding):
    """unpad for a conv1d call on z, the output of a symmetric F.pad of a 3-D tensor in a copying
    mode (nn.Conv1d's padding_mode: _conv1d.record_pad_1d) when the call pads nothing itself."""
    src, mode, pp = entry
    flat = (padding,) if isinstance(padding, int) else padding
    if inv.pre.get(id(z)) != "pad" or isinstance(flat, str) or tuple(flat) not in ((0,), (0, 0)):
        return z, padding, "zeros", None, None
    return src, pp, mode, None, None


def _inner(inv, t: torch.Tensor) -> torch.Tensor:
    """t recorded as elementwise input data of inv (a pad's input already is)."""
    if id(t) not in inv.pre:
        inv.pre[id(t)] = None
        inv.pre_refs.append(t)
    return t


def conv_ref(z: torch.Tensor, w: torch.Tensor, geo: dict, mode: str, border=None) -> torch.Tensor:
    """F.conv2d(z, w) with geometry geo (classify.geometry) and the call's padding mode; border:
    per channel, the value of a constant padding (unpad), else zeros."""
    if border is not None:
        b = border.to(device=z.device, dtype=z.dtype).view(1, -1, 1, 1)
        ph, pw = geo["padding"]
        return F.conv2d(F.pad(z - b, (pw, pw, ph, ph)) + b, w, None, **dict(geo, padding=(0, 0)))
    if mode == "zeros":
        return F.conv2d(z, w, None, **geo)
    ph, pw = geo["padding"]
    return F.conv2d(F.pad(z, (pw, pw, ph, ph), mode=mode), w, None, **dict(geo, padding=(0, 0)))
