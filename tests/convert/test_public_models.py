"""convert() on models written the way public BNN codebases write them (tests/convert/models_public.py):
every converted layer is checked on fresh inputs that were not the conversion examples (integer
part exact, float part within rounding), and the layers that cannot be converted exactly are left
in float with the reason (and raise under strict=True)."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bnn_kernels
from bnn_kernels import ConversionError, convert
from bnn_kernels.nn import BinaryConv2d, BinaryLinear, BinaryWeightConv2d, BitSerialConv2d, OffsetBinaryConv2d

from . import models_public as P

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*should not be instantiated:DeprecationWarning"
)  # the codebases' idiom

_plan = importlib.import_module("bnn_kernels.convert._plan")
_verify = importlib.import_module("bnn_kernels.convert._verify")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # model initialisation (the tests pass for other seeds too)


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _fresh(shape, seed):
    """Unseen inputs with other per-sample statistics than the examples."""
    g = torch.Generator().manual_seed(seed)
    n = shape[0]
    scale = (0.3 + 2 * torch.rand(n, generator=g)).view(n, *[1] * (len(shape) - 1))
    shift = (torch.rand(n, generator=g) - 0.5).view(n, *[1] * (len(shape) - 1))
    return torch.randn(*shape, generator=g) * scale + shift


def _random_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return model.eval()


def _capture(model, names, x):
    """{name: (input, output)} of the named modules of model on x."""
    got, hooks = {}, []
    for n in names:
        m = model.get_submodule(n)
        hooks.append(m.register_forward_pre_hook(lambda mod, a, n=n: got.__setitem__(n, [a[0].clone()])))
        hooks.append(m.register_forward_hook(lambda mod, a, o, n=n: got[n].append(o.clone())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return got


def _check_on_fresh_inputs(model, x, shape, converted, seeds=(11, 12, 13)):
    """Each packed layer (converted without fusion) against its original module on fresh inputs:
    per output channel within a tenth of one integer step, so the integer part is exact; and the
    fused converted model against the original model."""
    cm, rep = convert(model, (x,))
    plain, rep_plain = convert(model, (x,), fuse=False)
    assert sorted(rep_plain.converted) == sorted(converted), str(rep_plain)
    for seed in seeds:
        xf = _fresh(shape, seed)
        io = _capture(model, converted, xf.clone())
        for name in converted:
            new = plain.get_submodule(name)
            inp, want = io[name]
            with torch.no_grad():
                got = new(inp)
            ch = 1 if want.dim() == 4 else -1
            err = (got.double() - want.double()).abs().movedim(ch, -1).reshape(-1, want.shape[ch]).amax(0)
            bound = 0.1 * new.multiplier.double().abs() + 1e-5 * float(want.abs().max())
            assert bool((err <= bound).all()), (name, float((err / bound).max()))
        with torch.no_grad():
            torch.testing.assert_close(cm(xf.clone()), model(xf.clone()), rtol=1e-4, atol=1e-4)
    return cm, rep


def test_irnet_resnet():
    model = _random_bn(P.CifarResNet(P.IRConv2d))
    names = [f"layer{i}.conv{j}" for i in (1, 2) for j in (1, 2)]
    cm, rep = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), names)
    assert all(type(cm.get_submodule(n)) is BinaryConv2d for n in names)
    assert "weights are not" in rep.skipped["conv1"] and "weights are not" in rep.skipped["linear"]


def test_recu_resnet():
    model = _random_bn(P.CifarResNet(P.ReCUConv2d))
    names = [f"layer{i}.conv{j}" for i in (1, 2) for j in (1, 2)]
    cm, _ = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), names)
    assert all(type(cm.get_submodule(n)) is BinaryConv2d for n in names)


def test_rbnn_siman_data_dependent_activation_left_in_float():
    model = _random_bn(P.CifarResNet(P.RBNNActConv2d))
    names = [f"layer{i}.conv{j}" for i in (1, 2) for j in (1, 2)]
    x = _x(4, 3, 8, 8)
    cm, rep = convert(model, (x,))
    assert rep.converted == [], str(rep)
    for n in names:
        assert "data-dependent binarization" in rep.skipped[n] and "mean" in rep.skipped[n]
        assert type(cm.get_submodule(n)) is P.RBNNActConv2d
    with torch.no_grad():
        xf = _fresh((4, 3, 8, 8), 5)
        torch.testing.assert_close(cm(xf), model(xf))
    with pytest.raises(ConversionError, match="layer1.conv1: data-dependent"):
        convert(model, (x,), strict=True)


def test_data_dependent_binarization_caught_by_derived_inputs_alone(monkeypatch):
    """A planted wrong conversion: without the static detection, the examples alone cannot tell
    sign(a - mean(a)) from sign(a) when every example has mean ~0; the derived inputs can."""
    monkeypatch.setattr(_plan, "_check_elementwise_input", lambda invs: None)
    model = nn.Sequential(P.RBNNActConv2d(6, 5, 3, padding=1, bias=False)).eval()
    x = _x(3, 6, 5, 5)
    x = x - x.mean((1, 2, 3), keepdim=True)  # per-sample mean exactly ~0: sign(x - mean) == sign(x)
    x = x / x.std((1, 2, 3), keepdim=True)
    _, rep = convert(model, (x,))  # the probes of the threshold between the examples catch it first
    assert rep.converted == [] and "threshold not identified" in rep.skipped["0"], str(rep)
    monkeypatch.setattr(importlib.import_module("bnn_kernels.convert._probe"), "_gap_holds", lambda *a: True)
    _, rep = convert(model, (x,))
    assert rep.converted == [] and "derived inputs" in rep.skipped["0"], str(rep)
    # without the derived inputs, the examples at other shapes still catch it (another mean) ...
    monkeypatch.setattr(_verify, "derived_inputs", lambda x: [])
    _, rep = convert(model, (x,))
    assert rep.converted == [] and "another shape" in rep.skipped["0"], str(rep)
    # ... and without those either, the wrong layer goes through: this is what they catch
    monkeypatch.setattr(_verify, "reshaped_inputs", lambda x: [])
    cm, rep = convert(model, (x,))
    assert rep.converted == ["0"]
    with torch.no_grad():
        xf = _fresh((3, 6, 5, 5), 3)
        assert not torch.allclose(cm(xf), model(xf), rtol=1e-3, atol=1e-3)


def test_planted_wrong_weight_bit_is_caught(monkeypatch):
    build = _plan._build

    def wrong(*args, **kw):
        new = build(*args, **kw)
        new.weight_bits.view(-1)[0] ^= 1  # one weight sign flipped
        return new

    monkeypatch.setattr(_plan, "_build", wrong)
    model = _random_bn(P.CifarResNet(P.IRConv2d))
    _, rep = convert(model, (_x(4, 3, 8, 8),))
    assert rep.converted == [] and all("verification failed" in rep.skipped[f"layer1.conv{j}"] for j in (1, 2))


def test_binarynet_vgg_view_after_binary_weight_conv():
    model = _random_bn(P.VGGBinary())
    x = _x(4, 3, 8, 8)
    names = ["features.0", "features.3", "features.7", "classifier.0", "classifier.3"]
    cm, _ = _check_on_fresh_inputs(model, x, (4, 3, 8, 8), names)
    assert type(cm.features[0]) is BinaryWeightConv2d and type(cm.features[3]) is BinaryConv2d
    assert type(cm.classifier[0]) is BinaryLinear
    small = P.FirstLayerView().eval()
    cs, rep = convert(small, (x,))
    assert rep.converted == ["conv"]
    with torch.no_grad():
        xf = _fresh((4, 3, 8, 8), 1)
        torch.testing.assert_close(cs(xf), small(xf), rtol=1e-5, atol=1e-5)


def test_xnor_net_nin():
    model = _random_bn(P.xnor_binarize_weights(P.NIN()))
    names = ["xnor.3.conv", "xnor.4.conv"]
    cm, rep = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), names)
    assert type(cm.xnor[3]) is P.BinConv2d and type(cm.xnor[3].conv) is BinaryConv2d


@pytest.mark.parametrize("act_pre,cls", [(P.BasicInputBinarizer, BinaryConv2d), (P.ReLUSignBinarizer, BitSerialConv2d)])
def test_binary_networks_pytorch(act_pre, cls):
    model = _random_bn(P.BNNPytorchNet(act_pre))
    cm, _ = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), ["c1", "c2"])
    assert type(cm.c1) is cls and type(cm.c2) is cls


def test_sign_relu_exact_at_zero():
    """sign(relu(x)) is 0 at x == 0 (strict x > 0): the packed threshold reproduces it exactly."""
    conv = P.BConv2d(6, 4, 3, padding=1, bias=False, act_pre=P.ReLUSignBinarizer).eval()
    model = nn.Sequential(conv)
    x = torch.relu(_x(3, 6, 5, 5))  # many exact zeros in the examples
    cm, rep = convert(model, (x,))
    assert rep.converted == ["0"], str(rep)
    xf = _fresh((3, 6, 5, 5), 2)
    xf[xf.abs() < 0.5] = 0.0
    with torch.no_grad():
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-5, atol=1e-5)


def test_inline_ste_and_strict_comparison():
    x = _x(3, 6, 5, 5)
    for conv in (P.InlineSTEConv2d(6, 4, 3, padding=1), P.StrictCompareConv2d(6, 4, 3, padding=1)):
        model = nn.Sequential(conv).eval()
        xs = x.clone()
        if isinstance(conv, P.StrictCompareConv2d):
            xs[:, :, 0, :] = conv.t.detach().view(1, -1, 1)  # values exactly at the threshold
        cm, rep = convert(model, (xs,))
        assert rep.converted == ["0"], str(rep)
        xf = _fresh((3, 6, 5, 5), 4)
        if isinstance(conv, P.StrictCompareConv2d):
            xf[:, :, 1:3, :] = conv.t.detach().view(1, -1, 1, 1)
        with torch.no_grad():
            torch.testing.assert_close(cm(xf), model(xf), rtol=1e-5, atol=1e-5)


def test_adabin_offset_binary_converted_exactly():
    model = _random_bn(P.adabin_trained(P.AdaBinNet()))
    names = ["layer1.conv1", "layer1.conv2"]
    cm, rep = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), names)
    assert all(type(cm.get_submodule(n)) is OffsetBinaryConv2d for n in names)
    assert sorted(rep.fused) == ["layer1.bn1", "layer1.bn2"]
    assert "binary_a.beta_a" in rep.layers["layer1.conv1"]["kind"]


def test_adabin_activation_with_real_weights_left_in_float_and_strict_names_it():
    conv = P.AdaBinConv2d(6, 4, 3, padding=1)
    conv.forward = lambda x: F.conv2d(conv.binary_a(x), conv.weight, None, 1, 1)  # weights never binarized
    model = P.adabin_trained(nn.Sequential(conv)).eval()
    x = _x(3, 6, 5, 5)
    cm, rep = convert(model, (x,))
    assert rep.converted == [] and "not two values" in rep.skipped["0"]
    with pytest.raises(ConversionError, match=r"0: .*binarizes"):
        convert(model, (x,), strict=True)


def test_exact_zero_weights_in_binarynet_layers_converted_exactly():
    """BinaryNet binarizes weights with tensor.sign(): an exact 0 stays 0 (ternary, not lossy)."""
    model = _random_bn(P.VGGBinary())
    with torch.no_grad():
        model.features[3].weight[1, 2, 0, 0] = 0.0
        model.classifier[0].weight[3, :7] = 0.0
    names = ["features.0", "features.3", "features.7", "classifier.0", "classifier.3"]
    cm, rep = _check_on_fresh_inputs(model, _x(8, 3, 8, 8), (4, 3, 8, 8), names)
    assert cm.features[3].ternary and cm.classifier[0].ternary and not cm.features[7].ternary


def test_planted_wrong_offset_threshold_is_caught(monkeypatch):
    offset = importlib.import_module("bnn_kernels.convert._offset")
    monkeypatch.setattr(offset, "probe_threshold", lambda x, *a: ("0", torch.zeros(x.shape[1])))
    model = _random_bn(P.adabin_trained(P.AdaBinNet()))
    _, rep = convert(model, (_x(4, 3, 8, 8),))
    assert rep.converted == [] and "verification failed" in rep.skipped["layer1.conv1"], str(rep)


def test_float_remainder_in_channels_last():
    """NCHW input flows through the converted model in channels_last: the float stem returns it,
    every packed layer receives and returns it; results unchanged."""
    model = _random_bn(P.CifarResNet(P.IRConv2d))
    x = _x(4, 3, 8, 8)
    cm, rep = convert(model, (x,))
    assert rep.channels_last and cm.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    for n in rep.converted:
        cm.get_submodule(n).register_forward_hook(
            lambda m, a, o: seen.append(
                a[0].is_contiguous(memory_format=torch.channels_last)
                and o.is_contiguous(memory_format=torch.channels_last)
            )
        )
    xf = _fresh((4, 3, 8, 8), 9)
    with torch.no_grad():
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-4, atol=1e-4)
    assert seen and all(seen)
    plain, rep = convert(model, (x,), channels_last=False)
    assert not rep.channels_last and plain.conv1.weight.is_contiguous()


class _ViewAfterFloatConv(nn.Module):
    """BinaryNet-style flatten with view() after a float conv that follows a binary one."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.binary = P.InlineSTEConv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        x = self.head(self.binary(self.stem(x)))
        return x.view(-1, 4 * x.shape[2] * x.shape[3])


