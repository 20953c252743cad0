"""bnn_kernels.convert on the model families of bnn_kernels.models and on edge cases."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bnn_kernels
from bnn_kernels import ConversionError, convert
from bnn_kernels import models as M
from bnn_kernels.nn import (
    BinaryConv2d,
    BinaryLinear,
    BinaryWeightConv2d,
    BinaryWeightLinear,
    BitSerialConv2d,
    BitSerialLinear,
    Folded,
)


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _check(model, x, expect: dict, fused=None, **kw):
    """Convert, compare the converted model with the original, check the replaced classes."""
    model = M.randomize_bn(model).eval()
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        ref = model(x)
    cm, rep = convert(model, (x,), **kw)
    assert sorted(rep.converted) == sorted(expect), str(rep)
    for name, cls in expect.items():
        assert type(cm.get_submodule(name)) is cls, name
        assert rep.layers[name]["int_exact"]
        assert rep.layers[name]["max_rel"] < 1e-4
    if fused is not None:
        assert sorted(rep.fused) == sorted(fused), str(rep)
        for n in fused:
            assert isinstance(cm.get_submodule(n), Folded)
    with torch.no_grad():
        out = cm(x)
        x2 = _x(*x.shape, seed=7)  # unseen inputs
        torch.testing.assert_close(cm(x2), model(x2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert rep.model_max_rel < 1e-4
    # the original is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v)
    assert not any(isinstance(m, bnn_kernels.nn.PackedModule) for m in model.modules())
    return cm, rep


def test_reactnet_rsign_module():
    _check(
        M.ReActNetSmall(width=16),
        _x(4, 3, 10, 10),
        {"blocks.0.conv": BinaryConv2d, "blocks.1.conv": BinaryConv2d},
        fused=["blocks.0.bn", "blocks.1.bn", "blocks.0.sign", "blocks.1.sign"],
    )  # RSign -> threshold


def test_reactnet_learnable_shift_inside_conv():
    cm, rep = _check(
        M.ReActNetSmall(width=16, shift_inside=True),
        _x(4, 3, 10, 10),
        {"blocks.0.conv": BinaryConv2d, "blocks.1.conv": BinaryConv2d},
    )
    assert "shift" in rep.layers["blocks.0.conv"]["kind"]
    assert not torch.equal(cm.blocks[0].conv.threshold, torch.zeros(16))


def test_bireal_sign_inside_conv_and_real_shortcut():
    _, rep = _check(
        M.BiRealSmall(width=16), _x(4, 3, 10, 10), {"layers.0.conv": BinaryConv2d, "layers.1.conv": BinaryConv2d}
    )
    assert "weights are not" in rep.skipped["layers.1.downsample.1"]
    assert "weights are not" in rep.skipped["stem.0"] and "weights are not" in rep.skipped["fc"]


def test_xnor_scale_after_call_bias_after_scale():
    _, rep = _check(
        M.XNORNetSmall(width=16),
        _x(4, 3, 10, 10),
        {"b1.conv": BinaryConv2d, "b2.conv": BinaryConv2d},
        fused=["b1.sign", "b2.sign"],
    )  # the sign modules fold into the convs' thresholds


def test_dorefa_kbit_separate_and_inside():
    for bits in (1, 2, 4):
        cls = BitSerialConv2d
        cm, rep = _check(
            M.DoReFaNet(bits=bits, width=8), _x(4, 3, 8, 8), {"conv1": cls, "conv2": cls}, fused=["bn1", "bn2"]
        )
        assert cm.conv1.nbits == bits and cm.conv2.nbits == bits


def test_binary_weight_mlp_and_conv():
    _check(
        M.BWNMLP(d_in=48, hidden=32),
        _x(5, 3, 4, 4),
        {"net.0": BinaryWeightLinear, "net.2": BinaryWeightLinear, "net.4": BinaryWeightLinear},
    )
    model = nn.Sequential(M.BWNConv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    _check(model, _x(2, 3, 6, 6), {"0": BinaryWeightConv2d}, fused=["1"])


def test_full_size_definitions_convert():
    _check(
        M.birealnet18(num_classes=10, width=16),
        _x(2, 3, 32, 32),
        {f"layer{i}.{j}.unit{u}.conv": BinaryConv2d for i in range(1, 5) for j in range(2) for u in (1, 2)},
    )
    model = M.reactnet_a(num_classes=10, width_mult=0.125)
    names = {}
    for i, blk in enumerate(model.features):
        names[f"features.{i}.conv3x3"] = names[f"features.{i}.pw1"] = BinaryConv2d
        if blk.double:
            names[f"features.{i}.pw2"] = BinaryConv2d
    _check(model, _x(2, 3, 32, 32), names)
    # binary weights, real activations: every 3x3 conv and the three 1x1 shortcuts, BN folded
    convs = {f"layer{i}.{j}.conv{c}" for i in range(1, 5) for j in range(2) for c in (1, 2)}
    convs |= {f"layer{i}.0.down.0" for i in range(2, 5)}
    bns = [n.replace("conv", "bn") for n in convs if "conv" in n] + [f"layer{i}.0.down.1" for i in range(2, 5)]
    _check(M.bwn_resnet18(num_classes=10, width=16), _x(2, 3, 32, 32), dict.fromkeys(convs, BinaryWeightConv2d), bns)


class SignMLP(nn.Module):
    """Binary MLP: sign activations, per-channel learned alpha (negative and power-of-two too)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 40)
        self.fc2 = nn.Linear(40, 8)
        self.alpha = nn.Parameter(torch.tensor([0.5, -2.0, 0.25, 1.0, -0.125, 4.0, 1.5, 2.0]))

    def forward(self, x):
        h = M.sign_ste(self.fc1(x))
        w = torch.sign(self.fc2.weight) * self.alpha[:, None]
        return F.linear(M.sign_ste(h), w, self.fc2.bias)


