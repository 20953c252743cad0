"""convert() on more public BNN idioms (tests/convert/models_public2.py): the official ReActNet /
Bi-Real modules, Real-to-Binary's data-dependent gate, zero padding (the other padding modes:
test_padding_modes.py), F.conv2d with groups / dilation, linear layers written with matmul / @,
per-channel activation scales, DoReFa and PACT.
Converted layers are checked on fresh inputs (integer part exact, float within rounding); layers
that must stay float are asserted to, with strict=True raising and naming them."""

import importlib
import math

import pytest
import torch
from torch import nn

from bnn_kernels import ConversionError, convert
from bnn_kernels.nn import BinaryConv2d, BinaryLinear, BinaryWeightConv2d, BitSerialConv2d

from . import models_public2 as P
from .test_public_models import _check_on_fresh_inputs, _fresh, _random_bn, _x

_verify = importlib.import_module("bnn_kernels.convert._verify")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _stays_float(model, x, name, reason, cls):
    """The layer `name` is left in float with `reason`, the model is unchanged on fresh inputs,
    and strict=True raises naming it."""
    cm, rep = convert(model, (x,))
    assert name not in rep.converted and reason in rep.skipped[name], str(rep)
    assert type(cm.get_submodule(name)) is cls
    with torch.no_grad():
        xf = _fresh(tuple(x.shape), 7)
        torch.testing.assert_close(cm(xf), model(xf))
    with pytest.raises(ConversionError, match=f"{name}: "):
        convert(model, (x,), strict=True)
    return rep


def test_reactnet_official_modules():
    """LearnableBias, the piecewise-polynomial STE BinaryActivation, HardBinaryConv (flat weights,
    mean-abs over dims 1,2,3, clipped STE), RPReLU, 1x1 binary convs and a stride-2 block."""
    model = _random_bn(P.ReActNetTiny())
    names = [f"blocks.{i}.binary_{k}" for i in (0, 1) for k in ("3x3", "pw")]
    cm, rep = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), names)
    assert all(type(cm.get_submodule(n)) is BinaryConv2d for n in names)
    assert "weights are not" in rep.skipped["stem.0"] and "weights are not" in rep.skipped["fc"]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize(
    "cls,reason",
    [
        (P.RealToBinaryGatedConv, "makes 3 conv/linear calls"),
        (P.RealToBinaryGateModule, "contains other conv/linear layers"),
        (P.ScaleFromInputConv, "data-dependent scale or gate"),
        (P.ResidualInsideConv, "data-dependent scale or gate"),
        (P.PythonScaleAfterCall, "into Python (__float__) after its conv2d call"),
    ],
)
def test_data_dependent_output_scale_stays_float(cls, reason, batch, monkeypatch):
    """Real-to-Binary's gate (and XNOR's K map, a residual) multiply or add data computed from the
    real input: refused from the ops themselves, not only by the derived-input checks (with one
    example a per-channel fit matches the gate exactly, and here the derived inputs are off)."""
    monkeypatch.setattr(_verify, "derived_inputs", lambda x: [])
    model = nn.Sequential(cls(6, 6)).eval()
    _stays_float(model, _x(batch, 6, 5, 5), "0", reason, cls)


def test_zero_padding_and_bias_convert():
    for bias in (False, True):
        model = P.PadModeNet("zeros", bias=bias).eval()
        cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["conv"])
        assert type(cm.conv) is BinaryConv2d and rep.fused == {"act": "conv"}  # (x > 0) folded as the threshold


def test_strict_greater_ties_at_zero():
    """(x > 0) * 2 - 1 and torch.where(w > 0, 1, -1) map 0 to -1: exact on inputs with many zeros."""
    model = P.PadModeNet("zeros").eval()
    x = torch.relu(_x(3, 6, 5, 5))
    cm, rep = convert(model, (x,))
    assert rep.converted == ["conv"], str(rep)
    xf = _fresh((3, 6, 5, 5), 3)
    xf[xf.abs() < 0.7] = 0.0
    with torch.no_grad():
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-5, atol=1e-5)


