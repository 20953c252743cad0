"""A third set of public BNN idioms, written the way those codebases write them, for
tests/convert/test_public_models3.py: XNOR-Net++'s learned output scale, weight binarizers
built from comparisons / heaviside / round, larq / FDA-BNN style activations, binarizers after
pooling and channel shuffle, depthwise and grouped binary convs, BinaryDenseNet / MeliusNet
blocks, dropout before the sign, weight sharing, a reused binarizer, small learned thresholds,
stochastic binarization, activation scales computed upstream (per sample, per batch) and a
BinaryConnect MLP.
Each class names the code it follows (written from memory of that code: the forward values are
what matters, the STE backward only where it changes the forward)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function


# --- XNOR-Net++ (Bulat & Tzimiropoulos 2019; 1adrianb/binary-networks-pytorch ports) ----------
class XNORPPScale(nn.Module):
    """Gamma = alpha (x) beta (x) gamma over (C, H, W) of the output: learned, static, not per channel."""

    def __init__(self, c, h, w):
        super().__init__()
        self.alpha = nn.Parameter(torch.rand(1, c, 1, 1) + 0.5)
        self.beta = nn.Parameter(torch.rand(1, 1, h, 1) + 0.5)
        self.gamma = nn.Parameter(torch.rand(1, 1, 1, w) + 0.5)

    def forward(self, x):
        return x * (self.alpha * self.beta * self.gamma)


class XNORPPConv2d(nn.Conv2d):
    """The scale inside the conv module, as the paper's "case 1" layer writes it."""

    def __init__(self, cin, cout, hw, **kw):
        super().__init__(cin, cout, 3, padding=1, bias=False, **kw)
        self.scale = XNORPPScale(cout, *hw)

    def forward(self, x):
        out = F.conv2d(torch.sign(x), torch.sign(self.weight), None, self.stride, self.padding)
        return self.scale(out)


class XNORPPBlock(nn.Module):
    """The scale as its own module after a plain binary conv module."""

    def __init__(self, cin, cout, hw):
        super().__init__()
        self.conv = SignWeightConv(cin, cout, 3, padding=1, bias=False)
        self.scale = XNORPPScale(cout, *hw)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.scale(self.conv(torch.sign(x))))


class SignWeightConv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, torch.sign(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)


# --- weight binarizers from comparisons / heaviside / round --------------------------------------
def binarize_weight(w: torch.Tensor, how: str) -> torch.Tensor:
    """The weight idioms of public code. 'ge' (w >= 0).float() * 2 - 1 and 'where_gt' torch.where(w
    > 0, 1., -1.) (0 maps to +1 / -1), 'ge01' w.ge(0).float() and 'heaviside' ({0, 1} weights),
    'round' clamp(round(w), -1, 1) (ternary, TWN-like), 'xnor' sign(w) * mean |w| per channel
    (WeightIdiomConv adds 'irnet': IR-Net's standardized weights with a power-of-two scale)."""
    if how == "ge":
        return (w >= 0).float() * 2 - 1
    if how == "where_gt":
        return torch.where(w > 0, 1.0, -1.0)
    if how == "ge01":
        return w.ge(0).float()
    if how == "heaviside":
        return torch.heaviside(w, torch.tensor(1.0))
    if how == "round":
        return torch.clamp(torch.round(w), -1, 1)
    if how == "xnor":
        return w.sign() * w.abs().mean(dim=(1, 2, 3), keepdim=True)
    raise ValueError(how)


