"""convert() on a fourth set of public low-bit / BNN idioms (tests/convert/models_public4.py): LSQ
activation quantizers, binary transformer layers, products written in other ways and module
plumbing. Each test that guards a fix of convert() says what it used to do. Converted layers are
checked on fresh inputs (integer part exact, float within rounding), also on inputs ten times
wider than the examples; layers that must stay float are asserted to, with strict=True raising
and naming them."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from bnn_kernels import ConversionError, convert
from bnn_kernels.nn import BinaryConv2d, BinaryLinear, BinaryWeightConv2d, BitSerialConv2d

from . import models_public4 as P
from .test_public_models import _check_on_fresh_inputs, _fresh, _random_bn, _x
from .test_public_models2 import _stays_float


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _same_on_wide_inputs(cm, model, shape, seed=21):
    """The converted model equals the original on fresh inputs 3 and 10 times wider than usual."""
    for s in (3.0, 10.0):
        xf = _fresh(shape, seed) * s
        with torch.no_grad():
            torch.testing.assert_close(cm(xf), model(xf), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_lsq_activation_converts_where_the_examples_reach_every_level(bits):
    """LSQ's round(clamp(x / s, 0, 2**b - 1)) * s with a small learned step (the examples reach
    the top level): BitSerialConv2d, exact."""
    model = _random_bn(P.LSQNet(bits=bits, step=0.25))
    cm, rep = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), ["2"])
    assert type(cm[2]) is BitSerialConv2d and cm[2].nbits == bits, str(rep)
    _same_on_wide_inputs(cm, model, (4, 3, 8, 8))


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("batch", [1, 4])
def test_lsq_levels_the_examples_do_not_reach_stay_float(bits, batch):
    """A large learned step (s = 5): the examples reach levels 0 and 1 only, so they look
    like a {0, s} binarizer. The packed layer would saturate where the module
    goes on to its upper levels: convert used to pack it (BitSerialConv2d, 1 bit, x > 2.5) and
    was off by 60% on wider inputs; the binarizer and rounding probes now reach beyond the
    examples. The layer stays float, strict raises naming it."""
    model = _random_bn(P.LSQNet(bits=bits, step=5.0))
    x = _x(batch, 3, 8, 8)
    cm, rep = convert(model, (x,))
    assert rep.converted == [] and "more levels than the examples reach" in rep.skipped["2"], str(rep)
    assert type(cm[2]) is P.LSQConv2d
    _same_on_wide_inputs(cm, model, (3, 3, 8, 8))
    with pytest.raises(ConversionError, match="2: "):
        convert(model, (x,), strict=True)


def test_lsq_module_upstream_converts_where_the_examples_reach_every_level():
    """LSQ as a module of its own before the conv (the conv's input is quantized upstream)."""
    model = _random_bn(P.LSQUpstreamNet(bits=2, step=0.3))
    cm, rep = _check_on_fresh_inputs(model, _x(4, 3, 8, 8), (4, 3, 8, 8), ["3"])
    assert type(cm[3]) is BitSerialConv2d and cm[3].nbits == 2, str(rep)
    _same_on_wide_inputs(cm, model, (4, 3, 8, 8))


@pytest.mark.parametrize("bits,step", [(2, 5.0), (4, 4.0)])
def test_lsq_module_upstream_levels_the_examples_do_not_reach_stay_float(bits, step):
    """The conv cannot see the quantizer upstream: only the model run on inputs derived from its
    examples can show its upper levels. convert used to pack the conv from 4 examples (levels
    0..1 seen: a {0, s} input) and was off by 60% on wider inputs; the model is now also run on
    its examples scaled up (16x, 256x), and a layer whose caller then feeds it an input that is
    not binary (not on its grid), or that it packs otherwise, stays float."""
    model = _random_bn(P.LSQUpstreamNet(bits=bits, step=step))
    x = _x(4, 3, 8, 8)
    cm, rep = convert(model, (x,))
    assert rep.converted == [] and "more levels than the examples reach?" in rep.skipped["3"], str(rep)
    _same_on_wide_inputs(cm, model, (3, 3, 8, 8))
    with pytest.raises(ConversionError, match="3: "):
        convert(model, (x,), strict=True)


@pytest.mark.parametrize("how", ["kwargs", "torch_conv2d", "conv1d_as_2d"])
def test_conv_written_otherwise_converts(how):
    """F.conv2d(input=..., weight=...), torch.conv2d, a conv1d as a conv2d with a 1-high kernel."""
    model = nn.Sequential(P.ProductConv(how)).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["0"])
    assert type(cm[0]) is BinaryConv2d, str(rep)