def test_channels_last_dropped_when_the_model_views_a_conv_output():
    model = _ViewAfterFloatConv().eval()
    x = _x(4, 3, 6, 6)
    cm, rep = convert(model, (x,))
    assert rep.converted == ["binary"]
    assert not rep.channels_last and "channels_last" in " ".join(rep.notes["<model>"])
    assert cm.stem.weight.is_contiguous()
    with torch.no_grad():
        xf = _fresh((4, 3, 6, 6), 2)
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-4, atol=1e-4)


def test_channels_last_survives_save_and_load(tmp_path):
    model = _random_bn(P.CifarResNet(P.IRConv2d))
    x = _x(4, 3, 8, 8)
    cm, _ = convert(model, (x,))
    bnn_kernels.save(cm, tmp_path / "m.safetensors")
    back = bnn_kernels.load(tmp_path / "m.safetensors", P.CifarResNet(P.IRConv2d))
    assert back.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(back(x), cm(x))


class _StandardizeSign(nn.Module):
    """A separate activation module binarizing with a per-sample threshold (RBNN / SiMaN style)."""

    def forward(self, a):
        a = a - a.view(a.size(0), -1).mean(-1).view(a.size(0), 1, 1, 1)
        a = a / a.view(a.size(0), -1).std(-1).view(a.size(0), 1, 1, 1)
        return BinaryQuantizeSign.apply(a)


class BinaryQuantizeSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):
        return g


@pytest.mark.parametrize("static_check", [True, False])
def test_data_dependent_sign_module_not_folded(monkeypatch, static_check):
    """The conv after a data-dependent sign module converts (its input is +-1), but the sign module
    must not fold into its threshold: examples with per-sample mean ~0 cannot tell it from sign(x)."""
    if not static_check:  # the derived inputs alone catch it too
        trace = importlib.import_module("bnn_kernels.convert._trace")
        monkeypatch.setattr(trace, "_elementwise", lambda name, args, kwargs: True)
    model = nn.Sequential(_StandardizeSign(), nn.Conv2d(6, 4, 3, padding=1, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.sign(model[1].weight) * 0.3)
    x = _x(3, 6, 5, 5)
    x = (x - x.mean((1, 2, 3), keepdim=True)) / x.std((1, 2, 3), keepdim=True)
    cm, rep = convert(model, (x,))
    assert rep.converted == ["1"] and rep.fused == {} and type(cm[0]) is _StandardizeSign
    with torch.no_grad():
        xf = _fresh((3, 6, 5, 5), 6)
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-5, atol=1e-5)


def test_torch_export_offset_binary_and_ternary_layers():
    model = _random_bn(P.adabin_trained(P.AdaBinNet()))
    with torch.no_grad():
        model.conv1.weight[0, 0] = 0.0
    vgg = _random_bn(P.VGGBinary())
    with torch.no_grad():
        vgg.features[3].weight[1, 2, 0, 0] = 0.0
    for m, x in ((model, _x(4, 3, 8, 8)), (vgg, _x(8, 3, 8, 8))):
        cm, _ = convert(m, (x,))
        ep = torch.export.export(cm, (x,))
        assert "bnn_kernels.binary_conv2d.default" in {str(n.target) for n in ep.graph.nodes}
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), cm(x))