class WeightIdiomConv(nn.Conv2d):
    def __init__(self, cin, cout, how, k=3, **kw):
        super().__init__(cin, cout, k, padding=k // 2, bias=False, **kw)
        self.how = how
        with torch.no_grad():  # a few exact zeros, where the idioms differ
            self.weight.view(-1)[:: max(1, self.weight.numel() // 5)] = 0.0
            if how == "round":  # TWN-like: a third of the weights round to 0
                self.weight.mul_(6.0)

    def forward(self, x):
        if self.how == "irnet":
            w = self.weight
            bw = w - w.view(w.size(0), -1).mean(-1).view(-1, 1, 1, 1)
            bw = bw / bw.view(bw.size(0), -1).std(-1).view(-1, 1, 1, 1)
            sw = torch.pow(
                torch.tensor([2.0] * bw.size(0)),
                (torch.log(bw.abs().view(bw.size(0), -1).mean(-1)) / math.log(2)).round(),
            ).view(-1, 1, 1, 1)
            bw = torch.where(bw >= 0, 1.0, -1.0) * sw
        else:
            bw = binarize_weight(self.weight, self.how)
        return F.conv2d(torch.where(x >= 0, 1.0, -1.0), bw, None, self.stride, self.padding, 1, self.groups)


class PrunedTernaryConv(WeightIdiomConv):
    """TWN-like clamp(round(w), -1, 1) weights with a pruned output channel (all zero), the
    per-channel scale applied after the call (XNOR-style)."""

    def __init__(self, cin, cout, pruned=1):
        super().__init__(cin, cout, "round")
        self.scale = nn.Parameter(torch.rand(cout) + 0.5)
        with torch.no_grad():
            self.weight[pruned] = 0.0

    def forward(self, x):
        return super().forward(x) * self.scale.view(1, -1, 1, 1)


# --- activation binarizers -----------------------------------------------------------------------
class LarqSteSign(Function):
    """larq's ste_sign ported: sign(sign(x) + 0.1) (0 maps to +1), gradient zero where |x| > clip."""

    @staticmethod
    def forward(ctx, x, clip_value=1.0):
        ctx.save_for_backward(x)
        ctx.clip_value = clip_value
        return torch.sign(torch.sign(x) + 0.1)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= ctx.clip_value).to(g.dtype), None


class FDASign(Function):
    """FDA-BNN: sign forward, a truncated Fourier series of the square wave in backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        w = math.pi / 2
        d = sum(torch.cos((2 * i + 1) * w * x) for i in range(4)) * 4 / math.pi * w
        return g * d.clamp(-4, 4)


class ThresholdBuffer(nn.Module):
    """x.ge(t) with a per-channel buffer t: {0, 1}, or 2 * x.ge(t) - 1 (+-1)."""

    def __init__(self, c, pm1=False):
        super().__init__()
        self.register_buffer("t", torch.randn(1, c, 1, 1) * 0.2)
        self.pm1 = pm1

    def forward(self, x):
        b = x.ge(self.t).float()
        return b * 2 - 1 if self.pm1 else b


class HardtanhSTE(nn.Module):
    """Hardtanh STE written inline: (sign(h) - h).detach() + h with h = hardtanh(x)."""

    def forward(self, x):
        h = F.hardtanh(x)
        return (torch.where(h >= 0, 1.0, -1.0) - h).detach() + h


class HeavisideConv(nn.Conv2d):
    """{0, 1} activations from torch.heaviside(x, v) inline: v exactly at x == 0."""

    def __init__(self, *args, v=0.0, **kw):
        super().__init__(*args, **kw)
        self.register_buffer("v", torch.tensor(v))

    def forward(self, x):
        return F.conv2d(torch.heaviside(x, self.v), torch.sign(self.weight), self.bias, self.stride, self.padding)


class LearnedThresholdConv(nn.Conv2d):
    """A learned per-channel threshold inline, (x >= t) * 2 - 1 (ReActNet's RSign / FracBNN's
    thresholds written inside the conv module): trained thresholds are small (|t| ~ 1e-2), so few
    examples fall between 0 and t. constant: the threshold a number in the code instead."""

    def __init__(self, *args, scale=0.02, constant=None, **kw):
        super().__init__(*args, **kw)
        self.t = nn.Parameter(torch.rand(self.in_channels) * scale + scale / 10)
        self.constant = constant

    def forward(self, x):
        t = self.t.view(1, -1, 1, 1) if self.constant is None else self.constant
        b = (x >= t).float() * 2 - 1
        return F.conv2d(b, torch.sign(self.weight), None, self.stride, self.padding)


class ActConv(nn.Module):
    """An activation module, then a conv module with sign weights (binary-networks-pytorch style)."""

    def __init__(self, act, cin=6, cout=5, k=3, stride=1, groups=1):
        super().__init__()
        self.act = act
        self.conv = SignWeightConv(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)

    def forward(self, x):
        return self.conv(self.act(x))


class FnAct(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class XNORInputScale(nn.Module):
    """XNOR-Net's input binarization with a per-sample scale, as its own module: sign(x) * mean |x|."""

    def forward(self, x):
        return torch.sign(x) * x.abs().mean(dim=tuple(range(1, x.dim())), keepdim=True)


class BatchScaledSign(nn.Module):
    """Simplified XNOR ports: the activation scale mean |x| over the whole tensor (the batch), as
    its own module: +-a on every sample of a batch, another a on another batch."""

    def forward(self, x):
        return torch.sign(x) * x.abs().mean()


class MaxScaledQuant(nn.Module):
    """A 2-bit uniform quantizer scaled by the batch's max (simple QNN ports): round(y / s) * s with
    s = max(relu(x)) / 3 over the whole tensor."""

    def forward(self, x):
        y = torch.clamp(x, min=0)
        s = y.max() / 3
        return torch.round(y / s) * s


# --- pooling / channel shuffle before the binarizer (MeliusNet / BinaryDenseNet shortcuts) --------
def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class PoolSignConv(nn.Module):
    """A binary conv module whose forward pools (or shuffles channels) before its sign."""

    def __init__(self, how, cin=8, cout=6):
        super().__init__()
        self.how = how
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))

    def forward(self, x):
        if self.how == "max":
            x = F.max_pool2d(x, 2)
        elif self.how == "avg":
            x = F.avg_pool2d(x, 2)
        else:
            x = channel_shuffle(x, 2)
        return F.conv2d(torch.sign(x), torch.sign(self.weight), padding=1)