@pytest.mark.parametrize("how", ["kwargs", "matmul_t", "torch_matmul", "matmul_kwargs", "mm"])
def test_linear_written_otherwise_converts(how):
    """F.linear with keywords, z @ w.t(), torch.matmul (also input= / other=), torch.mm."""
    model = nn.Sequential(P.ProductLinear(how)).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(4, 12), (4, 12), ["0"])
    assert type(cm[0]) is BinaryLinear, str(rep)


@pytest.mark.parametrize(
    "cls,how,shape,reason",
    [
        (P.ProductConv, "unfold_left", (3, 6, 5, 5), "matmul with the weight on the left"),
        (P.ProductConv, "unfold_right", (3, 6, 5, 5), "applies transpose"),
        (P.ProductLinear, "einsum", (4, 12), "with einsum"),
        (P.ProductLinear, "addmm", (4, 12), "with addmm"),
        (P.ProductLinear, "bmm", (4, 12), "with bmm"),
        (P.ProductLinear, "matvec_rows", (4, 12), "makes 7 conv/linear calls"),
    ],
)
def test_products_not_packed_are_reported(cls, how, shape, reason):
    """Manual im2col (W @ F.unfold(sign(x)) used to be no call at all: the report said nothing and
    strict=True did not raise; the matmul of the module's data with a tensor that is not is now
    recorded whatever the ranks), einsum, addmm, bmm, one matrix-vector product per output."""
    _stays_float(nn.Sequential(cls(how)).eval(), _x(*shape), "0", reason, cls)


def test_meta_device_model_or_examples_raise_a_clear_error():
    """A model built under torch.device('meta') (weights not loaded yet) used to fail deep inside
    convert (Tensor.item() on meta tensors, or a device mismatch); meta example inputs too."""
    with torch.device("meta"):
        meta_model = nn.Sequential(P.ProductConv("kwargs"))
    with pytest.raises(ValueError, match=r"model: 0\.weight is on the meta device"):
        convert(meta_model, (_x(2, 6, 5, 5),))
    model = nn.Sequential(P.ProductConv("kwargs"))
    with pytest.raises(ValueError, match="example_inputs: a tensor is on the meta device"):
        convert(model, ({"x": torch.empty(2, 6, 5, 5, device="meta")},))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_submodules():
    """A TorchScript submodule takes no hooks and runs its ops where convert cannot see them:
    convert used to crash (register_forward_pre_hook is not supported on ScriptModules). It is now
    reported as skipped, and strict raises for one whose graph binarizes; a scripted float stem
    does not stop strict, and a scripted binarizer child inside a conv module converts with it."""
    x = _x(4, 3, 6, 6)
    model = _random_bn(P.scripted_net("binary"))
    cm, rep = convert(model, (x,))
    assert rep.converted == [] and "TorchScript" in rep.skipped["2"], str(rep)
    with torch.no_grad():
        xf = _fresh((3, 3, 6, 6), 5)
        torch.testing.assert_close(cm(xf), model(xf))
    with pytest.raises(ConversionError, match=r"2: a TorchScript module .* binarizes \(sign\)"):
        convert(model, (x,), strict=True)
    stem = _random_bn(P.scripted_net("stem"))
    cm, rep = convert(stem, (x,), strict=True)
    assert rep.converted == ["2"] and "TorchScript" in rep.skipped["0"], str(rep)
    child = _random_bn(P.scripted_net("child"))
    cm, rep = _check_on_fresh_inputs(child, x, (4, 3, 6, 6), ["2"])
    assert type(cm[2]) is BinaryConv2d and "2.act" not in rep.skipped, str(rep)


