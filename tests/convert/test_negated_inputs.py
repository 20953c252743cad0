"""convert() of layers whose binarizer maps low inputs high in some input channels (a decreasing
binarizer): sign(x * s) with a learned scale that went negative in training (per layer, or per
channel with mixed signs), sign(-x), -sign(x), ``x < t`` / ``x <= t`` giving +1, a BatchNorm with
negative gammas before the sign (XNOR-Net's BinConv2d as one module). Such a channel's +-1 value is
the negated value of the canonical ``x > t`` bit, so the layer packs with the weights reading that
channel negated and a strict threshold; a sign module of its own folds into its readers so. Checked
on fresh inputs never used for the conversion: other batches and spatial sizes, x * s + t, and
inputs exactly at each threshold and one ulp off it. Decreasing {0, 1} and offset-binary inputs
(whose complement is 1 - bit, not a negated value) and float64 ones stay float with the reason."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_kernels import ConversionError, convert
from bnn_kernels.nn import BinaryConv2d, BinaryLinear

from .test_public_models import _fresh, _random_bn, _x
from .test_public_models2 import _stays_float


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _xnor_weight(w):
    """XNOR-Net's weights: sign(W) times the mean |W| of each output channel."""
    return torch.sign(w) * w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


class ScaledSignConv(nn.Conv2d):
    """A learned per-channel (or per-layer) gain before the sign; training may leave it negative."""

    def __init__(self, cin, cout, gains, **kw):
        super().__init__(cin, cout, 3, padding=1, bias=False, **kw)
        g = torch.tensor(gains, dtype=torch.float32)
        self.gain = nn.Parameter(g.view(1, -1, 1, 1) if g.dim() else g)

    def forward(self, x):
        return self._conv_forward(torch.sign(x * self.gain), _xnor_weight(self.weight), None)


class NegSignConv(nn.Conv2d):
    """sign(-x), or -sign(x) (form="minus")."""

    def __init__(self, *a, form="neg", **kw):
        super().__init__(*a, **kw)
        self.form = form

    def forward(self, x):
        z = -torch.sign(x) if self.form == "minus" else torch.sign(-x)
        return self._conv_forward(z, torch.sign(self.weight), self.bias)


class BelowThresholdConv(nn.Conv2d):
    """+1 where x < t (or x <= t), -1 elsewhere, with a learned per-channel threshold t."""

    def __init__(self, cin, cout, strict=True):
        super().__init__(cin, cout, 3, padding=1, bias=True)
        self.t = nn.Parameter(torch.randn(cin) * 0.3)
        self.strict = strict

    def forward(self, x):
        t = self.t.view(1, -1, 1, 1)
        low = x < t if self.strict else x <= t
        return self._conv_forward(torch.where(low, 1.0, -1.0), torch.sign(self.weight), self.bias)


class ScaledSignLinear(nn.Linear):
    """BinaryLinear with a learned per-feature gain of mixed signs before the sign."""

    def __init__(self, cin, cout):
        super().__init__(cin, cout)
        self.gain = nn.Parameter(torch.randn(cin))

    def forward(self, x):
        return F.linear(torch.sign(x * self.gain), _xnor_weight(self.weight), self.bias)


class Block(nn.Module):
    """conv -> BatchNorm -> residual, as binary ResNets write it."""

    def __init__(self, conv, c):
        super().__init__()
        self.conv, self.bn = conv, nn.BatchNorm2d(conv.out_channels)
        self.res = conv.out_channels == c and conv.stride == (1, 1)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y + x if self.res else y


def _at_thresholds(x, t, ch, exact=True):
    """x with a third of its values exactly at the per-channel threshold t (exact) and a third one
    ulp either side of it."""
    tb = t.view([-1 if d == ch % x.dim() else 1 for d in range(x.dim())]).expand_as(x)
    r = torch.rand(x.shape, generator=torch.Generator().manual_seed(3))
    up, down = torch.nextafter(tb, tb + 1), torch.nextafter(tb, tb - 1)
    return torch.where(r < 0.33, tb if exact else x, torch.where(r < 0.5, up, torch.where(r < 0.67, down, x)))


