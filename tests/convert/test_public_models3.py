"""convert() on a third set of public BNN idioms (tests/convert/models_public3.py): XNOR-Net++'s
output scale, weight binarizers from comparisons / heaviside / round, larq / FDA-BNN / threshold
activations (exact at the tie), binarizers after pooling and channel shuffle, depthwise and
grouped convs, BinaryDenseNet / MeliusNet blocks, nn.DataParallel, weight sharing, dropout before
the sign, nn.Sequential-only models, a BinaryConnect MLP (batch 1 too), pruned channels, small
learned thresholds, third values at the threshold, stochastic binarization and activation scales
computed upstream. Each test that guards a fix of convert() says what it used to do.
Converted layers are checked on fresh inputs (integer part exact, float within rounding); layers
that must stay float are asserted to, with strict=True raising and naming them."""

import importlib

import pytest
import torch
from torch import nn

import bnn_kernels
from bnn_kernels import ConversionError, convert
from bnn_kernels.nn import BinaryConv2d, BinaryLinear, BinaryWeightConv2d, BinaryWeightLinear, BitSerialConv2d

from . import models_public3 as P
from .test_public_models import _check_on_fresh_inputs, _fresh, _random_bn, _x
from .test_public_models2 import _stays_float


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _with_ties(shape, t, seed, frac=0.3):
    """Fresh inputs with a fraction of the values exactly at the per-channel threshold t [C]."""
    x = _fresh(shape, seed)
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(seed + 100)) < frac
    tb = t.reshape(1, -1, *[1] * (len(shape) - 2)).expand(shape)
    return torch.where(mask, tb, x)


def test_xnor_plus_plus_scale_module_stays_float_conv_packs():
    """Gamma = alpha (x) beta (x) gamma over (C, H, W) as its own module after the conv: the conv
    packs, the scale (static but not per channel) is not folded and stays float; exact."""
    model = _random_bn(P.XNORPPBlock(6, 5, (5, 5)))
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["conv"])
    assert type(cm.conv) is BinaryConv2d and type(cm.scale) is P.XNORPPScale and rep.fused == {}, str(rep)
    convert(model, (_x(3, 6, 5, 5),), strict=True)  # nothing binary left behind


@pytest.mark.parametrize("how", ["ge", "where_gt", "ge01", "heaviside", "round", "xnor", "irnet"])
def test_weight_binarizer_idioms(how):
    """(w >= 0) * 2 - 1, where(w > 0, 1, -1) (ties at 0 map to +1 / -1), w.ge(0) and heaviside
    ({0, 1} weights: packed ternary, exact), clamp(round(w), -1, 1) (ternary), XNOR's per-channel
    mean |w| (sign(0) = 0: ternary), IR-Net's power-of-two scale; the weights hold exact zeros."""
    model = nn.Sequential(P.WeightIdiomConv(6, 5, how)).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["0"])
    assert type(cm[0]) is BinaryConv2d
    assert cm[0].ternary == (how in ("ge01", "heaviside", "round", "xnor")), str(rep)
    with torch.no_grad():  # the activation is torch.where(x >= 0, 1, -1): exact at x == 0
        xt = _with_ties((3, 6, 5, 5), torch.zeros(6), 5)
        torch.testing.assert_close(cm(xt), model(xt), rtol=1e-5, atol=1e-5)


_ACTS = {
    "larq_ste_sign": (lambda: P.FnAct(lambda x: P.LarqSteSign.apply(x, 1.0)), BinaryConv2d, True),
    "fda_sign": (lambda: P.FnAct(P.FDASign.apply), BinaryConv2d, False),
    "ge_buffer_01": (lambda: P.ThresholdBuffer(6), BitSerialConv2d, True),
    "ge_buffer_pm1": (lambda: P.ThresholdBuffer(6, pm1=True), BinaryConv2d, True),
    "hardtanh_ste": (P.HardtanhSTE, BinaryConv2d, True),
    "heaviside_0": (lambda: P.FnAct(lambda x: torch.heaviside(x, torch.tensor(0.0))), BitSerialConv2d, True),
}