class PoolThenBinary(nn.Module):
    """The pool / shuffle in the parent, the sign and conv in their own modules: packable."""

    def __init__(self, how, cin=8, cout=6):
        super().__init__()
        self.how = how
        self.act = FnAct(torch.sign)
        self.conv = SignWeightConv(cin, cout, 3, padding=1, bias=False)

    def forward(self, x):
        if self.how == "max":
            x = nn.functional.max_pool2d(x, 2)
        elif self.how == "avg":
            x = nn.functional.avg_pool2d(x, 2)
        else:
            x = channel_shuffle(x, 2)
        return self.conv(self.act(x))


# --- BinaryDenseNet / MeliusNet (Bethge et al.) ---------------------------------------------------
class DenseLayer(nn.Module):
    """BinaryDenseNet: BN -> sign -> binary 3x3 conv, output concatenated to the input."""

    def __init__(self, cin, growth):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = WeightIdiomConv(cin, growth, "xnor")

    def forward(self, x):
        return torch.cat([x, self.conv(self.bn(x))], 1)


class ImprovementBlock(nn.Module):
    """MeliusNet: the binary conv's output added to the last `growth` channels of the input."""

    def __init__(self, c, growth):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.conv = WeightIdiomConv(c, growth, "ge")
        self.growth = growth

    def forward(self, x):
        y = self.conv(self.bn(x))
        x = x.clone()
        x[:, -self.growth :] += y
        return x


class MeliusTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.dense = DenseLayer(8, 6)
        self.improve = ImprovementBlock(14, 6)
        self.fc = nn.Linear(14, 4)

    def forward(self, x):
        x = self.improve(self.dense(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# --- weight sharing, a reused binarizer, dropout before the sign -----------------------------------
class SharedConvNet(nn.Module):
    """One binarizer instance called twice, one binary conv called twice (weight sharing)."""

    def __init__(self, c=6):
        super().__init__()
        self.act = FnAct(lambda x: torch.sign(torch.sign(x) + 0.1))
        self.conv = SignWeightConv(c, c, 3, padding=1, bias=False)
        self.other = SignWeightConv(c, c, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(c), nn.BatchNorm2d(c)

    def forward(self, x):
        y = self.bn1(self.conv(self.act(x))) + x
        y = self.bn2(self.conv(self.act(y))) + y
        return self.other(self.act(y))


class DropoutSignConv(nn.Conv2d):
    """Dropout before the sign (and after the conv) inside the conv module: nn.Dropout (the
    identity in eval mode) or F.dropout without training=self.training (always on: random)."""

    def __init__(self, *args, always_on=False, **kw):
        super().__init__(*args, **kw)
        self.drop = nn.Dropout(0.2)
        self.always_on = always_on

    def forward(self, x):
        x = F.dropout(x, 0.2) if self.always_on else self.drop(x)
        return self.drop(F.conv2d(torch.sign(x), torch.sign(self.weight), self.bias, self.stride, self.padding))


class StochasticBinarizeConv(nn.Conv2d):
    """BinaryNet.pytorch's Binarize(quant_mode='stoch') for the weights, or a stochastic sign of
    the input (+1 with probability hard_sigmoid(x), as in BinaryConnect's stochastic mode)."""

    def __init__(self, *args, what="weight", **kw):
        super().__init__(*args, **kw)
        self.what = what

    def forward(self, x):
        w, xb = torch.sign(self.weight), torch.sign(x)
        if self.what == "weight":
            t = self.weight.clone()
            w = t.add_(1).div_(2).add_(torch.rand(t.size()).add(-0.5)).clamp_(0, 1).round().mul_(2).add_(-1)
        else:
            xb = torch.where(torch.rand_like(x) < torch.clamp((x + 1) / 2, 0, 1), 1.0, -1.0)
        return F.conv2d(xb, w, self.bias, self.stride, self.padding)


# --- BinaryConnect (Courbariaux et al. 2015) MLP: binary weights, real activations -----------------
class BinaryConnectLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, torch.sign(self.weight), self.bias)


class ScaledBinaryLinear(nn.Linear):
    """XNOR-style linear: sign(x) and sign(w), the per-output mean |w| applied after the call."""

    def forward(self, x):
        y = F.linear(torch.sign(x), torch.sign(self.weight))
        return y * self.weight.abs().mean(1) + self.bias


class BinaryConnectMLP(nn.Module):
    def __init__(self, sizes=(20, 16, 12, 5)):
        super().__init__()
        layers = []
        for a, b in zip(sizes[:-2], sizes[1:-1]):
            layers += [BinaryConnectLinear(a, b), nn.BatchNorm1d(b), nn.Hardtanh()]
        self.features = nn.Sequential(*layers)
        self.binary = ScaledBinaryLinear(sizes[-2], sizes[-1])

    def forward(self, x):
        return self.binary(self.features(x.flatten(1)))