def _check_layer(model, name, x, shapes, t=None, ties=None):
    """Convert from x; the packed layer `name` against its module on fresh inputs of each shape
    (per channel within a tenth of one integer step: the integer part is exact) and, with t, on
    inputs one ulp either side of the thresholds, and exactly at them: ties="module" compares
    with the module there (x < t, x <= t give +-1 at t), ties="below" with the module just below
    t (torch.sign's 0 at t, in a layer decreasing in every channel, is packed as its high side,
    the module's value just below t)."""
    cm, rep = convert(model, (x,), fuse=False)
    assert name in rep.converted, str(rep)
    new, mod = cm.get_submodule(name), model.get_submodule(name)
    ch = 1 if x.dim() == 4 else -1
    inputs = [_fresh(s, 20 + i) for i, s in enumerate(shapes)]
    if t is not None:
        inputs += [_at_thresholds(xf, t, ch, ties is not None) for xf in inputs]
    for xf in inputs:
        with torch.no_grad():
            got, want = new(xf), mod(xf)
            if ties == "below":
                tb = t.view([-1 if d == ch % xf.dim() else 1 for d in range(xf.dim())])
                want = mod(torch.where(xf == tb, torch.nextafter(tb, tb - 1), xf))
        err = (got.double() - want.double()).abs().movedim(ch, -1).reshape(-1, want.shape[ch]).amax(0)
        bound = 0.1 * new.multiplier.double().abs() + 1e-5 * float(want.abs().max())
        assert bool((err <= bound).all()), (name, tuple(xf.shape), float((err / bound).max()))
    return cm, rep


GAINS = [0.5, -0.5, 1.5, -2.0, 3.0, -0.25]