@pytest.mark.parametrize("alpha", [0.8, -0.8, 1.0])
def test_bit_elastic_binarization_converts(alpha):
    """BiT's alpha * sign((x - beta) / alpha) with a learned per-tensor alpha (negative too: the
    sign flips twice) and beta, on 3-D token inputs with LayerNorm before: BinaryLinear with
    the threshold beta; checked on fresh inputs, also with another number of tokens."""
    model = P.BiTNet(alpha=alpha).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 5, 8), (3, 5, 8), ["fc1", "fc2"])
    assert type(cm.fc1) is BinaryLinear and type(cm.fc2) is BinaryLinear, str(rep)
    with torch.no_grad():
        xf = _fresh((2, 9, 8), 8)
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "bit,reason",
    [
        (dict(per_feature=True), "real-valued input transformed inside the module"),
        (dict(two_sided=False), "threshold not identified"),
    ],
)
def test_bit_forms_that_stay_float(bit, reason):
    """A per-feature alpha makes the input alpha_i * +-1 (real; the module transforms it before
    the call), and the {0, 1} form alpha * round(clamp((x - beta) / alpha, 0, 1)) switches at a
    computed beta + alpha / 2 that is no parameter of the module: both stay float (reported,
    strict raises)."""
    _stays_float(P.BiTNet(**bit).eval(), _x(3, 5, 8), "fc1", reason, P.BiTLinear)


def test_binary_attention_projections_convert_scores_stay_float():
    """Q / K / V pack (BinaryLinear on [N, T, d]); sign(q) @ sign(k)^T multiplies two activations
    and is no layer; the output projection is real. Exact on fresh inputs, other token counts."""
    model = P.BinaryAttention().eval()
    cm, rep = _check_on_fresh_inputs(model, _x(2, 5, 16), (2, 5, 16), ["q", "k", "v"])
    assert all(type(getattr(cm, n)) is BinaryLinear for n in "qkv") and "weights are not" in rep.skipped["out"]
    with torch.no_grad():
        xf = _fresh((3, 7, 16), 9)
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-4, atol=1e-4)
    convert(model, (_x(2, 5, 16),), strict=True)  # nothing binary left behind


_IN_PLACE_ON_INPUT = ["caller_sign_", "hardtanh_kw", "leaky_positional", "relu_module"]


@pytest.mark.parametrize("how", ["sign_", "relu_inplace", "clamp_"] + _IN_PLACE_ON_INPUT)
def test_in_place_binarizers(how):
    """x.clone().sign_(), sign(F.relu(x, inplace=True)), clamp_ then sign_, and on the caller's
    tensor (which nn.Sequential does not read again) x.sign_(), F.hardtanh(x, inplace=True),
    F.leaky_relu(x, 0.1, True), nn.ReLU(inplace=True)."""
    model = _random_bn(
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            P.InPlaceBinarizerConv(how, 6, 6, 3, padding=1),
            nn.BatchNorm2d(6),
        )
    )
    cm, rep = _check_on_fresh_inputs(model, _x(3, 3, 6, 6), (3, 3, 6, 6), ["2"])
    cls = BitSerialConv2d if how in ("relu_inplace", "relu_module") else BinaryConv2d  # sign(relu(x)): {0, 1}
    assert type(cm[2]) is cls and rep.fused == {"3": "2"}, str(rep)


def test_parametrized_weights_and_a_pre_hook_binarizer():
    """torch.nn.utils.parametrize holds the weight binarizer (real input: BinaryWeightConv2d). A
    forward pre-hook that binarizes or shifts the input changes what the module's forward sees,
    and the packed module would not run it: float, with that reason (the probes, which run the
    hook again on values taken after it, used to leave it float with a misleading reason, or
    pack the sign hook)."""

    def net(hook=None):
        conv = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        parametrize.register_parametrization(conv, "weight", P.MeanAbsSign())
        if hook is not None:
            conv.register_forward_pre_hook(hook)
        return _random_bn(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), conv, nn.BatchNorm2d(6)))

    model = net()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 3, 6, 6), (3, 3, 6, 6), ["2"])
    assert type(cm[2]) is BinaryWeightConv2d, str(rep)
    for hook in (lambda mod, args: (torch.sign(args[0]),), lambda mod, args: (args[0] - 0.5,)):
        model = net(hook)
        cm, rep = convert(model, (_x(3, 3, 6, 6),))
        assert rep.converted == [] and "forward pre-hooks" in rep.skipped["2"], str(rep)
        assert isinstance(cm[2], nn.Conv2d)
        with torch.no_grad():
            xf = _fresh((3, 3, 6, 6), 14)
            torch.testing.assert_close(cm(xf), model(xf))
        with pytest.raises(ConversionError, match="2: it has forward pre-hooks"):
            convert(model, (_x(3, 3, 6, 6),), strict=True)


