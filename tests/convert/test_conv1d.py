"""convert() on binary 1-D conv nets (tests/convert/models_conv1d.py): conv1d calls are packed as
the 1-D modules, checked on FRESH inputs (other batch sizes and lengths than the examples):
integer parts exact, outputs equal within float rounding; what must stay float stays float with
its reason; strict=True names a binary conv1d that cannot be packed; save / load round trip."""

import pytest
import torch
import torch.nn.functional as F

import bnn_kernels as bk
from bnn_kernels import ConversionError, convert
from bnn_kernels.nn import BinaryConv1d, BinaryWeightConv1d, BitSerialConv1d, Folded, OffsetBinaryConv1d

from . import models_conv1d as P
from . import models_public2 as P2
from .test_public_models import _capture, _fresh, _random_bn, _x

_EXAMPLE = (4, 10, 24)
_FRESH = [(1, 10, 17), (5, 10, 31), (2, 10, 9)]
_PACKED = ["b1.conv", "b2.conv", "down"]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _int_part(module, x):
    """The exact integer conv1d(sign(x), sign(W)) of a binary layer of the models, float64."""
    conv = module if isinstance(module, torch.nn.Conv1d) else None
    geo = (
        dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
        if conv is not None
        else module.geo
    )
    xb = torch.where(x >= 0, 1.0, -1.0).double()
    return F.conv1d(xb, torch.sign(module.weight).double(), None, **geo)


def _check_fresh(model, plain, names, shapes=_FRESH):
    """Each packed layer of plain (converted without fusion) against its module on the inputs the
    original model feeds it on fresh inputs: integer part exact, output within a tenth of an
    integer step per channel."""
    for i, shape in enumerate(shapes):
        xf = _fresh(shape, 40 + i)
        io = _capture(model, names, xf)
        for name in names:
            new, (inp, want) = plain.get_submodule(name), io[name]
            assert torch.equal(new.int_forward(inp).double(), _int_part(model.get_submodule(name), inp)), name
            with torch.no_grad():
                got = new(inp)
            assert got.shape == want.shape and got.is_contiguous()
            err = (got.double() - want.double()).abs().movedim(1, -1).reshape(-1, want.shape[1]).amax(0)
            bound = 0.1 * new.multiplier.double().abs() + 1e-5 * float(want.abs().max())
            assert bool((err <= bound).all()), (name, shape, float((err / bound).max()))


def _same_model(a, b, shapes=_FRESH, shift=0.0):
    """a(x) close to b(x) on fresh inputs of the shapes (shifted by shift)."""
    for i, shape in enumerate(shapes):
        xf = _fresh(shape, 60 + i) + shift
        with torch.no_grad():
            torch.testing.assert_close(a(xf), b(xf), rtol=1e-4, atol=1e-4)


def test_keyword_spotting_bnn_packs_and_folds():
    model = _random_bn(P.KwsBNN())
    cm, rep = convert(model, (_x(*_EXAMPLE),))
    plain, rep_plain = convert(model, (_x(*_EXAMPLE),), fuse=False)
    assert sorted(rep_plain.converted) == sorted(rep.converted) == sorted(_PACKED), str(rep)
    assert all(type(cm.get_submodule(n)) is BinaryConv1d for n in _PACKED)
    assert cm.down.groups == 3 and cm.down.stride == (1, 2) and cm.b2.conv.dilation == (1, 2)
    # BatchNorm1d after each binary conv folds into its epilogue; the SignSTE into down's thresholds
    assert {"b1.bn": "b1.conv", "b2.bn": "b2.conv", "bn": "down", "sign": "down"}.items() <= rep.fused.items()
    assert isinstance(cm.b1.bn, Folded) and isinstance(cm.sign, Folded)
    assert "weights are not" in rep.skipped["stem.0"] and "weights are not" in rep.skipped["head"]
    _check_fresh(model, plain, _PACKED)
    _same_model(cm, model)
    _same_model(plain, model)
    # no 4-D float layer: nothing was put in channels_last, and the report does not say so
    assert not rep.channels_last and "channels_last" not in str(rep)


def test_data_dependent_threshold_stays_float_and_strict_names_it():
    model = _random_bn(P.KwsBNN(centered=True))
    cm, rep = convert(model, (_x(*_EXAMPLE),))
    assert "b2.conv" not in rep.converted and "data-dependent binarization" in rep.skipped["b2.conv"], str(rep)
    assert type(cm.b2.conv) is P.CenteredBinConv1d and type(cm.b1.conv) is BinaryConv1d
    _same_model(cm, model)
    with pytest.raises(ConversionError, match="b2.conv: "):
        convert(model, (_x(*_EXAMPLE),), strict=True)