def test_binary_linear_learned_negative_alpha():
    # the call is made by the root module: it must be skipped with a reason
    model = SignMLP()
    _, rep = convert(model, _x(6, 20))
    assert "root module" in rep.skipped["<root>"]
    wrapped = nn.Sequential(nn.Linear(20, 40), M.SignAct(), _LinearSTE(40, 8))
    _check(wrapped, _x(6, 20), {"2": BinaryLinear})


class _LinearSTE(nn.Linear):
    def forward(self, x):
        return F.linear(x, torch.sign(self.weight) * torch.tensor(-0.5), self.bias)


class HeavisideConv(nn.Conv2d):
    """{0, 1} input (x >= 0), scale then bias applied after the call."""

    def forward(self, x):
        xb = (x >= 0).to(x.dtype)
        out = F.conv2d(xb, torch.sign(self.weight), None, self.stride, self.padding)
        return (out + self.bias.view(1, -1, 1, 1)) * 0.25


def test_heaviside_input_and_bias_before_scale():
    model = nn.Sequential(HeavisideConv(6, 4, 3, padding=1))
    _check(model, _x(3, 6, 5, 5), {"0": BitSerialConv2d})


class PACTLinear(nn.Linear):
    """PACT: learned clip alpha, 3-bit grid on [0, alpha]."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.clip = nn.Parameter(torch.tensor(1.7))

    def forward(self, x):
        n = 7
        xq = torch.round(torch.minimum(x.clamp(min=0), self.clip) * (n / self.clip)) * (self.clip / n)
        return F.linear(xq, torch.sign(self.weight) * 0.1, self.bias)


def test_pact_grid_with_learned_clip():
    _check(nn.Sequential(PACTLinear(30, 5)), torch.rand(8, 30) * 2.2 - 0.2, {"0": BitSerialLinear})


class HardtanhAfter(nn.Conv2d):
    def forward(self, x):
        return F.hardtanh(F.conv2d(torch.sign(x), torch.sign(self.weight), None, 1, 1))


class ConstShift(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(M.sign_ste(x - 0.3), torch.sign(self.weight), None, 1, 1)


class ZeroWeights(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, torch.sign(self.weight), None, 1, 1)


def test_skipped_and_strict():
    x = _x(2, 4, 6, 6)
    for mod, why in [(HardtanhAfter(4, 4, 3), "hardtanh"), (ConstShift(4, 4, 3), "threshold not identified")]:
        model = nn.Sequential(mod)
        cm, rep = convert(model, (x,))
        assert why in rep.skipped["0"] and rep.converted == []
        assert type(cm[0]) is type(mod)
        with pytest.raises(ConversionError, match=why):
            convert(model, (x,), strict=True)
    # real-valued layers are reported but never raise
    _, rep = convert(nn.Sequential(nn.Conv2d(4, 4, 3)), (x,), strict=True)
    assert "weights are not" in rep.skipped["0"]


@pytest.mark.parametrize("groups", [1, 2])
def test_exact_zero_weights_converted_exactly_as_ternary(groups):
    conv = ZeroWeights(4, 6, 3, groups=groups)
    conv.forward = lambda x: F.conv2d(x, torch.sign(conv.weight), None, 1, 1, 1, groups)
    with torch.no_grad():
        conv.weight[torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(1)) < 0.3] = 0.0
    model = nn.Sequential(M.SignAct(), conv)
    cm, rep = convert(model, (_x(2, 4, 6, 6),), strict=True)
    assert rep.converted == ["1"] and cm[1].ternary and "ternary" in rep.layers["1"]["kind"]
    with torch.no_grad():
        for seed in (3, 4):
            xf = _x(2, 4, 6, 6, seed=seed) * 2 + 0.3
            assert torch.equal(
                cm[1].int_forward(xf).double(),
                F.conv2d(torch.where(xf >= 0, 1.0, -1.0), torch.sign(conv.weight), None, 1, 1, 1, groups),
            )
            torch.testing.assert_close(cm(xf), model(xf), rtol=1e-5, atol=1e-5)


def test_sign_module_not_folded_when_its_output_has_other_readers():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.sign = _Sign()
            self.conv = M.BinaryConv2dSTE(3, 3, 3, padding=0, bias=False)

        def forward(self, x):
            s = self.sign(x)
            return self.conv(s) + s[:, :, 1:-1, 1:-1]

    _check(Block(), _x(2, 3, 7, 7), {"conv": BinaryConv2d}, fused=[])


def test_fused_equals_unfused():
    model = M.randomize_bn(M.ReActNetSmall(width=16)).eval()
    x = _x(4, 3, 10, 10)
    fused, rf = convert(model, (x,))
    unfused, ru = convert(model, (x,), fuse=False)
    assert rf.fused and not ru.fused
    assert isinstance(unfused.blocks[0].bn, nn.BatchNorm2d) and isinstance(fused.blocks[0].bn, Folded)
    x2 = _x(3, 3, 10, 10, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(fused(x2), unfused(x2), rtol=1e-5, atol=1e-5)


def test_bn_not_fused_when_output_has_other_readers():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.sign = M.SignAct()
            self.conv = M.BinaryConv2dSTE(4, 4, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(self.sign(x))
            return self.bn(y) + y

    _check(Twice(), _x(2, 4, 5, 5), {"conv": BinaryConv2d}, fused=["sign"])


class _Sign(nn.Module):
    def forward(self, x):
        return M.sign_ste(x)


def test_inplace_and_shared_module():
    # odd fan-in (3 * 3 * 3): integer sums are never 0, so the float model's rounding noise
    # around 0 cannot flip the next sign
    conv = M.BinaryConv2dSTE(3, 3, 3, padding=0, bias=False)
    model = nn.Sequential(_Sign(), conv, _Sign(), conv)  # the same conv called twice
    x = _x(2, 3, 7, 7)
    with torch.no_grad():
        ref = model(x)
    cm, rep = convert(model, (x,), inplace=True)
    assert cm is model and isinstance(model[1], BinaryConv2d) and model[1] is model[3]
    assert rep.converted == ["1"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref)


def test_save_load_converted_into_fresh_float_model(tmp_path):
    model = M.randomize_bn(M.ReActNetSmall(width=16)).eval()
    x = _x(2, 3, 10, 10)
    cm, _ = convert(model, (x,))
    bnn_kernels.save(cm, tmp_path / "m.safetensors")
    fresh = bnn_kernels.load(tmp_path / "m.safetensors", M.ReActNetSmall(width=16))
    assert isinstance(fresh.blocks[0].conv, BinaryConv2d) and isinstance(fresh.blocks[0].bn, Folded)
    with torch.no_grad():
        assert torch.equal(fresh(x), cm(x))


def test_torch_compile_fullgraph_converted_model():
    torch._dynamo.reset()
    model = M.randomize_bn(M.DigitsBNN(width=16, blocks=2)).eval()
    x = _x(2, 1, 8, 8)
    cm, _ = convert(model, (x,))
    with torch.no_grad():
        eager = cm(x)
        compiled = torch.compile(cm, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(compiled, eager)


def test_convert_bad_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        convert("model", torch.zeros(1))
    with pytest.raises(RuntimeError):
        convert(nn.Linear(3, 2), (torch.zeros(1, 4),))


class _Scale(nn.Module):
    """Learned per-channel scale and shift written as plain arithmetic (not a BatchNorm)."""

    def __init__(self, c):
        super().__init__()
        self.w = nn.Parameter(torch.rand(c) + 0.5)
        self.b = nn.Parameter(torch.randn(c))

    def forward(self, x):
        return x * torch.sigmoid(self.w).view(1, -1, 1, 1) * 2 - self.b.view(1, -1, 1, 1)


class _Square(nn.Module):
    def forward(self, x):
        return x * x


@pytest.mark.parametrize("tail,folded", [(_Scale(4), True), (_Square(), False), (nn.ReLU(), False)])
def test_fold_generic_per_channel_affine(tail, folded):
    model = nn.Sequential(_Sign(), M.BinaryConv2dSTE(4, 4, 3, padding=1, bias=False), tail)
    x = _x(3, 4, 6, 6)
    cm, rep = convert(model, (x,))
    assert rep.converted == ["1"]
    assert rep.fused.pop("0") == "1"  # the sign module, on the input side
    assert (rep.fused == {"2": "1"}) is folded
    assert isinstance(cm[2], Folded) is folded
    unfused, _ = convert(model, (x,), fuse=False)
    x2 = _x(2, 4, 6, 6, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(cm(x2), unfused(x2), rtol=1e-5, atol=1e-5)


def test_torch_export_converted_model():
    model = M.randomize_bn(M.DigitsBNN(width=16, blocks=2)).eval()
    x = _x(2, 1, 8, 8)
    cm, _ = convert(model, (x,))
    ep = torch.export.export(cm, (x,))
    targets = {str(n.target) for n in ep.graph.nodes}
    assert "bnn_kernels.binary_conv2d.default" in targets
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), cm(x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes(dtype):
    torch.manual_seed(0)  # examples that show the whole 2-bit grid (else the layer rightly stays in float)
    for model, x in [
        (M.ReActNetSmall(width=16), _x(4, 3, 8, 8)),
        (M.DoReFaNet(bits=2, width=8), torch.rand(4, 3, 8, 8)),
    ]:
        model = M.randomize_bn(model).eval().to(dtype)
        x = x.to(dtype)
        cm, rep = convert(model, (x,))
        assert len(rep.converted) == 2, str(rep)
        with torch.no_grad():
            y = cm(x)
        assert y.dtype == dtype
        assert rep.model_max_rel < (1e-6 if dtype == torch.float64 else 3e-2)


def test_exact_zero_inputs_left_in_float_and_refused_under_strict():
    x = _x(2, 4, 6, 6) - 0.5
    model = nn.Sequential(M.SignAct(), M.BinaryConv2dSTE(4, 4, 3, padding=1, bias=False))
    x[0, 0, 0, :3] = 0.0  # torch.sign(0) = 0 at three positions
    cm, rep = convert(model, (x,))
    assert rep.converted == [] and "exactly 0" in rep.skipped["1"]
    with pytest.raises(ConversionError, match="exactly 0"):
        convert(model, (x,), strict=True)


class _AbsAfter(nn.Conv2d):
    """A non-affine op on the call's output that the examples could not reveal by fitting alone."""

    def forward(self, x):
        y = F.conv2d(x, torch.sign(self.weight), None, 1, 1)
        return y * 0.5 + y.abs() * 0.0


