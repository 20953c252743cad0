"""convert() of a constant F.pad inside the conv's module (F.pad(x, (p, p, q, q)) before the
binarizer, F.pad(sign(x), ..., value=v) after it, nn.ZeroPad2d): where the padded border is exactly
0 at the call (torch.sign(0) = 0, a {0, 1} binarizer's 0, value 0), it is the kernel's zero padding,
added to the conv's own; where it is +1 (or -1) in every channel after the binarizer, BinaryConv2d's
pad_value. A copying pad (reflect) before the binarizer is the packed module's padding_mode. Checked
on fresh inputs of other sizes, never used for the conversion. Other borders (0.5, +-1 by channel,
nonzero besides the conv's own padding, a {0, 1} or real input padded with 1) and asymmetric amounts
stay float."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_kernels import convert
from bnn_kernels.nn import BinaryConv2d, BinaryWeightConv2d, BitSerialConv2d

from .test_public_models import _fresh, _x
from .test_public_models2 import _stays_float


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


class PadConv(nn.Conv2d):
    """F.pad(x, pad, mode, value) before the binarizer ("before") or after it ("after"), then the conv
    with its own padding. binarize: "sign", "shifted" (sign(x - b), b > 0 learned; "shiftmix": b of
    mixed signs), "step" ((x > 0) in
    {0, 1}), "neg" (sign(-x)) or "none" (a real input, sign weights)."""

    def __init__(self, cin, cout, where, pad, binarize="sign", mode="constant", value=0.0, **kw):
        super().__init__(cin, cout, 3, bias=False, **kw)
        self.where, self.pad, self.binarize, self.mode, self.value = where, pad, binarize, mode, value
        self.b = nn.Parameter(torch.rand(cin) * 0.5 + 0.1)
        self.bm = nn.Parameter(self.b.detach() * torch.tensor([1.0, -1.0]).repeat(cin)[:cin])

    def _bin(self, x):
        if self.binarize in ("shifted", "shiftmix"):  # b > 0, or bm of mixed signs
            return torch.sign(x - (self.b if self.binarize == "shifted" else self.bm).view(1, -1, 1, 1))
        if self.binarize == "step":
            return (x > 0).float()
        if self.binarize == "neg":
            return torch.sign(-x)
        return torch.sign(x) if self.binarize == "sign" else x

    def _pad(self, x):
        if self.mode != "constant":
            return F.pad(x, self.pad, mode=self.mode)
        return F.pad(x, self.pad, value=self.value)

    def forward(self, x):
        z = self._bin(self._pad(x)) if self.where == "before" else self._pad(self._bin(x))
        return self._conv_forward(z, torch.sign(self.weight) * 0.5, None)


class ZeroPadModule(nn.Module):
    """nn.ZeroPad2d as a child of the conv's module, after a learned-shift sign."""

    def __init__(self, c=6):
        super().__init__()
        self.zp = nn.ZeroPad2d((2, 2, 1, 1))
        self.shift = nn.Parameter(torch.randn(c) * 0.2)
        self.weight = nn.Parameter(torch.randn(5, c, 3, 3))

    def forward(self, x):
        return F.conv2d(self.zp(torch.sign(x + self.shift.view(1, -1, 1, 1))), torch.sign(self.weight), stride=(2, 1))


def _check(model, x, shapes, cls, padding, mode="zeros"):
    """Converted from x: packed as cls with padding and mode, and equal to the model on fresh inputs
    of other sizes (within a tenth of one integer step per channel: the integer part is exact)."""
    cm, rep = convert(model, (x,))
    assert rep.converted == ["0"], str(rep)
    new = cm[0]
    assert type(new) is cls and new.padding == padding and new.padding_mode == mode, (new.padding, new.padding_mode)
    for i, s in enumerate(shapes):
        xf = _fresh(s, 30 + i)
        with torch.no_grad():
            got, want = new(xf), model[0](xf)
        err = (got.double() - want.double()).abs().movedim(1, -1).reshape(-1, want.shape[1]).amax(0)
        assert bool((err <= 0.1 * new.multiplier.double().abs() + 1e-5 * float(want.abs().max())).all()), s
    return cm, rep


SHAPES = [(2, 6, 7, 9), (1, 6, 4, 5), (3, 6, 10, 6)]


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("conv_pad", [0, (1, 2)])
def test_zero_border_is_zero_padding(where, conv_pad):
    """sign(F.pad(x)) (sign(0) = 0 at the border) and F.pad(sign(x)): the pads add to the conv's padding."""
    model = nn.Sequential(PadConv(6, 5, where, (1, 1, 2, 2), padding=conv_pad, stride=(1, 2))).eval()
    cp = (0, 0) if conv_pad == 0 else conv_pad
    _check(model, _x(3, 6, 7, 8), SHAPES, BinaryConv2d, (2 + cp[0], 1 + cp[1]))