@pytest.mark.parametrize(
    "gains,kw",
    [(GAINS, {}), (-0.7, {}), (0.7, {}), (GAINS, dict(groups=2)), ([-1.0, 1.0] * 3, dict(groups=6))],
    ids=["per-channel", "negative", "positive", "groups2", "depthwise"],
)
def test_learned_gain_of_either_sign(gains, kw):
    out = 6 if kw.get("groups") == 6 else 4
    model = nn.Sequential(Block(ScaledSignConv(6, out, gains, **kw), 6))
    _random_bn(model)
    cm, rep = _check_layer(model, "0.conv", _x(4, 6, 7, 7), [(3, 6, 7, 7), (2, 6, 5, 9)])
    assert type(cm[0].conv) is BinaryConv2d
    n_neg = sum(g < 0 for g in gains) if isinstance(gains, list) else (6 if gains < 0 else 0)
    assert ("decreasing" in rep.layers["0.conv"]["kind"]) == (n_neg > 0), rep.layers["0.conv"]
    with torch.no_grad():  # the fused model too
        fused, _ = convert(model, (_x(4, 6, 7, 7),))
        xf = _fresh((2, 6, 6, 8), 5)
        torch.testing.assert_close(fused(xf), model(xf), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("form", ["neg", "minus"])
def test_sign_of_minus_x(form):
    model = nn.Sequential(NegSignConv(5, 7, 3, padding=2, dilation=2, stride=(1, 2), form=form)).eval()
    cm, rep = _check_layer(model, "0", _x(3, 5, 8, 9), [(2, 5, 8, 9), (1, 5, 11, 6)], torch.zeros(5), "below")
    assert type(cm[0]) is BinaryConv2d and "decreasing in 5 of 5" in rep.layers["0"]["kind"]


@pytest.mark.parametrize("strict", [True, False], ids=["x<t", "x<=t"])
def test_below_learned_threshold(strict):
    """Exactly at t and one ulp off: x < t and x <= t differ there only, so a threshold not made
    strict (or made strict the wrong way) fails."""
    model = nn.Sequential(BelowThresholdConv(6, 5, strict)).eval()
    t = model[0].t.detach().clone()
    cm, _ = _check_layer(model, "0", _x(4, 6, 6, 6), [(3, 6, 6, 6), (2, 6, 9, 4)], t, "module")
    assert type(cm[0]) is BinaryConv2d


def test_binary_linear_mixed_gains():
    model = nn.Sequential(ScaledSignLinear(37, 9)).eval()
    cm, rep = _check_layer(model, "0", _x(16, 37), [(5, 37), (1, 37)])
    assert type(cm[0]) is BinaryLinear and "decreasing" in rep.layers["0"]["kind"]


def test_strict_true_converts_them():
    model = nn.Sequential(NegSignConv(4, 4, 3, padding=1), NegSignConv(4, 4, 1)).eval()
    cm, rep = convert(model, (_x(2, 4, 6, 6),), strict=True)
    assert sorted(rep.converted) == ["0", "1"]


class BNSignConv(nn.Conv2d):
    """XNOR-Net's BinConv2d as one conv module: BatchNorm (some gammas negative after training), then
    the sign (or, form="ge", +1 where bn(x) >= 0: no midpoint at the tie; form="reflect": the BatchNorm
    of F.pad(x, mode="reflect"), the conv without padding), then the conv."""

    def __init__(self, cin, cout, form="sign", **kw):
        super().__init__(cin, cout, 3, padding=0 if form == "reflect" else 1, **kw)
        self.bn = nn.BatchNorm2d(cin, eps=1e-4)
        self.form = form
        g = torch.Generator().manual_seed(cin)
        with torch.no_grad():
            self.bn.running_mean.normal_(0, 0.5, generator=g)
            self.bn.running_var.uniform_(0.3, 2.0, generator=g)
            self.bn.weight.uniform_(0.3, 1.5, generator=g).mul_(torch.tensor([1.0, -1.0]).repeat(cin)[:cin])
            self.bn.bias.normal_(0, 0.4, generator=g)

    def forward(self, x):
        h = self.bn(F.pad(x, (1, 1, 1, 1), mode="reflect") if self.form == "reflect" else x)
        z = torch.where(h >= 0, 1.0, -1.0) if self.form == "ge" else torch.sign(h)
        return self._conv_forward(z, _xnor_weight(self.weight), self.bias)


@pytest.mark.parametrize("form", ["sign", "ge", "reflect"])
def test_batchnorm_with_negative_gammas_before_the_sign(form):
    """The threshold is the BatchNorm's zero crossing, found where the module flips in float32 (many
    ulps from the float64 formula where mean and bias nearly cancel); checked exactly at each packed
    threshold and one ulp either side (form "ge": no midpoint there)."""
    model = nn.Sequential(BNSignConv(7, 5, form)).eval()
    x = _x(4, 7, 6, 6)
    cm, rep = convert(model, (x,), fuse=False)
    assert type(cm[0]) is BinaryConv2d and "decreasing in 3 of 7" in rep.layers["0"]["kind"], str(rep)
    assert cm[0].padding_mode == ("reflect" if form == "reflect" else "zeros")
    t = cm[0].threshold.clone()
    _check_layer(model, "0", x, [(3, 7, 6, 6), (2, 7, 4, 9)], t if form == "ge" else None, "module")


class BNSignLinear(nn.Linear):
    """A binary linear layer with BatchNorm1d (gammas of both signs) then sign on its input."""

    def __init__(self, cin, cout):
        super().__init__(cin, cout)
        self.bn = nn.BatchNorm1d(cin)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            self.bn.running_mean.normal_(0, 0.5, generator=g)
            self.bn.running_var.uniform_(0.3, 2.0, generator=g)
            self.bn.weight.normal_(0, 1, generator=g)
            self.bn.bias.normal_(0, 0.4, generator=g)

    def forward(self, x):
        return F.linear(torch.sign(self.bn(x)), torch.sign(self.weight), self.bias)


def test_binary_linear_batchnorm_with_negative_gammas():
    model = nn.Sequential(BNSignLinear(20, 7)).eval()
    cm, rep = _check_layer(model, "0", _x(32, 20), [(9, 20), (1, 20)])
    assert type(cm[0]) is BinaryLinear and "decreasing" in rep.layers["0"]["kind"], str(rep)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_decreasing(dtype):
    """The strict threshold is taken in the input's dtype (one float16 / bfloat16 ulp above t)."""
    model = nn.Sequential(ScaledSignConv(4, 4, [1.0, -1.0, 2.0, -2.0])).to(dtype).eval()
    cm, rep = convert(model, (_x(3, 4, 6, 6).to(dtype),))
    assert rep.converted == ["0"] and "decreasing in 2 of 4" in rep.layers["0"]["kind"], str(rep)
    xf = _fresh((2, 4, 7, 5), 8).to(dtype)
    xf.view(-1)[::3] = torch.nextafter(torch.zeros((), dtype=dtype), torch.ones((), dtype=dtype))
    with torch.no_grad():
        torch.testing.assert_close(cm(xf).float(), model(xf).float(), rtol=1e-2, atol=1e-2)


class StepBelow(nn.Conv2d):
    """A {0, 1} input that is 1 below the threshold: 1 - bit is no negated value."""

    def forward(self, x):
        return self._conv_forward((x < 0).float(), torch.sign(self.weight), None)


def test_decreasing_step_input_stays_float():
    model = nn.Sequential(StepBelow(4, 4, 3, padding=1)).eval()
    rep = _stays_float(model, _x(2, 4, 6, 6), "0", "maps low inputs high", StepBelow)
    assert "complemented bit is not a negated value" in rep.skipped["0"]


class OffsetBelow(nn.Conv2d):
    """AdaBin-style activations beta +- alpha, the high one below 0."""

    def forward(self, x):
        return self._conv_forward(0.3 + 0.7 * torch.sign(-x), torch.sign(self.weight), None)


def test_decreasing_offset_binary_input_stays_float():
    model = nn.Sequential(OffsetBelow(4, 4, 3, padding=1)).eval()
    _stays_float(model, _x(2, 4, 6, 6), "0", "maps low inputs high", OffsetBelow)


def test_float64_decreasing_stays_float():
    """x <= t needs a threshold strictly above t in the input's dtype: not a float32 for float64."""
    model = nn.Sequential(NegSignConv(4, 4, 3, padding=1)).double().eval()
    cm, rep = convert(model, (_x(2, 4, 6, 6).double(),))
    assert "float32 threshold for torch.float64" in rep.skipped["0"], str(rep)
    with pytest.raises(ConversionError, match="0: "):
        convert(model, (_x(2, 4, 6, 6).double(),), strict=True)


class UpstreamSign(nn.Module):
    """sign(x), times mean |x| over the batch when batch_scaled (XNOR-style, computed from the batch)."""

    def __init__(self, batch_scaled):
        super().__init__()
        self.batch_scaled = batch_scaled

    def forward(self, x):
        return torch.sign(x) * (x.abs().mean() if self.batch_scaled else 1.0)


class NegatesItsInput(nn.Conv2d):
    """A conv module that negates its input, binarized upstream by another module."""

    def forward(self, z):
        return self._conv_forward(-z, torch.sign(self.weight), None)


@pytest.mark.parametrize("batch_scaled", [False, True])
def test_negated_input_binarized_upstream(batch_scaled):
    """-z of a +-a input binarized upstream packs (decreasing, its threshold 0) and, like a layer
    passing its input on, is checked on the inputs its caller computes: a scale computed from the
    batch upstream leaves it float."""
    model = nn.Sequential(UpstreamSign(batch_scaled), NegatesItsInput(4, 5, 3, padding=1)).eval()
    x = _x(4, 4, 6, 6)
    if batch_scaled:
        _stays_float(model, x, "1", "verification in the model on derived inputs", NegatesItsInput)
        return
    cm, rep = convert(model, (x,))
    assert rep.converted == ["1"] and "decreasing" in rep.layers["1"]["kind"], str(rep)
    xf = _fresh((3, 4, 5, 7), 4)
    with torch.no_grad():
        torch.testing.assert_close(cm(xf), model(xf), rtol=1e-5, atol=1e-5)


class ScaledRSign(nn.Module):
    """A sign module of its own with a learned per-channel scale of mixed signs (sign(x * s))."""

    def __init__(self, c):
        super().__init__()
        self.s = nn.Parameter(
            torch.tensor([1.0, -1.0]).repeat(c)[:c].view(1, c, 1, 1) * (torch.rand(c) + 0.5).view(1, c, 1, 1)
        )

    def forward(self, x):
        return torch.sign(x * self.s)


class PlainConv(nn.Conv2d):
    """A binary conv on an input binarized upstream."""

    def forward(self, z):
        return self._conv_forward(z, torch.sign(self.weight), None)


class SharedSign(nn.Module):
    """One sign module with decreasing channels read by two binary convs (the second grouped, or
    one that negates its input and so takes no threshold: then nothing is folded)."""

    def __init__(self, c=8, second="grouped"):
        super().__init__()
        self.sign = ScaledRSign(c)
        self.a = PlainConv(c, c, 1)
        if second == "grouped":
            self.b = PlainConv(c, 6, 3, padding=1, groups=2)
        else:
            self.b = NegatesItsInput(c, 6, 3, padding=1)

    def forward(self, x):
        s = self.sign(x)
        return torch.cat([self.a(s), self.b(s)], 1)


@pytest.mark.parametrize("second", ["grouped", "negating"])
def test_decreasing_sign_module_folds_into_its_readers(second):
    """Folded as each reader's strict thresholds with the weights reading its decreasing channels
    negated (all readers or none); the model is exact on fresh inputs either way."""
    model = SharedSign(second=second).eval()
    x = _x(3, 8, 5, 5)
    cm, rep = convert(model, (x,))
    assert sorted(rep.converted) == ["a", "b"], str(rep)
    if second == "grouped":
        assert rep.fused == {"sign": "a, b"}, str(rep)
        assert torch.equal(cm.a.threshold != 0, torch.tensor([False, True] * 4))  # the decreasing channels
    else:
        assert not rep.fused and type(cm.sign) is ScaledRSign, str(rep)
    for seed, shape in [(9, (2, 8, 6, 4)), (10, (1, 8, 9, 7))]:
        xf = _fresh(shape, seed)
        xf.view(-1)[::5] = torch.nextafter(torch.zeros(()), torch.ones(()))  # one ulp above the threshold 0
        with torch.no_grad():
            torch.testing.assert_close(cm(xf), model(xf), rtol=1e-5, atol=1e-5)


class BNSignConv1d(nn.Conv1d):
    """XNOR-Net's BinConv written for 1-D input: BatchNorm1d (gammas of either sign) then sign,
    then the binary conv1d, all in one module."""

    def __init__(self, c):
        super().__init__(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(c)
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            self.bn.weight.copy_(torch.randn(c, generator=g))
            self.bn.bias.copy_(torch.randn(c, generator=g) * 0.3)
            self.bn.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            self.bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)

    def forward(self, x):
        return F.conv1d(torch.sign(self.bn(x)), _xnor_weight(self.weight), None, 1, 1)


def test_decreasing_channels_through_a_conv1d():
    """The negated weight columns and strict thresholds on the 1-D route (a conv2d of height 1)."""
    from bnn_kernels.nn import BinaryConv1d

    c = 40
    model = nn.Sequential(nn.Conv1d(3, c, 3, padding=1), BNSignConv1d(c), nn.BatchNorm1d(c)).eval()
    assert bool((model[1].bn.weight < 0).any()) and bool((model[1].bn.weight > 0).any())
    cm, rep = convert(model, (torch.randn(4, 3, 24),))
    assert isinstance(cm[1], BinaryConv1d) and "decreasing" in rep.layers["1"]["kind"], str(rep)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for shape, s, t in [((2, 3, 24), 1.0, 0.0), ((5, 3, 37), 3.0, -1.0), ((1, 3, 9), 0.3, 0.5)]:
            x = torch.randn(shape, generator=g) * s + t
            want = model(x)
            torch.testing.assert_close(cm(x), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
            z = model[1].bn(model[0](x)) >= 0  # the canonical bits the packed layer must reproduce
            got_int = cm[1].int_forward(model[0](x))
            want_int = F.conv1d(z.float() * 2 - 1, torch.sign(model[1].weight), None, 1, 1)
            assert torch.equal(got_int.double(), want_int.double())
