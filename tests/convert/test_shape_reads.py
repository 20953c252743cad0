"""convert() and modules whose arithmetic reads their input's shape (y / y.shape[-1], a
threshold or a bias scaled by the batch size): the examples' shape cannot tell such a number
from a constant, so each planned layer, each folded neighbour and each folded binarizer is also
checked on the examples at other shapes (one sample more or fewer, a dim one longer). Those layers
stay float (or unfolded), exact on fresh inputs of every shape; a module that reads its shape
only to reshape still converts."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bnn_kernels as bk

C = 16


def sign_weight(w):
    return torch.sign(w) * w.abs().mean((1, 2, 3), keepdim=True)


class ThresholdFromWidth(nn.Module):
    """sign(x - t * W / 8): at the examples' width 8 the threshold is the parameter t itself."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(C, C, 3, 3))
        self.t = nn.Parameter(torch.rand(1, C, 1, 1) - 0.5)

    def forward(self, x):
        return F.conv2d(torch.sign(x - self.t * (x.shape[-1] / 8)), sign_weight(self.w), None, 1, 1)


class ScaleFromWidth(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(C, C, 3, 3))

    def forward(self, x):
        return F.conv2d(torch.sign(x), sign_weight(self.w), None, 1, 1) / x.shape[-1]


class ScaleFromBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(C, C, 3, 3))

    def forward(self, x):
        return F.conv2d(torch.sign(x), sign_weight(self.w), None, 1, 1) / x.shape[0]


class RealInputScaleFromArea(nn.Module):
    """Binary weights, real input (BinaryWeightConv2d), output scaled by 1 / sqrt(H * W)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(C, C, 3, 3))

    def forward(self, x):
        return F.conv2d(x, sign_weight(self.w), None, 1, 1) * (x.shape[-1] * x.shape[-2]) ** -0.5


class PlainBinaryConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(C, C, 3, 3))

    def forward(self, x):
        return F.conv2d(torch.sign(x), sign_weight(self.w), None, 1, 1)


class ScaleByWidthAfter(nn.Module):
    """A per-channel scale module after the conv that divides by the width (not foldable)."""

    def __init__(self):
        super().__init__()
        self.g = nn.Parameter(torch.rand(1, C, 1, 1) + 0.5)

    def forward(self, y):
        return y * self.g / y.shape[-1]


class BiasByBatchAfter(nn.Module):
    def __init__(self):
        super().__init__()
        self.g = nn.Parameter(torch.rand(1, C, 1, 1) + 0.5)

    def forward(self, y):
        return y * self.g + y.shape[0]


class SignShiftByWidth(nn.Module):
    """A binarizer module of its own (foldable into the conv's threshold only if exact)."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.rand(1, C, 1, 1) - 0.5)

    def forward(self, x):
        return torch.sign(x + self.b * (x.shape[-1] / 8))


class ViewBinaryConv(nn.Module):
    """Reads its input's shape only to view it as it is: still converts."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(C, C, 3, 3))

    def forward(self, x):
        n, c, h, w = x.shape
        return F.conv2d(torch.sign(x.view(n, c, h, w)), sign_weight(self.w), None, 1, 1)


def _net(*mods):
    m = nn.Sequential(nn.BatchNorm2d(C), *mods).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bn = m[0]
        bn.running_mean.copy_(torch.rand(C, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(C, generator=g) + 0.5)
    return m


def _fresh_shapes_agree(model, cm, shapes):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for shape in shapes:
            x = torch.randn(shape, generator=g)
            want = model(x)
            assert (cm(x) - want).abs().max() <= 1e-4 * want.abs().max(), shape


SHAPES = [(3, C, 8, 8), (1, C, 8, 8), (5, C, 16, 16), (2, C, 8, 12)]


@pytest.mark.parametrize("cls", [ThresholdFromWidth, ScaleFromWidth, ScaleFromBatch, RealInputScaleFromArea])
@pytest.mark.parametrize("examples", [1, 4])
def test_layer_reading_its_shape_stays_float(cls, examples):
    model = _net(cls())
    cm, rep = bk.convert(model, (torch.randn(examples, C, 8, 8),))
    assert "1" not in rep.converted, str(rep)
    assert "at another shape" in rep.skipped["1"], rep.skipped["1"]
    _fresh_shapes_agree(model, cm, SHAPES)


@pytest.mark.parametrize("after", [ScaleByWidthAfter, BiasByBatchAfter])
def test_neighbour_reading_its_shape_is_not_folded(after):
    model = _net(PlainBinaryConv(), after())
    cm, rep = bk.convert(model, (torch.randn(4, C, 8, 8),))
    assert "1" in rep.converted and "2" not in rep.fused, str(rep)
    _fresh_shapes_agree(model, cm, SHAPES)


def test_binarizer_reading_its_shape_is_not_folded():
    model = nn.Sequential(SignShiftByWidth(), PlainBinaryConv()).eval()
    cm, rep = bk.convert(model, (torch.randn(4, C, 8, 8),))
    assert "0" not in rep.fused, str(rep)
    _fresh_shapes_agree(model, cm, SHAPES)


def test_shape_read_only_to_reshape_still_converts():
    model = _net(ViewBinaryConv())
    cm, rep = bk.convert(model, (torch.randn(4, C, 8, 8),))
    assert "1" in rep.converted, str(rep)
    _fresh_shapes_agree(model, cm, SHAPES)


class AffineNoParams(nn.Module):
    """y * 2 + 1 (takes any number of channels)."""

    def forward(self, y):
        return y * 2 + 1


def test_parameter_free_neighbours_still_fold():
    """A binarizer and an affine module without parameters take inputs with more channels than
    the packed layer: those shapes are not judged, and both still fold."""
    from tests.convert.models_public2 import GtSign

    model = nn.Sequential(GtSign(), PlainBinaryConv(), AffineNoParams()).eval()
    cm, rep = bk.convert(model, (torch.randn(4, C, 8, 8),))
    assert rep.fused == {"0": "1", "2": "1"}, str(rep)
    _fresh_shapes_agree(model, cm, SHAPES)


class ScaledSignByShape(nn.Module):
    """A binarizer module upstream of the conv whose output magnitude reads the input's shape:
    the conv sees +-1/W (or +-4/N); only a model run at another shape shows it."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return torch.sign(x) * (4.0 / x.shape[self.dim])


class WeightSignConv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, sign_weight(self.weight), None, self.stride, self.padding)


