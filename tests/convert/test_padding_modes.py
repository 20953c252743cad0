"""convert() of conv layers with padding_mode 'reflect' / 'replicate' / 'circular' (nn.Conv2d
pads with F.pad, then convolves with padding 0; so does a forward that writes it out): packed
with the same padding_mode, for binarized, real and k-bit inputs, and checked on fresh inputs
never used for the conversion. Pads that are not a symmetric copy of the input stay float."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_kernels import convert
from bnn_kernels.nn import BinaryConv2d, BinaryWeightConv2d, BitSerialConv2d

from . import models_public2 as P
from .test_public_models import _check_on_fresh_inputs, _x
from .test_public_models2 import _stays_float

MODES = ["reflect", "replicate", "circular"]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


class RealInputSignConv(nn.Module):
    """Binary weights on the real input (BWN): no binarizer before the conv."""

    def __init__(self, mode, **kw):
        super().__init__()
        self.conv = P.SignConv2d(6, 6, 3, padding_mode=mode, **kw)

    def forward(self, x):
        return self.conv(x)


class KBitInputSignConv(nn.Module):
    """DoReFa 2-bit activations, then a sign-weight conv with a padding mode."""

    def __init__(self, mode):
        super().__init__()
        self.conv = P.SignConv2d(6, 5, (3, 2), padding=(1, 2), padding_mode=mode)

    def forward(self, x):
        return self.conv(torch.round(torch.clamp(x, 0, 1) * 3) / 3)


class WrittenOutPad(nn.Module):
    """sign(x), then F.pad in a mode and F.conv2d with padding 0, in one forward."""

    def __init__(self, mode, pad=(2, 2, 1, 1)):
        super().__init__()
        self.mode, self.pad = mode, pad
        self.weight = nn.Parameter(torch.randn(4, 6, 3, 3))

    def forward(self, x):
        w = torch.where(self.weight >= 0, 1.0, -1.0)
        return F.conv2d(F.pad(torch.sign(x), self.pad, mode=self.mode), w, stride=(1, 2))


@pytest.mark.parametrize("mode", MODES)
def test_binarized_input(mode):
    model = P.PadModeNet(mode, bias=True).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["conv"])
    assert type(cm.conv) is BinaryConv2d and cm.conv.padding_mode == mode and cm.conv.padding == (1, 1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=(2, 1), dilation=(2, 1), groups=2, stride=(1, 2))])
def test_real_input(mode, kw):
    model = RealInputSignConv(mode, **kw).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(2, 6, 7, 6), (2, 6, 7, 6), ["conv"])
    assert type(cm.conv) is BinaryWeightConv2d and cm.conv.padding_mode == mode


@pytest.mark.parametrize("mode", MODES)
def test_kbit_input(mode):
    model = KBitInputSignConv(mode).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 6, 5), (3, 6, 6, 5), ["conv"])
    assert type(cm.conv) is BitSerialConv2d and cm.conv.padding_mode == mode


@pytest.mark.parametrize("mode", MODES)
def test_pad_written_out_in_forward(mode):
    model = nn.Sequential(WrittenOutPad(mode)).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(2, 6, 6, 7), (2, 6, 6, 7), ["0"])
    assert type(cm[0]) is BinaryConv2d and cm[0].padding_mode == mode and cm[0].padding == (1, 2)


def test_asymmetric_pad_stays_float():
    model = nn.Sequential(WrittenOutPad("reflect", pad=(1, 2, 1, 1))).eval()
    _stays_float(model, _x(2, 6, 6, 7), "0", "asymmetric F.pad", WrittenOutPad)


def test_constant_zero_pad_is_zero_padding():
    """F.pad(sign(x)) with value 0: the kernel's zero padding (more in tests/convert/test_constant_pads.py)."""
    model = nn.Sequential(WrittenOutPad("constant")).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(2, 6, 6, 7), (2, 6, 6, 7), ["0"])
    assert type(cm[0]) is BinaryConv2d and cm[0].padding_mode == "zeros" and cm[0].padding == (1, 2)


def test_converted_model_saves_and_loads(tmp_path):
    import bnn_kernels

    model = P.PadModeNet("circular").eval()
    cm, _ = convert(model, (_x(3, 6, 5, 5),))
    bnn_kernels.save(cm, tmp_path / "m.safetensors")
    back = bnn_kernels.load(tmp_path / "m.safetensors", P.PadModeNet("zeros").eval())  # float model: mode restored
    assert back.conv.padding_mode == "circular"
    x = _x(2, 6, 5, 5, seed=5)
    with torch.no_grad():
        assert torch.equal(back(x), cm(x))