def test_non_affine_epilogue_is_detected_by_tracking_not_fitting():
    model = nn.Sequential(_Sign(), _AbsAfter(4, 4, 3))
    _, rep = convert(model, (_x(2, 4, 6, 6),))
    assert "abs" in rep.skipped["1"]


def test_filter_fn_and_no_hooks_left():
    model = M.randomize_bn(M.ReActNetSmall(width=16)).eval()
    x = _x(2, 3, 8, 8)
    cm, rep = convert(model, (x,), filter_fn=lambda name, m: not name.startswith("blocks.0"))
    assert rep.converted == ["blocks.1.conv"] and rep.skipped["blocks.0.conv"] == "excluded by filter_fn"
    for m in list(model.modules()) + list(cm.modules()):
        assert not m._forward_hooks and not m._forward_pre_hooks
    with pytest.raises(TypeError, match="filter_fn"):
        convert(model, (x,), filter_fn=3)


class _SignPlusReal(nn.Conv2d):
    """Binarizes its weights, then adds a real part: not binary, but meant to be."""

    def forward(self, x):
        return F.conv2d(torch.sign(x), torch.sign(self.weight) + 0.1 * self.weight, None, 1, 1)


def test_strict_raises_for_binarizing_layers_whose_weights_end_real():
    model = nn.Sequential(_SignPlusReal(4, 4, 3))
    x = _x(2, 4, 6, 6)
    _, rep = convert(model, (x,))
    assert "weights are not" in rep.skipped["0"]
    with pytest.raises(ConversionError, match=r"0: weights are not .*binarizes \(sign\)"):
        convert(model, (x,), strict=True)
    # a real layer that binarizes nothing is reported, never an error
    _, rep = convert(nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()), (x,), strict=True)
    assert "weights are not" in rep.skipped["0"]