class PlainScaledSign(nn.Module):
    def forward(self, x):
        return torch.sign(x) * 0.25


@pytest.mark.parametrize("dim", [0, -1, -2])
def test_upstream_binarizer_reading_its_shape_leaves_the_conv_float(dim):
    """Before, the conv was packed with the examples' magnitude in its multiplier (and the
    binarizer folded into it): exact at the examples' shape, 50-90% off at others."""
    model = _net(ScaledSignByShape(dim), WeightSignConv(C, C, 3, padding=1), nn.BatchNorm2d(C))
    cm, rep = bk.convert(model, (torch.randn(4, C, 8, 8),))
    assert "2" not in rep.converted, str(rep)
    assert "at another shape" in rep.skipped["2"], rep.skipped["2"]
    _fresh_shapes_agree(model, cm, SHAPES)
    with pytest.raises(bk.ConversionError, match="2: verification in the model"):
        bk.convert(model, (torch.randn(4, C, 8, 8),), strict=True)


def test_upstream_binarizer_with_a_constant_scale_still_converts():
    model = _net(PlainScaledSign(), WeightSignConv(C, C, 3, padding=1), nn.BatchNorm2d(C))
    cm, rep = bk.convert(model, (torch.randn(4, C, 8, 8),))
    assert "2" in rep.converted, str(rep)
    _fresh_shapes_agree(model, cm, SHAPES)


class PoolsLargeInputs(nn.Module):
    """Downsamples inputs wider than 12 before the binary conv: a branch on the input's shape
    that the examples' width 8 never takes."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(C, C, 3, 3))

    def forward(self, x):
        if x.shape[-1] > 12:
            x = F.avg_pool2d(x, 2)
        return F.conv2d(torch.sign(x), sign_weight(self.w), None, 1, 1)


class UpsamplesSmallInputs(PoolsLargeInputs):
    def forward(self, x):
        if x.shape[-1] < 6:
            x = F.interpolate(x, scale_factor=2.0)
        return F.conv2d(torch.sign(x), sign_weight(self.w), None, 1, 1)


@pytest.mark.parametrize("cls", [PoolsLargeInputs, UpsamplesSmallInputs])
def test_layer_branching_on_its_shape_stays_float(cls):
    """Before, the layer packed from 8x8 examples; behind a global pooling head the model then
    gave other numbers at 16x16 (or 4x4) without any shape error (55% off)."""
    model = nn.Sequential(_net(cls()), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)).eval()
    cm, rep = bk.convert(model, (torch.randn(4, C, 8, 8),))
    assert "0.1" not in rep.converted, str(rep)
    assert "at another shape" in rep.skipped["0.1"], rep.skipped["0.1"]
    _fresh_shapes_agree(model, cm, [*SHAPES, (2, C, 4, 4), (2, C, 5, 6)])
