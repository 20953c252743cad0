"""A fifth set of BNN idioms and deployment plumbing, for tests/convert/test_public_models5.py: a
small XNOR ResNet to hand convert() the way deployment tools hand it models (torch.compile,
torch.fx / torch.export graph modules, QuantStub / DeQuantStub, other dtypes, channels_last),
layer forms (TensorFlow "SAME" padding ported as an asymmetric F.pad, keyword-spotting Conv1d
layers, a segmentation decoder's ConvTranspose2d, grouped and dilated convs with groups of odd
width), data-dependent scaling around a binary conv (XNOR-Net's K map computed in the caller,
PokeBNN's block with DPReLU, a shifted ReLU and several residuals, FracBNN's 2-bit activation
sign(x) + sign(x - t), BoolNet-style binary features passed between blocks) and BatchNorm with
batch statistics. Each class names the code it follows (written from memory of that code: the
forward values are what matters)."""

import torch
import torch.nn.functional as F
import torch.nn.utils.prune
import torch.utils.checkpoint
from torch import nn

from .models_public4 import XnorConv2d, mean_abs_sign


# --- a small XNOR ResNet (the model the plumbing tests wrap) -------------------------------------
class XnorBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = XnorConv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x)) + x


class TinyXnorResNet(nn.Module):
    def __init__(self, c=8, classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(c)
        self.b1 = XnorBlock(c)
        self.b2 = XnorBlock(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.b2(self.b1(self.bn0(self.stem(x))))
        return self.fc(x.mean((2, 3)))


class AutocastResNet(TinyXnorResNet):
    """Mixed-precision inference written in the forward: torch.autocast to bfloat16 on the CPU."""

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().forward(x).float()


class CheckpointedResNet(TinyXnorResNet):
    """Training code's activation checkpointing left in the forward (both torch.utils.checkpoint
    implementations)."""

    def forward(self, x):
        x = self.bn0(self.stem(x))
        x = torch.utils.checkpoint.checkpoint(self.b1, x, use_reentrant=False)
        x = torch.utils.checkpoint.checkpoint(self.b2, x, use_reentrant=True)
        return self.fc(x.mean((2, 3)))


class QuantStubNet(nn.Module):
    """torch.ao.quantization's eager-mode preparation: QuantStub / DeQuantStub around the model,
    still at float (identities until the model is converted to int8)."""

    def __init__(self, net=None):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.net = net or TinyXnorResNet()
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.net(self.quant(x)))


# --- layer forms ---------------------------------------------------------------------------------
class SamePadXnorConv(nn.Conv2d):
    """A TensorFlow / larq model ported to PyTorch: padding="same" with stride 2 pads one pixel on the
    bottom and right only, written as F.pad(.., (0, 1, 0, 1)) before a conv without padding, of the
    binarized input ('after') or of the real one ('before', then sign(0) = 0 pads)."""

    def __init__(self, cin, cout, where="after"):
        super().__init__(cin, cout, 3, stride=2, bias=False)
        self.where = where

    def forward(self, x):
        if self.where == "before":
            xb = torch.sign(F.pad(x, (0, 1, 0, 1)))
        else:
            xb = F.pad(torch.sign(x), (0, 1, 0, 1))
        return F.conv2d(xb, mean_abs_sign(self.weight), None, self.stride)


class XnorConvNd(nn.Module):
    """sign(x) and XNOR weights through any of F.conv1d (keyword spotting), F.conv2d (with groups
    and dilation) or F.conv_transpose2d (a segmentation decoder's upsampling)."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        c, bx = self.conv, torch.sign(x)
        bw = mean_abs_sign(c.weight)
        if isinstance(c, nn.ConvTranspose2d):
            return F.conv_transpose2d(bx, bw, c.bias, c.stride, c.padding, c.output_padding, c.groups, c.dilation)
        fn = F.conv1d if isinstance(c, nn.Conv1d) else F.conv2d
        return fn(bx, bw, c.bias, c.stride, c.padding, c.dilation, c.groups)


class FloatThenBinary(nn.Module):
    """A float 1x1 conv, the binary layer, a BatchNorm (1-D or 2-D, to match the layer)."""

    def __init__(self, layer, cin, cout, dims=2):
        super().__init__()
        self.pre = (nn.Conv1d if dims == 1 else nn.Conv2d)(cin, cin, 1)
        self.layer = layer
        self.bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(cout)

    def forward(self, x):
        return self.bn(self.layer(self.pre(x)))


# --- data-dependent scaling around the binary conv -------------------------------------------------
class SignWeightConv(nn.Conv2d):
    """Binary weights, the input taken as it comes (binarized by the caller)."""

    def forward(self, x):
        return F.conv2d(x, mean_abs_sign(self.weight), None, self.stride, self.padding)


class UpstreamSignBlock(nn.Module):
    """The block binarizes (Bi-Real style): the conv module sees +-1 from its caller."""

    def __init__(self, c):
        super().__init__()
        self.conv = SignWeightConv(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(torch.sign(x))) + x


class UpstreamSignResNet(TinyXnorResNet):
    def __init__(self, c=8, classes=5):
        super().__init__(c, classes)
        self.b1 = UpstreamSignBlock(c)
        self.b2 = UpstreamSignBlock(c)


class XnorKMapBlock(nn.Module):
    """XNOR-Net's K map in the caller (as the paper's Figure 2 computes it): K = avg_pool(mean |x| over
    channels), the binary conv of sign(x), its output times K. The conv module itself is binary."""

    def __init__(self, c):
        super().__init__()
        self.pre = nn.Conv2d(c, c, 1)
        self.conv = SignWeightConv(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        x = self.pre(x)
        k = F.avg_pool2d(x.abs().mean(1, keepdim=True), 3, 1, 1)
        return self.bn(self.conv(torch.sign(x)) * k)


class DPReLU(nn.Module):
    """PokeBNN's dynamic PReLU: shifted by a learned a, a slope per side, shifted back by b."""

    def __init__(self, c):
        super().__init__()
        self.a = nn.Parameter(torch.randn(1, c, 1, 1) * 0.3)
        self.b = nn.Parameter(torch.randn(1, c, 1, 1) * 0.3)
        self.pos = nn.Parameter(torch.rand(1, c, 1, 1) + 0.5)
        self.neg = nn.Parameter(torch.rand(1, c, 1, 1) * 0.3)

    def forward(self, x):
        y = x - self.a
        return torch.where(y >= 0, y * self.pos, y * self.neg) + self.b


