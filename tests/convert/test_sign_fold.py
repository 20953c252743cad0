"""convert() folds a binarizer (RSign) into the thresholds of the packed binary layers reading
its output: one reader, or several (ReActNet-A's doubled blocks feed one RSign to two 1x1
convs), all or nothing. Checked on fresh inputs that were not the conversion examples."""

import pytest
import torch
from torch import nn

from bnn_kernels import ConversionError, convert
from bnn_kernels import models as M
from bnn_kernels.models.families import BinaryConv2dSTE, RSign, ShiftSignConv2d
from bnn_kernels.models.full_size import _ReActABlock
from bnn_kernels.nn import BinaryConv2d, Folded


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Doubled(nn.Module):
    """One RSign read by two 1x1 convs (the second a binary conv, a float conv or a conv that
    binarizes with its own shift), optionally also by a float op (the concatenation)."""

    def __init__(self, c=12, second="binary", sign_in_output=False):
        super().__init__()
        self.sign = RSign(c)
        self.pw1 = BinaryConv2dSTE(c, c, 1, bias=False)
        self.pw2 = {
            "binary": lambda: BinaryConv2dSTE(c, c, 1, bias=False),
            "float": lambda: nn.Conv2d(c, c, 1, bias=False),
            "shift": lambda: ShiftSignConv2d(c, c, 1, bias=False),
        }[second]()
        self.sign_in_output = sign_in_output

    def forward(self, x):
        xb = self.sign(x)
        outs = [self.pw1(xb), self.pw2(xb)] + ([xb] if self.sign_in_output else [])
        return torch.cat(outs, 1)


def _convert(model, x, **kw):
    model = M.randomize_bn(model, seed=3).eval()
    cm, rep = convert(model, (x,), **kw)
    return model, cm, rep


def _same_on_fresh(model, cm, shape, seeds=(11, 12)):
    with torch.no_grad():
        for s in seeds:
            x = _x(*shape, seed=s)
            torch.testing.assert_close(cm(x), model(x), rtol=1e-5, atol=1e-5)


def test_rsign_read_by_two_binary_convs_folds_into_both():
    x = _x(4, 12, 5, 7)
    model, cm, rep = _convert(Doubled(), x)
    assert sorted(rep.converted) == ["pw1", "pw2"]
    assert rep.fused == {"sign": "pw1, pw2"}, str(rep)
    assert "sign folded into pw1, pw2" in str(rep)
    assert isinstance(cm.sign, Folded) and cm.sign.into == "pw1, pw2"
    t = -model.sign.bias.detach().flatten()  # x + b >= 0 <=> x >= -b, exactly in float32
    assert torch.equal(cm.pw1.threshold, t) and torch.equal(cm.pw2.threshold, t)
    _same_on_fresh(model, cm, (3, 12, 6, 5))
    # values exactly at the threshold, infinities and NaN: as the float model (sign_ste maps
    # NaN to -1, as the packed comparison does), as a single-reader fold computes them
    xt = _x(2, 12, 4, 4, seed=5)
    tb = t.view(1, -1, 1, 1).expand_as(xt)
    special = torch.tensor([float("inf"), -float("inf"), float("nan")])
    mask = torch.rand(xt.shape, generator=torch.Generator().manual_seed(6))
    xt = torch.where(mask < 0.3, tb, xt)
    xt = torch.where((mask > 0.9), special[(mask * 100).long() % 3], xt)
    with torch.no_grad():
        torch.testing.assert_close(cm(xt), model(xt), rtol=1e-5, atol=1e-5)
        single = nn.Sequential(model.sign, model.pw1).eval()
        cs, rs = convert(single, (x,))
        assert rs.fused == {"0": "1"}
        assert torch.equal(cs(xt), cm(xt)[:, :12])


def test_strict_and_unfused_unaffected():
    x = _x(4, 12, 5, 7)
    model, cm, rep = _convert(Doubled(), x, strict=True)
    assert rep.fused == {"sign": "pw1, pw2"}
    _same_on_fresh(model, cm, (2, 12, 5, 5))
    model, cm, rep = _convert(Doubled(), x, fuse=False)
    assert rep.fused == {} and isinstance(cm.sign, RSign)
    assert not cm.pw1.threshold.any() and not cm.pw2.threshold.any()
    _same_on_fresh(model, cm, (2, 12, 5, 5))


