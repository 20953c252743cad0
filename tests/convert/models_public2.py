"""More binarization idioms of public BNN code, written the way those codebases write them, for
tests/convert/test_public_models2.py. Each class names the code it follows; the layer idioms are
reproduced faithfully (forward values), the training-only parts (STE backward) where they change
what the forward computes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# --- ReActNet / Bi-Real-net official PyTorch (liuzechun/ReActNet, liuzechun/Bi-Real-net) --------
class LearnableBias(nn.Module):
    def __init__(self, out_chn):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, out_chn, 1, 1), requires_grad=True)

    def forward(self, x):
        return x + self.bias.expand_as(x)


class BinaryActivation(nn.Module):
    """Bi-Real / ReActNet: sign forward, piecewise-polynomial STE (its forward value is sign(x)
    up to float rounding of `out_forward.detach() - out3.detach() + out3`)."""

    def forward(self, x):
        out_forward = torch.sign(x)
        mask1 = x < -1
        mask2 = x < 0
        mask3 = x < 1
        out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
        out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
        out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
        return out_forward.detach() - out3.detach() + out3


class HardBinaryConv(nn.Module):
    """ReActNet's conv: weights stored flat, reshaped in forward, mean-abs scale over dims 1,2,3."""

    def __init__(self, in_chn, out_chn, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.shape = (out_chn, in_chn, kernel_size, kernel_size)
        self.weights = nn.Parameter(torch.rand((self.number_of_weights(),)) * 0.001, requires_grad=True)

    def number_of_weights(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def forward(self, x):
        real_weights = self.weights.view(self.shape)
        scaling_factor = torch.mean(
            torch.mean(torch.mean(abs(real_weights), dim=3, keepdim=True), dim=2, keepdim=True), dim=1, keepdim=True
        )
        scaling_factor = scaling_factor.detach()
        binary_weights_no_grad = scaling_factor * torch.sign(real_weights)
        cliped_weights = torch.clamp(real_weights, -1.0, 1.0)
        binary_weights = binary_weights_no_grad.detach() - cliped_weights.detach() + cliped_weights
        return F.conv2d(x, binary_weights, stride=self.stride, padding=self.padding)


class RPReLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.move1, self.prelu, self.move2 = LearnableBias(c), nn.PReLU(c), LearnableBias(c)

    def forward(self, x):
        return self.move2(self.prelu(self.move1(x)))


class ReActBlock(nn.Module):
    """ReActNet-A basic block (3x3 part), with the 1x1 binary downsample of the reduction blocks."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.move11 = LearnableBias(inplanes)
        self.binary_activation = BinaryActivation()
        self.binary_3x3 = HardBinaryConv(inplanes, inplanes, stride=stride)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.rprelu1 = RPReLU(inplanes)
        self.move21 = LearnableBias(inplanes)
        self.binary_pw = HardBinaryConv(inplanes, planes, kernel_size=1, padding=0)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pooling = nn.AvgPool2d(2, 2) if stride == 2 else None
        self.inplanes, self.planes = inplanes, planes

    def forward(self, x):
        out1 = self.binary_3x3(self.binary_activation(self.move11(x)))
        out1 = self.bn1(out1)
        if self.pooling is not None:
            x = self.pooling(x)
        out1 = self.rprelu1(out1 + x)
        out2 = self.binary_pw(self.binary_activation(self.move21(out1)))
        out2 = self.bn2(out2)
        if self.inplanes == self.planes:
            out2 = out2 + out1
        else:
            out2 = out2 + torch.cat([out1, out1], dim=1)
        return out2


class ReActNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8))
        self.blocks = nn.Sequential(ReActBlock(8, 8), ReActBlock(8, 16, stride=2))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# --- Real-to-Binary (Martinez et al. 2020): a data-dependent gating scale on the binary conv's output
class RealToBinaryGatedConv(nn.Module):
    """sign(x) conv, its output scaled per sample and channel by sigmoid(fc(mean(x))) computed from the
    REAL input x. The gate's fc is written with torch.matmul (as in ports that keep it inline)."""

    def __init__(self, cin, cout, reduce=2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)
        self.fc1 = nn.Parameter(torch.randn(cin, cin // reduce))
        self.fc2 = nn.Parameter(torch.randn(cin // reduce, cout))

    def forward(self, x):
        gate = torch.sigmoid(torch.relu(torch.matmul(x.mean((2, 3)), self.fc1)) @ self.fc2)
        bw = torch.sign(self.weight) * self.weight.abs().mean((1, 2, 3), keepdim=True)
        out = F.conv2d(torch.sign(x), bw, padding=1)
        return out * gate[:, :, None, None]


class RealToBinaryGateModule(nn.Module):
    """The same gate as a submodule (nn.Sequential of pooling, Linear, ReLU, Linear, Sigmoid)."""

    def __init__(self, cin, cout, reduce=2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(cin, cin // reduce),
            nn.ReLU(),
            nn.Linear(cin // reduce, cout),
            nn.Sigmoid(),
        )

    def forward(self, x):
        bw = torch.sign(self.weight) * self.weight.abs().mean((1, 2, 3), keepdim=True)
        return F.conv2d(torch.sign(x), bw, padding=1) * self.gate(x)[:, :, None, None]


class ScaleFromInputConv(nn.Module):
    """The output scaled by a statistic of the real input (XNOR-Net's K = mean |x| map, per sample)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)

    def forward(self, x):
        k = x.abs().mean((1, 2, 3), keepdim=True)
        return F.conv2d(torch.sign(x), torch.sign(self.weight), padding=1) * k


# --- nn.Conv2d subclasses with other padding modes, bias, groups / dilation via F.conv2d -------
class SignConv2d(nn.Conv2d):
    """Binary weights (torch.where(w > 0, 1, -1): strict > at 0), input binarized upstream; the
    conv itself goes through nn.Conv2d._conv_forward, so padding_mode applies."""

    def forward(self, x):
        bw = torch.where(self.weight > 0, 1.0, -1.0) * self.weight.abs().mean((1, 2, 3), keepdim=True)
        return self._conv_forward(x, bw, self.bias)


class GtSign(nn.Module):
    """Bool-based binarizer: (x > 0) * 2 - 1 (0 maps to -1)."""

    def forward(self, x):
        return (x > 0).float() * 2 - 1


class HardtanhSign(nn.Module):
    """BNext / BMXNet-style: sign of a Hardtanh (the clip is the STE's forward)."""

    def forward(self, x):
        return torch.sign(F.hardtanh(x))


class PadModeNet(nn.Module):
    def __init__(self, padding_mode="zeros", bias=False):
        super().__init__()
        self.act = GtSign()
        self.conv = SignConv2d(6, 5, 3, padding=1, padding_mode=padding_mode, bias=bias)

    def forward(self, x):
        return self.conv(self.act(x))


class FunctionalGroupedConv(nn.Module):
    """F.conv2d with groups, dilation and stride, weights flattened and reshaped inside forward."""

    def __init__(self, cin=8, cout=8, groups=2, dilation=2, stride=2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin // groups * 9))
        self.cfg = dict(groups=groups, dilation=dilation, stride=stride, padding=dilation)
        self.cin, self.cout = cin, cout

    def forward(self, x):
        w = self.weight
        alpha = w.abs().mean(1, keepdim=True)
        bw = (torch.sign(w) * alpha).view(self.cout, self.cin // self.cfg["groups"], 3, 3)
        return F.conv2d(torch.sign(x), bw, None, **self.cfg)


# --- Linear layers written with torch.matmul / @ / F.linear ---------------------------------------
class MatmulBinaryLinear(nn.Module):
    def __init__(self, cin, cout, op="@", bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.randn(cout) * 0.1) if bias else None
        self.op = op

    def forward(self, x):
        bx = torch.sign(x)
        bw = torch.sign(self.weight) * self.weight.abs().mean(1, keepdim=True)
        if self.op == "@":
            y = bx @ bw.t()
        elif self.op == "matmul":
            y = torch.matmul(bx, bw.T)
        else:
            y = F.linear(bx, bw)
        return y + self.bias if self.bias is not None else y


class MatmulInputFirst(nn.Module):
    """A matmul with the weight on the left (W @ x^T): not a linear call of the usual form."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))

    def forward(self, x):
        return (torch.sign(self.weight) @ torch.sign(x).t()).t()


# --- activations with learned scales ---------------------------------------------------------------
class ChannelScaledSign(nn.Module):
    """sign(x) * alpha_c with a learned per-channel activation scale."""

    def __init__(self, c, spread=0.2):
        super().__init__()
        self.alpha = nn.Parameter(1 + spread * torch.rand(1, c, 1, 1))

    def forward(self, x):
        return torch.sign(x) * self.alpha


class BinWeightConv(nn.Module):
    def __init__(self, cin, cout, k=3, stride=1, padding=1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * 0.1)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        bw = torch.sign(self.weight) * self.weight.abs().mean((1, 2, 3), keepdim=True)
        return F.conv2d(x, bw, stride=self.stride, padding=self.padding)


class ScaledActNet(nn.Module):
    def __init__(self, spread=0.2):
        super().__init__()
        self.act = ChannelScaledSign(6, spread)
        self.conv = BinWeightConv(6, 5)

    def forward(self, x):
        return self.conv(self.act(x))


class InlineScaledActConv(BinWeightConv):
    """The per-channel activation scale applied inside the conv module."""

    def __init__(self, cin, cout, spread=0.2):
        super().__init__(cin, cout)
        self.alpha = nn.Parameter(1 + spread * torch.rand(1, cin, 1, 1))

    def forward(self, x):
        return super().forward(torch.sign(x) * self.alpha)


# --- DoReFa-Net / PACT / LQ-style quantized activations -----------------------------------------
class DoReFaConv(nn.Conv2d):
    """DoReFa-Net PyTorch ports: k-bit activations round(clamp(x,0,1) * n) / n; weights
    tanh-normalized then quantized to w_bits (1 bit: E|w| * sign)."""

    def __init__(self, *args, a_bits=2, w_bits=1, **kw):
        super().__init__(*args, **kw)
        self.a_bits, self.w_bits = a_bits, w_bits

    def forward(self, x):
        n = 2**self.a_bits - 1
        qa = torch.round(torch.clamp(x, 0, 1) * n) / n
        if self.w_bits == 1:
            e = self.weight.abs().mean()
            qw = torch.sign(self.weight / e) * e
        else:
            w = torch.tanh(self.weight)
            w = w / (2 * w.abs().max()) + 0.5
            m = 2**self.w_bits - 1
            qw = 2 * torch.round(w * m) / m - 1
        return F.conv2d(qa, qw, self.bias, self.stride, self.padding)


class PACTConv(nn.Conv2d):
    """PACT: y = clamp(x, 0, alpha) with a learned alpha, then k-bit round(y * n / alpha) * alpha / n;
    binary weights."""

    def __init__(self, *args, a_bits=2, alpha=1.5, **kw):
        super().__init__(*args, **kw)
        self.a_bits = a_bits
        self.alpha = nn.Parameter(torch.tensor(alpha))

    def forward(self, x):
        n = 2**self.a_bits - 1
        y = torch.clamp(x, min=0.0)
        y = torch.where(y < self.alpha, y, self.alpha)
        scale = n / self.alpha
        qa = torch.round(y * scale) / scale
        qw = torch.sign(self.weight) * self.weight.abs().mean((1, 2, 3), keepdim=True)
        return F.conv2d(qa, qw, None, self.stride, self.padding)


# --- outputs that mix the call's output with the input; attention --------------------------------
class ResidualInsideConv(BinWeightConv):
    """Bi-Real-style shortcut written inside the conv module: conv(sign(x)) + x."""

    def forward(self, x):
        return super().forward(torch.sign(x)) + x


class BinaryAttention(nn.Module):
    """sign(q) @ sign(k)^T of the same input: a matmul of two activations, not a layer."""

    def forward(self, x):
        b = torch.sign(x)
        return torch.softmax(b @ b.transpose(-1, -2), -1) @ x


# --- products that are not packed (reported) -----------------------------------------------------
class OtherProductLayer(nn.Module):
    """A binary layer computed with addmm / einsum / conv1d / conv3d / conv_transpose2d."""

    def __init__(self, op):
        super().__init__()
        self.op = op
        shape = {"conv1d": (5, 6, 3), "conv3d": (5, 6, 3, 3, 3), "conv_transpose2d": (6, 5, 3, 3)}.get(op, (7, 6))
        self.weight = nn.Parameter(torch.randn(shape))

    def forward(self, x):
        bx, bw = torch.sign(x), torch.sign(self.weight)
        if self.op == "addmm":
            return torch.addmm(torch.zeros(bw.shape[0]), bx, bw.t())
        if self.op == "einsum":
            return torch.einsum("nc,oc->no", bx, bw)
        if self.op == "conv1d":
            return F.conv1d(bx, bw, padding=1)
        if self.op == "conv3d":
            return F.conv3d(bx, bw, padding=1)
        return F.conv_transpose2d(bx, bw, padding=1)


class PythonScaleAfterCall(BinWeightConv):
    """XNOR-style per-sample scale read into Python after the conv: float(mean |x|)."""

    def forward(self, x):
        y = super().forward(torch.sign(x))
        return y * float(x.abs().mean())


# --- BNext (hpi-xnor/BNext): HardSign with a temperature, HardBinaryConv with a temperature,
# ELM-attention block with squeeze-and-expand and info-recoupling (mix of input and conv output)
class HardSign(nn.Module):
    def __init__(self, rng=(-1.5, 1.5)):
        super().__init__()
        self.rng = rng
        self.register_buffer("temperature", torch.ones(1))

    def forward(self, x):
        replace = x.clamp(*self.rng)
        s = x.div(self.temperature.clamp(min=1e-8)).clamp(-1, 1).sign()
        return (s - replace).detach() + replace


class TemperatureBinaryConv(nn.Module):
    """Weights (w / T).clamp(-1, 1): binary once T is below every |w| (a trained model), else real;
    sign(w) when T < 1e-7. The parameter is clamped in place in forward, as the codebase does."""

    def __init__(self, cin, cout, k=3, stride=1, temperature=1e-6):
        super().__init__()
        self.stride, self.padding = stride, k // 2
        w = torch.randn(cout, cin, k, k) * 0.05
        self.weight = nn.Parameter(torch.where(w.abs() < 1e-3, 1e-3 * torch.sign(w) + 1e-3, w))
        self.register_buffer("temperature", torch.full((1,), temperature))

    def forward(self, x):
        self.weight.data.clamp_(-1.5, 1.5)
        if self.temperature < 1e-7:
            bw = self.weight.sign()
        else:
            bw = (self.weight / self.temperature.clamp(min=1e-8)).clamp(-1, 1)
        return F.conv2d(x, bw, stride=self.stride, padding=self.padding)


class SqueezeAndExpand(nn.Module):
    def __init__(self, c, planes, ratio=4):
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // ratio, 1), nn.ReLU(), nn.Conv2d(c // ratio, planes, 1)
        )

    def forward(self, x):
        return torch.sigmoid(self.se(x))


class ELMAttentionBlock(nn.Module):
    def __init__(self, c, temperature=1e-6):
        super().__init__()
        self.move = LearnableBias(c)
        self.binary_activation = HardSign()
        self.binary_conv = TemperatureBinaryConv(c, c, temperature=temperature)
        self.norm1, self.norm2 = nn.BatchNorm2d(c), nn.BatchNorm2d(c)
        self.activation1, self.activation2 = nn.PReLU(c), nn.PReLU(c)
        self.se = SqueezeAndExpand(c, c)
        self.scale = nn.Parameter(torch.full((1, c, 1, 1), 0.5))

    def forward(self, inp):
        residual = self.activation1(inp)
        x = self.activation2(self.norm1(self.binary_conv(self.binary_activation(self.move(inp)))))
        mix = self.scale * inp + x * (1 - self.scale)
        x = self.se(mix) * x
        return self.norm2(x * residual) + residual


class BNextTiny(nn.Module):
    def __init__(self, temperature=1e-6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8))
        self.blocks = nn.Sequential(ELMAttentionBlock(8, temperature), ELMAttentionBlock(8, 0.0))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


class PACTDivideFirstConv(PACTConv):
    """PACT written round(y / alpha * n) * alpha / n: rounds another expression than y * (n / alpha)."""

    def forward(self, x):
        n = 2**self.a_bits - 1
        y = torch.where(torch.clamp(x, min=0.0) < self.alpha, torch.clamp(x, min=0.0), self.alpha)
        qa = torch.round(y / self.alpha * n) * self.alpha / n
        qw = torch.sign(self.weight) * self.weight.abs().mean((1, 2, 3), keepdim=True)
        return F.conv2d(qa, qw, None, self.stride, self.padding)


# --- BinaryNet.pytorch's in-place input binarization (input.data = sign(input.data)) -----------
class InPlaceBinarizeConv2d(nn.Conv2d):
    def forward(self, input):
        input.data = input.data.sign()
        return F.conv2d(input, self.weight.sign(), None, self.stride, self.padding)


class InPlaceResidual(nn.Module):
    """The caller reads the tensor the conv binarized in place: it adds sign(x), not x."""

    def __init__(self, reuse=True):
        super().__init__()
        self.conv = InPlaceBinarizeConv2d(6, 6, 3, padding=1, bias=False)
        self.reuse = reuse

    def forward(self, x):
        x = x * 1.0  # not the caller's own tensor
        y = self.conv(x)
        return y + x if self.reuse else y


class WhereSign(nn.Module):
    """torch.where(x >= 0, 1, -1) (0 maps to +1), mixed with sign's STE value as Bi-Real ports do."""

    def forward(self, x):
        hard = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        return hard.detach() - torch.tanh(x).detach() + torch.tanh(x)