class PokeConv(nn.Module):
    """sign(x * s) with a learned scalar input scale s (the sign of s decides the side), sign weights."""

    def __init__(self, c, scale):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.weight = nn.Parameter(torch.randn(c, c, 3, 3))

    def forward(self, x):
        return F.conv2d(torch.sign(x * self.scale), torch.sign(self.weight), None, 1, 1)


class PokeBlock(nn.Module):
    """PokeBNN-style block: two binary convs, BatchNorm, DPReLU, a shifted ReLU and three residuals."""

    def __init__(self, c, scale=0.7):
        super().__init__()
        self.pre = nn.Conv2d(c, c, 1)
        self.c1 = PokeConv(c, scale)
        self.bn1 = nn.BatchNorm2d(c)
        self.act = DPReLU(c)
        self.c2 = PokeConv(c, scale)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        x = self.pre(x)
        h = self.act(self.bn1(self.c1(x))) + x
        return F.relu(self.bn2(self.c2(h)) + 0.5) - 0.5 + h + x


class FracConv(nn.Module):
    """FracBNN's 2-bit activation written as two binarizations, sign(x) + sign(x - t) in {-2, 0, 2},
    with a learned t: not a +-a input, whatever the examples show."""

    def __init__(self, c, t):
        super().__init__()
        self.t = nn.Parameter(torch.tensor(float(t)))
        self.weight = nn.Parameter(torch.randn(c, c, 3, 3))

    def forward(self, x):
        return F.conv2d(torch.sign(x) + torch.sign(x - self.t), torch.sign(self.weight), None, 1, 1)