@pytest.mark.parametrize(
    "kw, converted",
    [
        ({"second": "float"}, ["pw1"]),  # a reader left in float
        ({"sign_in_output": True}, ["pw1", "pw2"]),  # the sign's output also read by a float op
        ({"second": "shift"}, ["pw1", "pw2"]),  # a binary reader with its own threshold (its shift)
    ],
)
def test_nothing_folded_unless_every_reader_takes_the_threshold(kw, converted):
    x = _x(4, 12, 5, 7)
    if kw.get("second") == "float":  # strict: a binary layer left in float is an error, as before
        with pytest.raises(ConversionError, match="pw2: "):
            _convert(Doubled(**kw), x, strict=True)
    for strict in (False, True) if "second" not in kw else (False,):
        model, cm, rep = _convert(Doubled(**kw), x, strict=strict)
        assert sorted(rep.converted) == converted, str(rep)
        assert "sign" not in rep.fused and type(cm.sign) is RSign, str(rep)
        assert isinstance(cm.pw1, BinaryConv2d) and not cm.pw1.threshold.any()
        _same_on_fresh(model, cm, (2, 12, 5, 5))


class ReActStage(nn.Module):
    """A float stem, then ReActNet-A blocks: doubling with stride 2, doubling with stride 1,
    and one that does not double."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.blocks = nn.Sequential(
            _ReActABlock(c, 2 * c, 2), _ReActABlock(2 * c, 4 * c, 1), _ReActABlock(4 * c, 4 * c, 1)
        )

    def forward(self, x):
        return self.blocks(self.stem(x))


def test_reactnet_doubled_blocks_fold_their_rsign():
    model, cm, rep = _convert(ReActStage(), _x(3, 3, 8, 8))
    assert len(rep.converted) == 8 and not rep.skipped.keys() - {"stem.0"}, str(rep)
    for i in range(3):
        assert rep.fused[f"blocks.{i}.sign1"] == f"blocks.{i}.conv3x3"
        assert isinstance(cm.blocks[i].sign2, Folded)
    assert rep.fused["blocks.0.sign2"] == "blocks.0.pw1, blocks.0.pw2"
    assert rep.fused["blocks.1.sign2"] == "blocks.1.pw1, blocks.1.pw2"
    assert rep.fused["blocks.2.sign2"] == "blocks.2.pw1"
    _same_on_fresh(model, cm, (2, 3, 8, 8))


def test_reactnet_a_small_folds_every_rsign():
    model = M.reactnet_a(num_classes=10, width_mult=0.25)
    doubled = [i for i, b in enumerate(model.features) if b.double]
    assert len(doubled) == 5
    model, cm, rep = _convert(model, _x(2, 3, 32, 32))
    signs = [n for n, m in model.named_modules() if isinstance(m, RSign)]
    assert sorted(n for n in rep.fused if n in signs) == sorted(signs), str(rep)
    for i in doubled:
        assert rep.fused[f"features.{i}.sign2"] == f"features.{i}.pw1, features.{i}.pw2"
    assert not any(isinstance(m, RSign) for m in cm.modules())
    with torch.no_grad():
        for s in (21, 22):
            x = _x(3, 3, 32, 32, seed=s)
            torch.testing.assert_close(cm(x), model(x), rtol=1e-4, atol=1e-4)


def test_one_reader_refusing_the_threshold_folds_none(monkeypatch):
    from bnn_kernels.convert import _fuse

    real = _fuse._sign_threshold
    seen = []

    def refuse_pw2(inv, new, dinv):
        seen.append(dinv.name)
        return None if dinv.name == "pw2" else real(inv, new, dinv)

    monkeypatch.setattr(_fuse, "_sign_threshold", refuse_pw2)
    model, cm, rep = _convert(Doubled(), _x(4, 12, 5, 7))
    assert "pw2" in seen and sorted(rep.converted) == ["pw1", "pw2"]
    assert rep.fused == {} and type(cm.sign) is RSign
    assert not cm.pw1.threshold.any() and not cm.pw2.threshold.any()
    _same_on_fresh(model, cm, (2, 12, 5, 5))


def test_small_rsign_bias_no_example_separates_from_zero_still_folds():
    """An RSign whose learned bias is so small that threshold 0 also fits every example: the
    fold tries each candidate in turn and keeps the one the module computes between the
    examples (-bias), so the sign still folds, exactly, into both readers."""
    x = _x(4, 12, 3, 3)
    model = M.randomize_bn(Doubled(), seed=3).eval()
    with torch.no_grad():
        model.sign.bias.copy_(1e-6 * torch.linspace(-1, 1, 12).view(model.sign.bias.shape))
    assert not bool(((x > 0) != (x + model.sign.bias >= 0)).any())  # threshold 0 fits the examples too
    cm, rep = convert(model, (x,))
    assert rep.fused == {"sign": "pw1, pw2"}, str(rep)
    t = -model.sign.bias.detach().flatten()
    assert torch.equal(cm.pw1.threshold, t) and torch.equal(cm.pw2.threshold, t)
    _same_on_fresh(model, cm, (3, 12, 6, 5))
    # inputs between 0 and the threshold, where threshold 0 would be wrong
    xt = t.view(1, -1, 1, 1) * torch.rand(2, 12, 4, 4, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        torch.testing.assert_close(cm(xt), model(xt), rtol=1e-5, atol=1e-5)