class _InputScaled(nn.Conv2d):
    """XNOR-Net's input scale K: the output times mean |x| of each sample (data-dependent)."""

    def forward(self, x):
        k = x.abs().mean((1, 2, 3), keepdim=True)
        return F.conv2d(torch.sign(x), torch.sign(self.weight), None, 1, 1) * k


class _InputWeighted(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(torch.sign(x), torch.sign(self.weight) * x.abs().mean(), None, 1, 1)


def test_data_dependent_output_scale_and_weights_left_in_float():
    x = _x(3, 4, 6, 6)
    x = x / x.abs().mean((1, 2, 3), keepdim=True)  # every example has mean |x| = 1: the scale looks constant
    for mod, why in [
        (_InputScaled(4, 4, 3), "data-dependent scale"),
        (_InputWeighted(4, 4, 3), "data-dependent weights"),
    ]:
        model = nn.Sequential(mod).eval()
        cm, rep = convert(model, (x,))
        assert rep.converted == [] and why in rep.skipped["0"], str(rep)
        with pytest.raises(ConversionError, match="0: "):
            convert(model, (x,), strict=True)


class _PadsItsInput(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(F.pad(torch.sign(x), (1, 1, 1, 1), value=1.0), torch.sign(self.weight))


def test_padding_inside_the_module_with_a_border_of_ones_is_pad_value():
    """A constant pad of +1 after the sign: BinaryConv2d's pad_value=1 (tests/convert/test_constant_pads.py)."""
    model = nn.Sequential(_PadsItsInput(4, 4, 3)).eval()
    cm, rep = convert(model, (_x(2, 4, 6, 6),))
    assert rep.converted == ["0"] and cm[0].pad_value == 1 and cm[0].padding == (1, 1), str(rep)
    x = _x(3, 4, 7, 5, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(cm(x), model(x))