def test_functional_grouped_dilated_strided_conv():
    model = nn.Sequential(P.FunctionalGroupedConv()).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 8, 9, 9), (3, 8, 9, 9), ["0"])
    assert type(cm[0]) is BinaryConv2d and cm[0].groups == 2 and cm[0].dilation == (2, 2)


@pytest.mark.parametrize("op", ["@", "matmul", "F"])
def test_linear_written_as_matmul(op):
    model = nn.Sequential(P.MatmulBinaryLinear(20, 7, op)).eval()
    cm, _ = _check_on_fresh_inputs(model, _x(6, 20), (6, 20), ["0"])
    assert type(cm[0]) is BinaryLinear


def test_matmul_with_weight_on_the_left_reported():
    """W @ x^T binarizes but is not packed: reported (it used to be invisible), strict raises."""
    model = nn.Sequential(P.MatmulInputFirst(20, 7)).eval()
    _stays_float(model, _x(6, 20), "0", "weight on the left", P.MatmulInputFirst)


def test_attention_matmul_is_not_a_layer():
    model = nn.Sequential(P.BinaryAttention(), P.MatmulBinaryLinear(10, 4)).eval()
    x = _x(3, 5, 10)
    cm, rep = convert(model, (x,), strict=True)
    assert rep.converted == ["1"] and "0" not in rep.skipped, str(rep)
    with torch.no_grad():
        xf = _fresh((3, 5, 10), 2)
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spread", [0.2, 2e-4])
def test_per_channel_activation_scale(spread):
    """sign(x) * alpha_c: the conv's input is real (never packed as +-1, even for alpha_c within
    2e-4 of 1, which would be off by more than rounding); the binary weights still pack."""
    model = P.ScaledActNet(spread).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["conv"])
    assert type(cm.conv) is BinaryWeightConv2d and rep.layers["conv"]["kind"] == "binary weights, real input"
    inline = nn.Sequential(P.InlineScaledActConv(6, 5, spread)).eval()
    _stays_float(inline, _x(3, 6, 5, 5), "0", "real-valued input transformed", P.InlineScaledActConv)


def test_dorefa_and_pact_activations():
    x = _x(3, 6, 5, 5)
    for m in (P.DoReFaConv(6, 5, 3, padding=1, a_bits=2, w_bits=1), P.PACTConv(6, 5, 3, padding=1, bias=False)):
        model = nn.Sequential(m).eval()
        cm, rep = _check_on_fresh_inputs(model, x, (3, 6, 5, 5), ["0"])
        assert type(cm[0]) is BitSerialConv2d and rep.layers["0"]["kind"] == "2-bit input"
    two_bit_w = nn.Sequential(P.DoReFaConv(6, 5, 3, padding=1, a_bits=2, w_bits=2)).eval()
    _stays_float(two_bit_w, x, "0", "weights are not +-alpha", P.DoReFaConv)


@pytest.mark.parametrize("act", [P.HardtanhSign, P.WhereSign, P.GtSign])
def test_sign_hardtanh_where_binarizers_and_1x1_stride2(act):
    """sign(hardtanh(x)), torch.where(x >= 0, 1, -1) with an STE, (x > 0) * 2 - 1, feeding a 3x3
    and a 1x1 stride-2 (downsample) binary conv. The comparisons are exact at the tie x == 0
    (torch.sign gives 0 there, documented: not tested)."""
    model = nn.Sequential(act(), P.BinWeightConv(6, 5)).eval()
    cm, _ = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["1"])
    assert type(cm[1]) is BinaryConv2d
    down = nn.Sequential(act(), P.BinWeightConv(6, 8, k=1, stride=2, padding=0)).eval()
    cd, _ = _check_on_fresh_inputs(down, _x(3, 6, 6, 6), (3, 6, 6, 6), ["1"])
    if act is not P.HardtanhSign:
        xf = _fresh((3, 6, 6, 6), 4)
        xf[xf.abs() < 0.6] = 0.0
        with torch.no_grad():
            torch.testing.assert_close(cd(xf), down(xf), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "op,shape", [("addmm", (5, 6)), ("einsum", (5, 6)), ("conv3d", (3, 6, 4, 5, 5)), ("conv_transpose2d", (3, 6, 5, 5))]
)
def test_other_products_reported_not_packed(op, shape):
    """Layers written with products convert does not pack used to be invisible to the report and
    to strict=True: they are reported and stay float. (conv1d, once among them, is packed now:
    tests/convert/test_conv1d.py.)"""
    model = nn.Sequential(P.OtherProductLayer(op)).eval()
    _stays_float(model, _x(*shape), "0", f"computes its layer with {op}", P.OtherProductLayer)