def test_zero_pad_before_a_decreasing_sign():
    """sign(-F.pad(x)): the border is sign(-0) = 0, the channels decrease (weights negated)."""
    model = nn.Sequential(PadConv(6, 5, "before", (2, 2, 2, 2), "neg", padding=1)).eval()
    _, rep = _check(model, _x(3, 6, 7, 8), SHAPES, BinaryConv2d, (3, 3))
    assert "decreasing in 6 of 6" in rep.layers["0"]["kind"]


def test_width_only_pad():
    """F.pad(sign(x), (2, 2)) pads the width only."""
    model = nn.Sequential(PadConv(6, 5, "after", (2, 2), padding=(1, 0))).eval()
    _check(model, _x(3, 6, 7, 8), SHAPES, BinaryConv2d, (1, 2))


def test_shifted_sign_then_zero_pad_module():
    model = nn.Sequential(ZeroPadModule()).eval()
    _check(model, _x(3, 6, 7, 8), SHAPES, BinaryConv2d, (1, 2))


@pytest.mark.parametrize("where", ["before", "after"])
def test_step_input_zero_border(where):
    """(x > 0) in {0, 1}: F.pad before it pads 0 > 0 = 0, after it 0."""
    model = nn.Sequential(PadConv(6, 4, where, (2, 2, 1, 1), "step", dilation=2)).eval()
    _check(model, _x(3, 6, 9, 8), SHAPES, BitSerialConv2d, (1, 2))


def test_real_input_zero_pad():
    """Binary weights on the real input: F.pad(x) is the conv's zero padding."""
    model = nn.Sequential(PadConv(6, 4, "before", (1, 1, 1, 1), "none")).eval()
    _check(model, _x(3, 6, 7, 8), SHAPES, BinaryWeightConv2d, (1, 1))


def test_reflect_pad_before_the_binarizer():
    """sign(F.pad(x, mode='reflect')) is F.pad(sign(x), mode='reflect'): the packed module's padding_mode."""
    model = nn.Sequential(PadConv(6, 4, "before", (2, 2, 1, 1), mode="reflect")).eval()
    _check(model, _x(3, 6, 7, 8), SHAPES, BinaryConv2d, (1, 2), "reflect")


@pytest.mark.parametrize(
    "where,value,binarize,pad_value",
    [
        ("after", 1.0, "sign", 1),
        ("after", -1.0, "sign", -1),
        ("before", 0.5, "sign", 1),
        ("before", 0.0, "shifted", -1),
        ("before", 1.0, "neg", 1),
    ],
    ids=["value1-after", "value-1-after", "value-before", "shifted-before", "decreasing"],
)
def test_border_of_plus_or_minus_one_is_pad_value(where, value, binarize, pad_value):
    """A border that is +1 (or -1) in every channel after the binarizer: BinaryConv2d's pad_value
    (sign(0 - b) with b > 0 is -1; sign(-1) in a decreasing layer is the packed +1)."""
    model = nn.Sequential(PadConv(6, 5, where, (2, 2, 1, 1), binarize, value=value, stride=(2, 1))).eval()
    cm, _ = _check(model, _x(3, 6, 7, 8), SHAPES, BinaryConv2d, (1, 2))
    assert cm[0].pad_value == pad_value


@pytest.mark.parametrize(
    "kw,reason",
    [
        (dict(where="after", pad=(1, 1, 1, 1), value=0.5), "border is 0.5 at the call"),
        (dict(where="before", pad=(1, 1, 1, 1), binarize="shiftmix"), "border is -1, 1 at the call"),
        (dict(where="after", pad=(1, 1, 1, 1), value=1.0, padding=1), "border is 1 at the call"),
        (dict(where="before", pad=(1, 1, 1, 1), binarize="step", value=1.0), "border is 1 at the call"),
        (dict(where="before", pad=(1, 1, 1, 1), binarize="none", value=1.0), "border is 1 at the call"),
        (dict(where="before", pad=(0, 1, 0, 1), stride=2), "asymmetric F.pad"),
        (dict(where="after", pad=(1, 1, 1, 1), mode="reflect", padding=1), "the conv pads besides"),
    ],
    ids=["half", "mixed-channels", "and-conv-padding", "step", "real", "asymmetric", "reflect-and-conv-padding"],
)
def test_pads_the_packed_modules_cannot_express_stay_float(kw, reason):
    kw = dict(kw)
    model = nn.Sequential(PadConv(6, 4, kw.pop("where"), kw.pop("pad"), **kw)).eval()
    _stays_float(model, _x(3, 6, 7, 8), "0", reason, PadConv)


class OverwritesItsPad(nn.Module):
    """F.pad(sign(x)) whose border is then overwritten in place with +1: no zero padding."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 6, 3, 3))

    def forward(self, x):
        z = F.pad(torch.sign(x), (1, 1, 1, 1))
        z[:, :, 0] = 1.0
        return F.conv2d(z, torch.sign(self.weight))


def test_pad_overwritten_in_place_stays_float():
    _stays_float(nn.Sequential(OverwritesItsPad()).eval(), _x(3, 6, 7, 8), "0", "passes through pad", OverwritesItsPad)