@pytest.mark.parametrize("mode", ["circular", "reflect"])
def test_padding_mode_conv1d_packs(mode):
    model = _random_bn(P.PaddedNet(mode))
    cm, rep = convert(model, (_x(3, 6, 15),))
    assert rep.converted == ["conv"] and cm.conv.padding_mode == mode and rep.fused == {"bn": "conv"}, str(rep)
    _same_model(cm, model, [(2, 6, 11), (1, 6, 20)])


def test_save_load_round_trip(tmp_path):
    model = _random_bn(P.KwsBNN())
    cm, _ = convert(model, (_x(*_EXAMPLE),))
    bk.save(cm, tmp_path / "kws.safetensors")
    back = bk.load(tmp_path / "kws.safetensors", P.KwsBNN())
    assert type(back.down) is BinaryConv1d and back.down.config() == cm.down.config()
    xf = _fresh((3, 10, 19), 5)
    with torch.no_grad():
        assert torch.equal(back(xf), cm(xf))


_FORMS = {
    "threshold": BinaryConv1d,
    "ternary": BinaryConv1d,
    "dorefa": BitSerialConv1d,
    "bwn": BinaryWeightConv1d,
    "adabin": OffsetBinaryConv1d,
    "torch.conv1d": BinaryConv1d,
    "aten": BinaryConv1d,
    "same": BinaryConv1d,
}


@pytest.mark.parametrize("how", list(_FORMS))
def test_layer_forms_plan_as_conv2d(how):
    """Each form packs as its 1-D family, exact on fresh inputs of other batch sizes and lengths."""
    model = torch.nn.Sequential(P.Conv1dForm(how)).eval()
    x = _x(4, 12, 21)
    cm, rep = convert(model, (x,))
    assert rep.converted == ["0"] and type(cm[0]) is _FORMS[how], str(rep)
    if how == "ternary":
        assert cm[0].ternary and "ternary" in rep.layers["0"]["kind"]
    if how == "threshold":
        assert torch.equal(cm[0].threshold, model[0].t.detach().reshape(-1))
    _same_model(cm, model, [(1, 12, 16), (3, 12, 33)], shift=0.5 if how == "dorefa" else 0.0)


@pytest.mark.parametrize("how", ["tf same pad", "asymmetric reflect", "pooled"])
def test_layer_forms_that_stay_float(how):
    """What keeps a conv2d layer in float keeps a conv1d one: a pad or a pooling between the module's
    input and the call's, reported as such; strict=True names the layer."""
    model = torch.nn.Sequential(P.Conv1dForm(how)).eval()
    _, rep = convert(model, (_x(4, 12, 21),))
    assert rep.converted == [] and "is not an elementwise function of the module's input" in rep.skipped["0"], str(rep)
    with pytest.raises(ConversionError, match="0: "):
        convert(model, (_x(4, 12, 21),), strict=True)


def test_other_product_layer_conv1d_now_packs():
    """tests/convert/models_public2.py's OtherProductLayer("conv1d"), once reported as not packed."""
    model = torch.nn.Sequential(P2.OtherProductLayer("conv1d")).eval()
    cm, rep = convert(model, (_x(3, 6, 9),), strict=True)
    assert rep.converted == ["0"] and type(cm[0]) is BinaryConv1d and cm[0].padding == (0, 1)
    _same_model(cm, model, [(2, 6, 14)])


def test_unbatched_conv1d_stays_float():
    model = torch.nn.Sequential(P.Conv1dForm("torch.conv1d")).eval()
    _, rep = convert(model, (_x(12, 21),))
    assert rep.skipped["0"] == "unbatched conv1d input", str(rep)


def test_converted_model_compiles_and_exports():
    """torch.compile(fullgraph=True) and torch.export of the converted keyword-spotting BNN."""
    torch._dynamo.reset()
    cm, _ = convert(_random_bn(P.KwsBNN()), (_x(*_EXAMPLE),))
    xf = _fresh((3, 10, 19), 8)
    with torch.no_grad():
        eager = cm(xf)
        torch.testing.assert_close(torch.compile(cm, fullgraph=True, backend="aot_eager")(xf), eager)
        ep = torch.export.export(cm, (xf,))
        assert "bnn_kernels.binary_conv2d.default" in {str(n.target) for n in ep.graph.nodes}
        torch.testing.assert_close(ep.module()(xf), eager)
