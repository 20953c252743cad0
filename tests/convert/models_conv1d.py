"""Binary 1-D conv nets as public keyword-spotting / ECG / sensor BNN code writes them: an nn.Conv1d
subclass binarizing in its forward, F.conv1d of a binarized weight with the input binarized by
the caller, BatchNorm1d + PReLU / hardtanh, residuals, a float first layer and a float head."""

import torch
import torch.nn.functional as F
from torch import nn


class SignSTE(nn.Module):
    """sign with a clipped straight-through estimator (BinaryNet), as a module of its own."""

    def forward(self, x):
        hard = torch.where(x >= 0, 1.0, -1.0)
        soft = torch.clamp(x, -1, 1)
        return hard.detach() - soft.detach() + soft


class BinConv1d(nn.Conv1d):
    """XNOR-Net conv: sign(x) and sign(W) scaled by mean |W| per output channel."""

    def forward(self, x):
        bw = torch.sign(self.weight) * self.weight.abs().mean(dim=(1, 2), keepdim=True)
        return F.conv1d(torch.sign(x), bw, self.bias, self.stride, self.padding, self.dilation, self.groups)


class PaddedBinConv1d(nn.Conv1d):
    """A binary Conv1d whose padding_mode (circular, reflect) nn.Conv1d applies with F.pad."""

    def forward(self, x):
        return self._conv_forward(torch.sign(x), torch.sign(self.weight), self.bias)


class XnorConv1dF(nn.Module):
    """Its own weight, F.conv1d with keyword geometry; the input arrives binarized (SignSTE before)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, dilation=1, groups=1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, k) * 0.1)
        self.geo = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def forward(self, x):
        scale = self.weight.abs().mean(dim=(1, 2)).view(-1, 1, 1)
        return F.conv1d(x, torch.sign(self.weight) * scale, None, **self.geo)


class CenteredBinConv1d(BinConv1d):
    """Binarizes around the per-sample mean over time: a data-dependent threshold."""

    def forward(self, x):
        return super().forward(x - x.mean(-1, keepdim=True))


class ResBlock(nn.Module):
    """Binary conv -> BatchNorm1d, + the block input, -> PReLU (Bi-Real style shortcut)."""

    def __init__(self, c, k, dilation, conv=BinConv1d):
        super().__init__()
        self.conv = conv(c, c, k, padding=dilation * (k // 2), dilation=dilation, bias=False)
        self.bn = nn.BatchNorm1d(c)
        self.act = nn.PReLU(c)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)) + x)


class KwsBNN(nn.Module):
    """Keyword spotting on (N, n_mels, frames): float stem, two binary residual blocks (dilation 1
    and 2), a strided grouped binary conv on an input binarized by a SignSTE module, BatchNorm1d,
    hardtanh, mean over time, float classifier."""

    def __init__(self, n_mels=10, width=36, out=24, classes=12, centered=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(n_mels, width, 3, padding=1), nn.BatchNorm1d(width), nn.Hardtanh())
        self.b1 = ResBlock(width, 3, 1)
        self.b2 = ResBlock(width, 3, 2, CenteredBinConv1d if centered else BinConv1d)
        self.sign = SignSTE()
        self.down = XnorConv1dF(width, out, 5, stride=2, padding=2, groups=3)
        self.bn = nn.BatchNorm1d(out)
        self.act = nn.Hardtanh()
        self.head = nn.Linear(out, classes)

    def forward(self, x):
        x = self.b2(self.b1(self.stem(x)))
        x = self.act(self.bn(self.down(self.sign(x))))
        return self.head(x.mean(-1))


class PaddedNet(nn.Module):
    """A float stem, then a binary Conv1d with padding_mode (circular / reflect) and its BatchNorm1d."""

    def __init__(self, mode, cin=6, c=20):
        super().__init__()
        self.stem = nn.Conv1d(cin, c, 1)
        self.conv = PaddedBinConv1d(c, c, 3, padding=2, dilation=2, padding_mode=mode, bias=False)
        self.bn = nn.BatchNorm1d(c)

    def forward(self, x):
        return self.bn(self.conv(self.stem(x)))


class Conv1dForm(nn.Module):
    """One binary conv1d layer in one of the forms convert plans like a conv2d: a learned input
    threshold, ternary weights (torch.sign keeps 0), DoReFa 2-bit input, real input with binary
    weights (BWN), AdaBin offset-binary input and weights, torch.conv1d, the ATen operator, and
    padding='same'; and forms that keep a conv2d layer in float (an asymmetric pad, pooling)."""

    def __init__(self, how, cin=12, cout=10, k=3):
        super().__init__()
        self.how = how
        self.weight = nn.Parameter(torch.randn(cout, cin, k))
        if how == "ternary":
            self.weight.data[self.weight.data.abs() < 0.3] = 0.0
        self.t = nn.Parameter(torch.randn(1, cin, 1) * 0.2)
        self.geo = dict(stride=2, padding=1, dilation=1) if how != "same" else dict(padding="same", dilation=2)

    def forward(self, x):
        w = torch.sign(self.weight)
        if self.how == "threshold":
            return F.conv1d(torch.sign(x - self.t), w, None, **self.geo)
        if self.how == "ternary":
            return F.conv1d(torch.where(x >= 0, 1.0, -1.0), w * 0.5, None, **self.geo)
        if self.how == "dorefa":
            return F.conv1d(torch.round(torch.clamp(x, 0, 1) * 3) / 3, w, None, **self.geo)
        if self.how == "bwn":
            return F.conv1d(x, w * self.weight.abs().mean(), None, **self.geo)
        if self.how == "adabin":
            return F.conv1d(0.3 + 0.7 * torch.sign(x - 0.3), 0.2 + 0.5 * w, None, **self.geo)
        if self.how == "torch.conv1d":
            return torch.conv1d(torch.sign(x), w, None, 2, 1, 1, 1)
        if self.how == "aten":
            return torch.ops.aten.conv1d.default(torch.sign(x), w, None, [2], [1], [1], 1)
        if self.how == "tf same pad":  # TensorFlow "SAME" ported: an asymmetric pad of the binarized input
            return F.conv1d(F.pad(torch.sign(x), (0, 1)), w, None, stride=2)
        if self.how == "asymmetric reflect":
            return F.conv1d(torch.sign(F.pad(x, (2, 1), mode="reflect")), w, None)
        if self.how == "pooled":
            return F.conv1d(torch.sign(F.avg_pool1d(x, 2)), w, None)
        return F.conv1d(torch.sign(x), w, None, **self.geo)  # "same"