def test_forward_hooks_on_the_binary_module():
    """A forward hook's per-channel affine (o * 2 + 1) is part of the module's output: folded into
    the packed epilogue; a hook scaling by a statistic of the input keeps the layer float."""
    for hook, converted in ((lambda m, a, o: o * 2 + 1, ["2"]), (lambda m, a, o: o * a[0].abs().mean(), [])):
        model = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), P.InPlaceBinarizerConv("sign_", 6, 6, 3, padding=1)
        )
        model[2].register_forward_hook(hook)
        model = _random_bn(model)
        cm, rep = convert(model, (_x(4, 3, 6, 6),))
        assert rep.converted == converted, str(rep)
        with torch.no_grad():
            xf = _fresh((3, 3, 6, 6), 10)
            torch.testing.assert_close(cm(xf), model(xf), rtol=1e-4, atol=1e-4)


def test_several_inputs_a_keyword_and_a_dict_output():
    """Positional inputs, a dict of keyword inputs, inputs that require grad; a dict output with a
    tuple inside."""
    model = _random_bn(P.TwoInputNet())
    x, skip = _x(4, 3, 6, 6), _x(4, 6, 6, 6, seed=1)
    xf, sf = _fresh((3, 3, 6, 6), 11), _fresh((3, 6, 6, 6), 12)
    for examples in ((x, skip), {"x": x, "skip": skip, "scale": 2.0}, (x.requires_grad_(), skip)):
        cm, rep = convert(model, examples)
        assert rep.converted == ["conv"] and type(cm.conv) is BinaryConv2d, str(rep)
        scale = examples["scale"] if isinstance(examples, dict) else 1.0
        with torch.no_grad():
            torch.testing.assert_close(cm(xf, sf, scale)["out"], model(xf, sf, scale)["out"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("step", [0.25, 0.6119712])
def test_lsq_gradient_scale_reads_numel_stays_float(step):
    """LSQ's gradient scale s * g + (s - s * g).detach() with g = 1 / sqrt(x.numel() * Qp) is s for
    most s but one ulp off for about 1% of them, depending on numel: with s = 0.6119712 it is s at
    batch 4 and not at batch 3, where the module's rounding boundaries move by an ulp. convert used
    to pack it (its probes run at the examples' shape) and differed at batch 3 on inputs at the
    boundaries; a binarizer that reads its input's numel() before the call now stays float."""
    model = _random_bn(P.LSQNet(bits=2, step=step, grad_scale=True))
    _stays_float(model, _x(4, 3, 8, 8), "2", "reads the input's numel()", P.LSQConv2d)


def test_lsq_signed_range():
    """Signed LSQ (levels -2..1 times s): inside the conv module the input is transformed before a
    binary-weight call (no k-bit grid of {0..2^k-1}): float, strict raises; as a module of its
    own, the conv takes a real input: BinaryWeightConv2d, exact."""
    inside = _random_bn(P.LSQNet(bits=2, step=0.5, signed=True))
    _stays_float(inside, _x(4, 3, 8, 8), "2", "real-valued input transformed", P.LSQConv2d)
    upstream = _random_bn(P.LSQUpstreamNet(bits=2, step=0.5, signed=True))
    cm, rep = _check_on_fresh_inputs(upstream, _x(4, 3, 8, 8), (4, 3, 8, 8), ["3"])
    assert type(cm[3]) is BinaryWeightConv2d, str(rep)
    _same_on_wide_inputs(cm, upstream, (4, 3, 8, 8))


def test_bit_per_feature_shift_converts():
    """A per-feature beta with a per-tensor alpha: +-alpha with a per-feature threshold (BinaryLinear);
    fresh inputs with another token count."""
    model = P.BiTNet().eval()
    for fc in (model.fc1, model.fc2):
        fc.act.beta = nn.Parameter(0.3 * torch.randn(fc.in_features))
    cm, rep = _check_on_fresh_inputs(model, _x(3, 5, 8), (3, 5, 8), ["fc1", "fc2"])
    assert type(cm.fc1) is BinaryLinear and "sign(x - act.beta)" in rep.layers["fc1"]["kind"], str(rep)
    with torch.no_grad():
        xf = _fresh((4, 7, 8), 13)
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("wbits", [1, 2, 3])
def test_dorefa_k_bit_weights(wbits):
    """1-bit DoReFa weights (+-1) with 2-bit activations pack (BitSerialConv2d); 2- and 3-bit weights
    stay float, and the reason says they are multi-bit (it used to call them a real-valued layer)."""
    model = nn.Sequential(P.DoReFaWeightConv2d(6, 5, 3, padding=1, wbits=wbits)).eval()
    x = _x(4, 6, 6, 6)
    if wbits == 1:
        cm, rep = _check_on_fresh_inputs(model, x, (4, 6, 6, 6), ["0"])
        assert type(cm[0]) is BitSerialConv2d and cm[0].nbits == 2, str(rep)
        return
    rep = _stays_float(model, x, "0", f"up to {2**wbits} values per channel (multi-bit weights", P.DoReFaWeightConv2d)
    assert "real-valued" not in rep.skipped["0"]


@pytest.mark.parametrize("how", _IN_PLACE_ON_INPUT)
def test_in_place_on_the_input_the_caller_reads_again_stays_float(how):
    """The caller adds the conv module's input tensor after the module clipped it in place. The
    keyword / positional inplace=True forms (F.hardtanh, F.leaky_relu, nn.ReLU) were not seen as
    in place (their op names have no trailing _): convert packed the layer, and the packed model,
    whose module leaves its input alone, was off by about 4 on inputs 3 times wider."""
    model = _random_bn(P.ResidualReader(how))
    _stays_float(model, _x(4, 3, 6, 6), "conv", "changes its input tensor in place", P.InPlaceBinarizerConv)


def test_float16_model_not_widened_past_its_range():
    """The model also runs on its examples times 16 and 256 (see the LSQ upstream test), but not a
    float16 one: there large activations overflow to inf, then NaN, which torch.sign turns into 0,
    and a layer binarized upstream was refused for that tie. It packs."""
    model = nn.Sequential(
        *[nn.Conv2d(c, 6, 3, padding=1) for c in (3, 6, 6)], P.ScriptedSign(), P.SignWeightConv2d(6, 6, 3, padding=1)
    )
    with torch.no_grad():
        for conv in model[:3]:
            conv.weight.mul_(20)
    model = model.half().eval()
    x = _x(4, 3, 6, 6).half()
    cm, rep = convert(model, (x,))
    assert rep.converted == ["4"] and type(cm[4]) is BinaryConv2d, str(rep)
    with torch.no_grad():
        xf = _fresh((3, 3, 6, 6), 15).half()
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-2, atol=1e-2)


class _SignConv(nn.Conv2d):
    """sign(x) conv sign(w) * mean|w| per output channel (XNOR-Net style)."""

    def forward(self, x):
        w = torch.sign(self.weight) * self.weight.abs().mean((1, 2, 3), keepdim=True)
        return nn.functional.conv2d(torch.sign(x), w, None, self.stride, self.padding)


@pytest.mark.parametrize("wrap", ["weight_norm", "spectral_norm"])
def test_weight_norm_pre_hooks_still_convert(wrap):
    """The old torch.nn.utils.weight_norm / spectral_norm recompute the weight in a forward
    pre-hook and leave the input alone: the layer converts, exact on fresh inputs (such models
    cannot be deep-copied, so inplace=True)."""
    import warnings

    def net():
        torch.manual_seed(3)
        conv = getattr(nn.utils, wrap)(_SignConv(6, 8, 3, padding=1))
        return _random_bn(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), conv, nn.BatchNorm2d(8)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # weight_norm is deprecated in torch
        model, ref = net().eval(), net().eval()
    ref.load_state_dict(model.state_dict())
    cm, rep = convert(model, (_x(4, 3, 6, 6),), inplace=True)
    assert type(cm[2]) is BinaryConv2d, str(rep)
    with torch.no_grad():
        for shape in [(4, 3, 6, 6), (1, 3, 9, 7)]:
            xf = _fresh(shape, 15)
            torch.testing.assert_close(cm(xf), ref(xf), rtol=1e-4, atol=1e-4)