def test_bnext_elm_attention():
    """HardSign / temperature-binarized weights (trained: T below every |w|, or T < 1e-7: sign),
    squeeze-and-expand gate and info-recoupling in the block: the binary convs pack, the BN after
    each folds, the gate stays float. With T = 1 (untrained) the weights are real: reported."""
    model = _random_bn(P.BNextTiny())
    names = ["blocks.0.binary_conv", "blocks.1.binary_conv"]
    cm, rep = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), names)
    assert all(type(cm.get_submodule(n)) is BinaryConv2d for n in names)
    assert rep.fused["blocks.0.norm1"] == "blocks.0.binary_conv"
    assert all("se.se" in n or n in ("stem.0", "fc") for n in rep.skipped), str(rep)
    untrained = _random_bn(P.BNextTiny(temperature=1.0))
    _, rep = convert(untrained, (_x(4, 3, 8, 8),))
    assert rep.converted == ["blocks.1.binary_conv"] and "weights are not" in rep.skipped["blocks.0.binary_conv"]


def _around_rounding_boundaries(alpha, n, shape, ulps=40):
    """Inputs at and within `ulps` ulps of every decision boundary (k + 1/2) * alpha / n."""
    b = ((torch.arange(n + 2, dtype=torch.float64) - 0.5) * alpha / n).float()
    vals, up, down = [b], b, b
    for _ in range(ulps):
        up, down = torch.nextafter(up, up + 1), torch.nextafter(down, down - 1)
        vals += [up, down]
    v = torch.cat(vals)
    size = math.prod(shape[1:])
    return torch.cat([v, v[:1].expand((-v.numel()) % size)]).reshape(-1, *shape[1:])


@pytest.mark.parametrize("alpha", [0.37, 0.7, 1.3, 1.5, 2.9])
def test_pact_rounding_at_decision_boundaries(alpha):
    """round(y * (n / alpha)) packs exactly; round(y / alpha * n) rounds another expression, which
    differs from it only within an ulp or two of the decision boundaries (never on the examples):
    packed only where it agrees there, and then exact on every input near every boundary."""
    n, x = 3, _x(3, 6, 5, 5)
    for cls in (P.PACTConv, P.PACTDivideFirstConv):
        model = nn.Sequential(cls(6, 5, 3, padding=1, bias=False, alpha=alpha)).eval()
        cm, rep = convert(model, (x,))
        if cls is P.PACTConv or alpha in (0.37, 0.7, 1.3):  # these are known to round differently
            assert (rep.converted == ["0"]) == (cls is P.PACTConv), str(rep)
        if not rep.converted:
            assert "decision boundaries" in rep.skipped["0"]
            continue
        xb = _around_rounding_boundaries(alpha, n, x.shape)
        with torch.no_grad():
            err = (cm(xb) - model(xb)).abs().movedim(1, -1).reshape(-1, 5).amax(0)
        assert bool((err <= 0.1 * cm[0].multiplier.abs()).all()), (cls.__name__, err)


def test_in_place_input_binarization_read_by_the_caller():
    """BinaryNet.pytorch's input.data = sign(input.data) changes the caller's tensor: where the
    caller reads it afterwards (here a shortcut adds it) the layer stays float; else it packs."""
    x = _x(3, 6, 5, 5)
    model = P.InPlaceResidual(reuse=True).eval()
    rep = _stays_float(model, x, "conv", "changes its input tensor in place", P.InPlaceBinarizeConv2d)
    assert rep.model_max_abs == 0
    alone = P.InPlaceResidual(reuse=False).eval()
    cm, _ = _check_on_fresh_inputs(alone, x, (3, 6, 5, 5), ["conv"])
    assert type(cm.conv) is BinaryConv2d