class BoolBlock(nn.Module):
    """BoolNet-style: binary features in and out (the sign after BatchNorm and the binary residual
    are in the block; the conv module sees +-1 only)."""

    def __init__(self, c):
        super().__init__()
        self.conv = SignWeightConv(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, xb):
        return torch.sign(self.bn(self.conv(xb)) + xb)


class BoolNet(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(c, c, 3, padding=1)
        self.b1 = BoolBlock(c)
        self.b2 = BoolBlock(c)

    def forward(self, x):
        return self.b2(self.b1(torch.sign(self.stem(x))))


# --- BatchNorm with batch statistics ----------------------------------------------------------------
class BatchStatConv(nn.Module):
    """A binary conv whose output is normalized with the batch's statistics inside the module
    (F.batch_norm(training=True), as nn.BatchNorm2d(track_running_stats=False) does in eval mode)."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c, c, 3, 3))
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)

    def forward(self, x):
        return F.batch_norm(F.conv2d(x, torch.sign(self.weight), None, 1, 1), None, None, self.gamma, training=True)


class BatchStatNet(nn.Module):
    """The input binarized upstream, then BatchStatConv ('inside'), or a binary conv module followed by
    nn.BatchNorm2d(track_running_stats=False) ('after')."""

    def __init__(self, c=8, where="inside"):
        super().__init__()
        self.pre = nn.Conv2d(c, c, 1)
        self.conv = BatchStatConv(c) if where == "inside" else SignWeightConv(c, c, 3, padding=1, bias=False)
        self.bn = nn.Identity() if where == "inside" else nn.BatchNorm2d(c, track_running_stats=False)

    def forward(self, x):
        return self.bn(self.conv(torch.sign(self.pre(x))))


# --- modules whose forward changes their buffers in eval mode ---------------------------------------
class RunningPeakNorm(nn.Module):
    """Divides by the largest |x| seen so far, kept in a buffer updated by every forward, eval mode
    included (as streaming / calibration code keeps running statistics)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("peak", torch.tensor(1.0))

    def forward(self, x):
        self.peak = torch.maximum(self.peak, x.detach().abs().amax())
        return x / self.peak


class PeakNormResNet(UpstreamSignResNet):
    def __init__(self):
        super().__init__()
        self.norm = RunningPeakNorm()

    def forward(self, x):
        x = self.b2(self.b1(self.norm(self.bn0(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


def observed(model: nn.Module) -> nn.Module:
    """torch.ao.quantization's eager-mode post-training preparation: MinMaxObserver modules (and the
    forward hooks that feed them) after every quantizable layer of the model, still at float."""
    model.eval()
    model.qconfig = torch.ao.quantization.default_qconfig
    return torch.ao.quantization.prepare(model)


def pruned(model: TinyXnorResNet, how: str) -> TinyXnorResNet:
    """torch.nn.utils.prune on the first binary conv (a forward pre-hook recomputes its weight as
    weight_orig * weight_mask): whole output channels (L1 structured) or single weights."""
    conv = model.b1.conv
    if how == "structured":
        torch.nn.utils.prune.ln_structured(conv, "weight", amount=0.25, n=1, dim=0)
    else:
        torch.nn.utils.prune.l1_unstructured(conv, "weight", amount=0.3)
    return model


def fake_quantized_bn(model: TinyXnorResNet, x: torch.Tensor) -> TinyXnorResNet:
    """Quantization-aware training prepared on the first block's BatchNorm only
    (torch.ao.quantization.prepare_qat): a forward hook runs a FakeQuantize submodule on its output,
    which rounds it to an 8-bit grid (also in eval mode); calibrated on x, then in eval mode."""
    model.train()
    model.b1.bn.qconfig = torch.ao.quantization.get_default_qat_qconfig("x86")
    torch.ao.quantization.prepare_qat(model, inplace=True)
    with torch.no_grad():
        model(x)
    return model.eval()


class LazyXnorNet(nn.Module):
    """Lazy modules (shapes inferred at the first call) not run yet: no weights."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.LazyConv2d(c, 3, padding=1)
        self.bn0 = nn.LazyBatchNorm2d()
        self.b1 = XnorBlock(c)

    def forward(self, x):
        return self.b1(self.bn0(self.stem(x)))