@pytest.mark.parametrize("name", sorted(_ACTS))
def test_activation_idioms_exact_at_the_tie(name):
    """larq's sign(sign(x) + 0.1), FDA-BNN's sign (its approximation is backward only), x.ge(t)
    with a buffer t ({0, 1} and 2 * ge - 1), a hardtanh STE, heaviside(x, 0); values exactly at
    the threshold map as the float module maps them (torch.sign's 0 at x == 0 is the documented
    exception: not tested)."""
    make, cls, ties = _ACTS[name]
    model = P.ActConv(make()).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["conv"])
    assert type(cm.conv) is cls, str(rep)
    if ties:
        t = model.act.t.flatten() if isinstance(model.act, P.ThresholdBuffer) else torch.zeros(6)
        with torch.no_grad():
            xt = _with_ties((3, 6, 5, 5), t, 6)
            torch.testing.assert_close(cm(xt), model(xt), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cin,cout,k,groups", [(6, 6, 3, 6), (8, 12, 1, 4), (12, 12, 3, 12)])
def test_depthwise_and_grouped_binary_convs(cin, cout, k, groups):
    model = P.ActConv(P.FnAct(torch.sign), cin, cout, k=k, groups=groups).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, cin, 6, 5), (3, cin, 6, 5), ["conv"])
    assert type(cm.conv) is BinaryConv2d and cm.conv.groups == groups and rep.fused == {"act": "conv"}


@pytest.mark.parametrize("how", ["max", "avg", "shuffle"])
def test_binarizer_after_pooling_or_channel_shuffle(how):
    """MeliusNet / BinaryDenseNet pool the shortcut, ShuffleNet-style blocks shuffle channels:
    with the pool (shuffle) outside the binary modules the conv packs and the sign folds; a sign
    module that shuffles before its sign is not folded; inside the conv module the layer stays
    float (the packed module reads the module's input)."""
    x = _x(3, 8, 6, 6)
    model = P.PoolThenBinary(how).eval()
    cm, rep = _check_on_fresh_inputs(model, x, (3, 8, 6, 6), ["conv"])
    assert type(cm.conv) is BinaryConv2d and rep.fused == {"act": "conv"}
    shuffled = P.ActConv(P.FnAct(lambda z: torch.sign(P.channel_shuffle(z, 2))), 8, 6).eval()
    cs, rep = _check_on_fresh_inputs(shuffled, x, (3, 8, 6, 6), ["conv"])
    assert rep.fused == {} and type(cs.act) is P.FnAct
    inside = nn.Sequential(P.PoolSignConv(how)).eval()
    rep = _stays_float(inside, x, "0", "not an elementwise function", P.PoolSignConv)
    assert "_pool2d" in rep.skipped["0"] or how == "shuffle"


def test_binary_densenet_and_meliusnet_blocks():
    """Dense concat of a binary conv's output, an improvement block adding it to a channel slice."""
    model = _random_bn(P.MeliusTiny())
    names = ["dense.conv", "improve.conv"]
    cm, rep = _check_on_fresh_inputs(model, _x(3, 3, 6, 6), (3, 3, 6, 6), names)
    assert all(type(cm.get_submodule(n)) is BinaryConv2d for n in names)
    assert cm.dense.conv.ternary and not cm.improve.conv.ternary  # sign(0) = 0 weights vs (w >= 0)


def test_data_parallel_wrapped_model(tmp_path):
    """nn.DataParallel (CPU: a plain call of .module): names carry the module. prefix, save / load
    into the wrapped architecture restores it."""
    model = nn.DataParallel(_random_bn(P.MeliusTiny()))
    x = _x(3, 3, 6, 6)
    cm, rep = _check_on_fresh_inputs(model, x, (3, 3, 6, 6), ["module.dense.conv", "module.improve.conv"])
    assert type(cm) is nn.DataParallel
    bnn_kernels.save(cm, tmp_path / "m.safetensors")
    back = bnn_kernels.load(tmp_path / "m.safetensors", nn.DataParallel(P.MeliusTiny()))
    with torch.no_grad():
        assert torch.equal(back(x), cm(x))


def test_weight_sharing_and_a_reused_binarizer():
    """One binary conv called twice (its BN-free reuse is verified on both calls), one binarizer
    instance called three times (never folded: it has several invocations)."""
    model = _random_bn(P.SharedConvNet())
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["conv", "other"])
    assert type(cm.conv) is BinaryConv2d and type(cm.act) is P.FnAct and rep.fused == {}, str(rep)
    with torch.no_grad():  # sign(sign(x) + 0.1) maps 0 to +1, as the packed threshold does
        xt = _with_ties((3, 6, 5, 5), torch.zeros(6), 8)
        torch.testing.assert_close(cm(xt), model(xt), rtol=1e-5, atol=1e-5)


class _SequentialBNN(nn.Sequential):
    """nn.Sequential only, weights binarized offline and stored as +-alpha in plain nn.Conv2d /
    nn.Linear (as exported checkpoints of larq / BMXNet-converted models hold them)."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            P.FnAct(torch.sign),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            P.FnAct(lambda x: torch.where(x >= 0, 1.0, -1.0)),
            nn.Conv2d(8, 8, 3, padding=1, bias=False, groups=2),
            nn.BatchNorm2d(8),
            nn.Flatten(),
            nn.Linear(8 * 36, 5),
        )
        with torch.no_grad():
            for i in (3, 6, 9):
                w = self[i].weight
                w.copy_(torch.sign(w) * w.abs().flatten(1).mean(1).view(-1, *[1] * (w.dim() - 1)))


def test_sequential_only_model_with_stored_binary_weights():
    model = _random_bn(_SequentialBNN())
    cm, rep = _check_on_fresh_inputs(model, _x(4, 3, 6, 6), (4, 3, 6, 6), ["3", "6", "9"])
    assert type(cm[3]) is BinaryConv2d and type(cm[6]) is BinaryConv2d and type(cm[9]) is BinaryWeightLinear
    assert rep.fused == {"2": "3", "4": "3", "5": "6", "7": "6"}, str(rep)


def test_binary_connect_mlp():
    """BinaryConnect: sign(w) with real activations (BinaryWeightLinear), BatchNorm1d folded, an
    XNOR-style last layer with its scale applied after the call."""
    model = _random_bn(P.BinaryConnectMLP())
    names = ["features.0", "features.3", "binary"]
    cm, rep = _check_on_fresh_inputs(model, _x(4, 20), (4, 20), names)
    assert type(cm.features[0]) is BinaryWeightLinear and type(cm.binary) is BinaryLinear
    assert rep.fused == {"features.1": "features.0", "features.4": "features.3", "features.5": "binary"}, str(rep)


def test_dropout_before_the_sign():
    """nn.Dropout is the identity in eval mode (convert runs the model in eval): the layer packs,
    also when the model is handed over in training mode. F.dropout(x, p) without
    training=self.training stays random: left in float with that reason, strict raises."""
    x = _x(3, 6, 5, 5)
    model = nn.Sequential(P.DropoutSignConv(6, 5, 3, padding=1)).eval()
    cm, rep = _check_on_fresh_inputs(model, x, (3, 6, 5, 5), ["0"])
    assert type(cm[0]) is BinaryConv2d
    ct, rep = convert(model.train(), (x,))
    assert rep.converted == ["0"] and model.training and not ct.training
    with torch.no_grad():
        xf = _fresh((3, 6, 5, 5), 4)
        torch.testing.assert_close(ct(xf), model.eval()(xf), rtol=1e-5, atol=1e-5)
    always = nn.Sequential(P.DropoutSignConv(6, 5, 3, padding=1, always_on=True)).eval()
    _stays_float_random(always, x, "calls dropout")


def _stays_float_random(model, x, reason):
    """The random layer '0' stays float with reason (same random draws: same results), strict raises."""
    cm, rep = convert(model, (x,))
    assert rep.converted == [] and "random forward" in rep.skipped["0"] and reason in rep.skipped["0"], str(rep)
    with torch.no_grad():
        xf = _fresh(tuple(x.shape), 3)
        torch.manual_seed(5)
        got = cm(xf)
        torch.manual_seed(5)
        assert torch.equal(got, model(xf))
    with pytest.raises(ConversionError, match="0: random forward"):
        convert(model, (x,), strict=True)


@pytest.mark.parametrize("what", ["weight", "act"])
def test_stochastic_binarization_stays_float(what):
    """BinaryNet.pytorch's stochastic weight binarization, a stochastic input sign: random in eval
    too; reported as random (they used to read 'verification failed' / 'data-dependent')."""
    model = nn.Sequential(P.StochasticBinarizeConv(6, 5, 3, padding=1, bias=False, what=what)).eval()
    _stays_float_random(model, _x(3, 6, 5, 5), "rand")


def test_xnor_plus_plus_scale_inside_the_conv_module_stays_float():
    """The same Gamma multiplied inside the conv module: the packed epilogue is per channel, so the
    layer stays float, with a reason that says so (it used to read 'verification failed')."""
    model = nn.Sequential(P.XNORPPConv2d(6, 5, (5, 5))).eval()
    rep = _stays_float(model, _x(3, 6, 5, 5), "0", "not a per-channel scale / bias", P.XNORPPConv2d)
    assert "XNOR-Net++" in rep.skipped["0"]


@pytest.mark.parametrize("pruned", [0, 3])
def test_pruned_output_channel_packs_as_ternary_zeros(pruned):
    """A channel of zero weights (pruned, or clamp(round(w)) of small weights) has no +-alpha: it
    is packed as ternary zeros (exact; its output is the bias), also with a scale after the call,
    where its output is constant (it used to be refused: 'integer part differs' / 'constant')."""
    model = nn.Sequential(P.PrunedTernaryConv(6, 5, pruned)).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["0"])
    assert type(cm[0]) is BinaryConv2d and cm[0].ternary, str(rep)
    plain = nn.Sequential(P.WeightIdiomConv(6, 5, "xnor")).eval()
    with torch.no_grad():
        plain[0].weight[pruned] = 0.0  # torch.sign(0) * mean |0| = 0
    cp, rep = _check_on_fresh_inputs(plain, _x(3, 6, 5, 5), (3, 6, 5, 5), ["0"])
    assert cp[0].ternary and float(cp[0].multiplier[pruned]) == 0.0


def test_binary_connect_mlp_batch_one():
    """A single example: each output of a linear layer is one value, so a scale after the call
    cannot be fitted on the examples alone; it is fitted on inputs derived from them too, and
    checked on fresh batches (it used to leave the layer in float, 'constant on the examples')."""
    model = _random_bn(P.BinaryConnectMLP())
    names = ["features.0", "features.3", "binary"]
    cm, rep = _check_on_fresh_inputs(model, _x(1, 20), (4, 20), names)
    assert type(cm.binary) is BinaryLinear and rep.skipped == {}, str(rep)
    with torch.no_grad():
        x1 = _fresh((1, 20), 21)
        torch.testing.assert_close(cm(x1), model(x1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("v", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_a_third_value_at_the_threshold_stays_float(v):
    """heaviside(x, v) inside the conv module gives v at x == 0: for v = 0 or 1 one side (exact at
    the tie), for v = 0.5 their midpoint (torch.sign's 0 for +-1: the documented tie, packed as
    one side), any other v a value the packed layer cannot produce: float (it used to convert,
    off at every exact 0 of the input)."""
    model = nn.Sequential(P.HeavisideConv(6, 5, 3, padding=1, bias=False, v=v)).eval()
    if v in (0.25, 0.75):
        _stays_float(model, _x(3, 6, 5, 5), "0", "neither of its two values", P.HeavisideConv)
        return
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["0"])
    assert type(cm[0]) is BitSerialConv2d
    if v != 0.5:
        with torch.no_grad():
            xt = _with_ties((3, 6, 5, 5), torch.zeros(6), 9)
            torch.testing.assert_close(cm(xt), model(xt), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [23, 35, 36])
def test_small_learned_threshold_not_taken_for_zero(seed):
    """x >= t with small learned thresholds and one small example: no example falls between 0 and
    t, so threshold 0 fits the examples too. The module is probed across the interval the
    examples leave open, which tells them apart (these seeds used to convert with threshold 0,
    wrong for every input between 0 and t); a threshold written as a number in the code stays
    float (it is no candidate), and so does nothing wrong."""
    torch.manual_seed(seed)
    model = nn.Sequential(P.LearnedThresholdConv(6, 5, 3, padding=1, bias=False)).eval()
    x = _x(1, 6, 4, 4, seed=seed)
    cm, rep = convert(model, (x,))
    assert rep.converted == ["0"] and "sign(x - t)" in rep.layers["0"]["kind"], str(rep)
    t = model[0].t.detach()
    with torch.no_grad():
        for xt in (_with_ties((3, 6, 4, 4), t / 2, 1, 0.5), _with_ties((3, 6, 4, 4), t, 2, 0.5)):
            torch.testing.assert_close(cm(xt), model(xt), rtol=1e-5, atol=1e-5)
    const = nn.Sequential(P.LearnedThresholdConv(6, 5, 3, padding=1, bias=False, constant=0.011)).eval()
    _stays_float(const, x, "0", "threshold not identified", P.LearnedThresholdConv)


@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_batch_one_input_binarized_upstream(layer):
    """A binary layer reading the output of a separate binarizer, converted from ONE example: the
    layer cannot tell whether its upstream scale is fixed (sign) or computed per sample (XNOR's
    sign(x) * mean |x|): either stays float, the report says why; from several examples the fixed
    one packs, the per-sample one is a real input (binary-weight)."""
    cls, shape = (P.SignWeightConv, (1, 6, 5, 5)) if layer == "conv" else (P.BinaryConnectLinear, (1, 20))
    make = (lambda: P.SignWeightConv(6, 5, 3, padding=1, bias=False)) if layer == "conv" else (lambda: cls(20, 7))
    for act in (P.FnAct(torch.sign), P.XNORInputScale()):
        model = nn.Sequential(act, make()).eval()
        rep = _stays_float(model, _x(*shape), "1", "with another scale", cls)
        assert "several examples" in rep.skipped["1"]
        cm, rep = _check_on_fresh_inputs(model, _x(2, *shape[1:]), (3, *shape[1:]), ["1"])
        want = (BinaryConv2d, BinaryLinear) if isinstance(act, P.FnAct) else (BinaryWeightConv2d, BinaryWeightLinear)
        assert type(cm[1]) in want, str(rep)


@pytest.mark.parametrize("act", [P.BatchScaledSign, P.MaxScaledQuant])
def test_input_scale_computed_from_the_batch_upstream(act, monkeypatch):
    """sign(x) * mean |x| over the whole batch (or a 2-bit grid scaled by the batch's max), in a
    module of its own: the conv after it reads +-a on the examples, and its own derived inputs
    cannot show that a changes with the batch. The model itself is run on derived inputs and
    every packed layer is checked on what its caller feeds it: float, strict raises (it used to
    convert, wrong on every other batch)."""
    model = P.ActConv(act()).eval()
    x = _x(4, 6, 5, 5)
    rep = _stays_float(model, x, "conv", "verification in the model on derived inputs", P.SignWeightConv)
    assert "upstream" in rep.skipped["conv"]
    conv_mod = importlib.import_module("bnn_kernels.convert._convert")
    monkeypatch.setattr(conv_mod, "verify_in_model", lambda *a: {})  # the check off: a wrong conversion
    cm, rep = convert(model, (x,))
    assert rep.converted == ["conv"]
    with torch.no_grad():
        xf = _fresh((4, 6, 5, 5), 3) * 3
        assert not torch.allclose(cm(xf), model(xf), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("how,groups", [("round", 6), ("round", 3), ("ge01", 2), ("xnor", 6)])
def test_ternary_depthwise_and_grouped(how, groups):
    """Ternary / {0, 1} weights (two binary products per output) in depthwise and grouped convs."""
    model = nn.Sequential(P.WeightIdiomConv(6, 6, how, groups=groups)).eval()
    cm, rep = _check_on_fresh_inputs(model, _x(3, 6, 5, 5), (3, 6, 5, 5), ["0"])
    assert type(cm[0]) is BinaryConv2d and cm[0].ternary and cm[0].groups == groups, str(rep)
