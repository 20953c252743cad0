"""Small models written the way public BNN training code writes its layers (the binarizer idioms
of each codebase, reproduced: custom autograd Functions, STE tricks, in-place .data updates),
for the convert() tests. Sizes are small; the idioms are what matters."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function


# --- IR-Net / RBNN / ReCU / SiMaN: sign in a custom autograd Function, scaled outputs ---------
class BinaryQuantize(Function):
    """forward sign, backward a tanh-shaped approximation (IR-Net's EDE, RBNN, ReCU)."""

    @staticmethod
    def forward(ctx, input, k, t):
        ctx.save_for_backward(input, k, t)
        return torch.sign(input)

    @staticmethod
    def backward(ctx, grad_output):
        input, k, t = ctx.saved_tensors
        grad_input = k * t * (1 - torch.pow(torch.tanh(input * t), 2)) * grad_output
        return grad_input, None, None


class BinaryQuantizeA(Function):
    """ReCU's activation binarizer: sign, clipped-identity STE."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return torch.sign(input)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return grad_output * (2 - 2 * input.abs()).clamp(min=0)


class IRConv2d(nn.Conv2d):
    """IR-Net: balanced, standardized weights, power-of-two scale, sign of the raw input."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.k = torch.tensor([10.0]).float()
        self.t = torch.tensor([0.1]).float()

    def forward(self, input):
        w = self.weight
        a = input
        bw = w - w.view(w.size(0), -1).mean(-1).view(w.size(0), 1, 1, 1)
        bw = bw / bw.view(bw.size(0), -1).std(-1).view(bw.size(0), 1, 1, 1)
        sw = (
            torch.pow(
                torch.tensor([2] * bw.size(0)).float(),
                (torch.log(bw.abs().view(bw.size(0), -1).mean(-1)) / math.log(2)).round().float(),
            )
            .view(bw.size(0), 1, 1, 1)
            .detach()
        )
        bw = BinaryQuantize().apply(bw, self.k, self.t)
        ba = BinaryQuantize().apply(a, self.k, self.t)
        bw = bw * sw
        return F.conv2d(ba, bw, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ReCUConv2d(nn.Conv2d):
    """ReCU: standardized weights clamped at a quantile (a .item() on the weights), learned alpha
    per output channel applied after the conv; activations standardized only in training."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = nn.Parameter(torch.rand(self.weight.size(0), 1, 1), requires_grad=True)
        self.register_buffer("tau", torch.tensor(1.0 - 1e-3))

    def forward(self, input):
        a = input
        w = self.weight
        w0 = w - w.mean([1, 2, 3], keepdim=True)
        w1 = w0 / (torch.sqrt(w0.var([1, 2, 3], keepdim=True) + 1e-5) / 2 / math.sqrt(2))
        ew = torch.mean(torch.abs(w1))
        q_tau = (-ew * torch.log(2 - 2 * self.tau)).detach().cpu().item()
        w2 = torch.clamp(w1, -q_tau, q_tau)
        if self.training:
            a0 = a / torch.sqrt(a.var([1, 2, 3], keepdim=True) + 1e-5)
        else:
            a0 = a
        bw = BinaryQuantize().apply(w2, torch.tensor(1.0), torch.tensor(1.0))
        ba = BinaryQuantizeA().apply(a0)
        output = F.conv2d(ba, bw, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return output * self.alpha


class RBNNActConv2d(nn.Conv2d):
    """RBNN / SiMaN (ImageNet code): the activation is standardized per sample before the sign,
    sign((a - mean_CHW(a)) / std_CHW(a)): a data-dependent threshold."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.k = torch.tensor([10.0]).float()
        self.t = torch.tensor([0.1]).float()
        self.alpha = nn.Parameter(torch.rand(self.weight.size(0), 1, 1))

    def forward(self, input):
        w = self.weight
        w1 = w - w.view(w.size(0), -1).mean(-1).view(w.size(0), 1, 1, 1)
        w2 = w1 / w1.view(w1.size(0), -1).std(-1).view(w1.size(0), 1, 1, 1)
        bw = BinaryQuantize().apply(w2, self.k, self.t)
        a = input
        a = a - a.view(a.size(0), -1).mean(-1).view(a.size(0), 1, 1, 1)
        a = a / a.view(a.size(0), -1).std(-1).view(a.size(0), 1, 1, 1)
        ba = BinaryQuantize().apply(a, self.k, self.t)
        output = F.conv2d(ba, bw, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return output * self.alpha


class ResNetBlock(nn.Module):
    """The CIFAR ResNet basic block of IR-Net / RBNN / ReCU: conv-BN, hardtanh, real shortcut."""

    def __init__(self, conv_cls, c: int):
        super().__init__()
        self.conv1 = conv_cls(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = conv_cls(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)) + x)
        return F.hardtanh(self.bn2(self.conv2(out)) + out)


class CifarResNet(nn.Module):
    def __init__(self, conv_cls, c: int = 16, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.layer1 = ResNetBlock(conv_cls, c)
        self.layer2 = ResNetBlock(conv_cls, c)
        self.linear = nn.Linear(c, classes)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)))
        out = self.layer2(self.layer1(out))
        out = F.adaptive_avg_pool2d(out, 1).view(out.size(0), -1)
        return self.linear(out)


# --- BinaryNet.pytorch: in-place .data binarization, x.view(-1, C*H*W) after the features ----
def Binarize(tensor, quant_mode="det"):  # noqa: N802 (the codebase's name)
    return tensor.sign()


class BinarizeConv2d(nn.Conv2d):
    def forward(self, input):
        if input.size(1) != 3:
            input.data = Binarize(input.data)
        if not hasattr(self.weight, "org"):
            self.weight.org = self.weight.data.clone()
        self.weight.data = Binarize(self.weight.org)
        out = F.conv2d(input, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        if self.bias is not None:
            self.bias.org = self.bias.data.clone()
            out += self.bias.view(1, -1, 1, 1).expand_as(out)
        return out


class BinarizeLinear(nn.Linear):
    def forward(self, input):
        if input.size(1) != 784:
            input.data = Binarize(input.data)
        if not hasattr(self.weight, "org"):
            self.weight.org = self.weight.data.clone()
        self.weight.data = Binarize(self.weight.org)
        out = F.linear(input, self.weight)
        if self.bias is not None:
            self.bias.org = self.bias.data.clone()
            out += self.bias.view(1, -1).expand_as(out)
        return out


class VGGBinary(nn.Module):
    """BinaryNet's vgg_cifar10_binary, narrowed: the first conv sees the real image."""

    def __init__(self, c: int = 16, classes: int = 10):
        super().__init__()
        self.c = c
        self.features = nn.Sequential(
            BinarizeConv2d(3, c, 3, 1, 1, bias=True),
            nn.BatchNorm2d(c),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(c, c, 3, 1, 1, bias=True),
            nn.MaxPool2d(2, 2),
            nn.BatchNorm2d(c),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(c, 2 * c, 3, 1, 1, bias=True),
            nn.BatchNorm2d(2 * c),
            nn.Hardtanh(inplace=True),
        )
        self.classifier = nn.Sequential(
            BinarizeLinear(2 * c * 4 * 4, 32, bias=True),
            nn.BatchNorm1d(32),
            nn.Hardtanh(inplace=True),
            BinarizeLinear(32, classes, bias=True),
            nn.BatchNorm1d(classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = x.view(-1, 2 * self.c * 4 * 4)
        return self.classifier(x)


class FirstLayerView(nn.Module):
    """A binary-weight conv (real image input) whose output is flattened with view()."""

    def __init__(self, c: int = 6):
        super().__init__()
        self.conv = BinarizeConv2d(3, c, 3, 1, 1, bias=True)

    def forward(self, x):
        x = self.conv(x)
        return x.view(-1, x.shape[1] * x.shape[2] * x.shape[3])


# --- XNOR-Net-PyTorch: BinActive returns (sign, mean) in a parent block, nn.Conv2d child -------
class BinActive(Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        mean = torch.mean(input.abs(), 1, keepdim=True)
        return input.sign(), mean

    @staticmethod
    def backward(ctx, grad_output, grad_mean):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input.ge(1)] = 0
        grad_input[input.le(-1)] = 0
        return grad_input


class BinConv2d(nn.Module):
    def __init__(self, input_channels, output_channels, kernel_size=-1, stride=-1, padding=-1):
        super().__init__()
        self.bn = nn.BatchNorm2d(input_channels, eps=1e-4, momentum=0.1, affine=True)
        self.bn.weight.data = self.bn.weight.data.zero_().add(1.0)
        self.conv = nn.Conv2d(input_channels, output_channels, kernel_size=kernel_size, stride=stride, padding=padding)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(x)
        x, mean = BinActive.apply(x)
        x = self.conv(x)
        return self.relu(x)


class NIN(nn.Module):
    def __init__(self, c: int = 16, classes: int = 10):
        super().__init__()
        self.xnor = nn.Sequential(
            nn.Conv2d(3, c, 5, 1, 2),
            nn.BatchNorm2d(c, eps=1e-4, momentum=0.1, affine=False),
            nn.ReLU(inplace=True),
            BinConv2d(c, c, kernel_size=3, stride=1, padding=1),
            BinConv2d(c, c, kernel_size=1, stride=1, padding=0),
            nn.BatchNorm2d(c, eps=1e-3, momentum=0.1, affine=False),
            nn.Conv2d(c, classes, 1, 1, 0),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x):
        return self.xnor(x).view(x.size(0), -1)


def xnor_binarize_weights(model: nn.Module) -> nn.Module:
    """What XNOR-Net-PyTorch's BinOp.binarization() does before evaluating: W <- mean|W| * sign(W)
    per output channel of the binarized (BinConv2d) convs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BinConv2d):
                w = m.conv.weight
                n = w[0].nelement()
                alpha = w.norm(1, 3, keepdim=True).sum(2, keepdim=True).sum(1, keepdim=True).div(n)
                w.copy_(w.sign() * alpha)
    return model


# --- binary-networks-pytorch: bconfig pre-process modules; sign(relu(x)) gives {0, 1} ---------
class SignActivation(Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.sign()

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input.masked_fill_(input.ge(1) | input.le(-1), 0)
        return grad_input


class XNORWeightBinarizer(nn.Module):
    def forward(self, x):
        n = x[0].nelement()
        alpha = x.norm(1, 3, keepdim=True).sum([2, 1], keepdim=True).div_(n).detach()
        x = SignActivation.apply(x)
        return x.mul_(alpha.expand_as(x))


class ReLUSignBinarizer(nn.Module):
    """An activation pre-process of ReLU then sign: values {0, 1} from the strict x > 0."""

    def forward(self, x):
        return SignActivation.apply(F.relu(x))


class BasicInputBinarizer(nn.Module):
    def forward(self, x):
        return SignActivation.apply(x)


class BasicScaleBinarizer(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.rand(1, channels, 1, 1) + 0.5)

    def forward(self, layer_out, layer_in):
        return layer_out.mul_(self.alpha)


class BConv2d(nn.Conv2d):
    """binary-networks-pytorch's bnn.layers.Conv2d with its bconfig modules."""

    def __init__(self, *args, act_pre=BasicInputBinarizer, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation_pre_process = act_pre()
        self.activation_post_process = BasicScaleBinarizer(self.out_channels)
        self.weight_pre_process = XNORWeightBinarizer()

    def forward(self, input):
        input_proc = self.activation_pre_process(input)
        input_proc = self._conv_forward(input_proc, self.weight_pre_process(self.weight), bias=self.bias)
        return self.activation_post_process(input_proc, input)


class BNNPytorchNet(nn.Module):
    def __init__(self, act_pre, c: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, 1, 1)
        self.c1 = BConv2d(c, c, 3, 1, 1, bias=False, act_pre=act_pre)
        self.bn1 = nn.BatchNorm2d(c)
        self.c2 = BConv2d(c, c, 3, 1, 1, bias=False, act_pre=act_pre)
        self.bn2 = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.bn1(self.c1(x)) + x
        x = self.bn2(self.c2(x)) + x
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# --- STE written inline: x.sign().detach() - x.detach() + x (ReActNet / Bi-Real style) -------
class InlineSTEConv2d(nn.Conv2d):
    def forward(self, x):
        bx = x.sign().detach() - x.detach() + x
        sw = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
        bw = (self.weight.sign() * sw).detach() - self.weight.detach() + self.weight
        return F.conv2d(bx, bw, self.bias, self.stride, self.padding, self.dilation, self.groups)


class StrictCompareConv2d(nn.Conv2d):
    """{0, 1} activations from a strict comparison with a learned per-channel threshold."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.t = nn.Parameter(torch.randn(self.in_channels) * 0.1)

    def forward(self, x):
        b = (x > self.t.view(1, -1, 1, 1)).float()
        return F.conv2d(b, torch.sign(self.weight), self.bias, self.stride, self.padding)


# --- AdaBin: offset-binary weights (beta_o +- alpha_o) and activations (alpha * (beta +- 1)) --
class AdaBinActivation(nn.Module):
    """Learnable distance and center; the Bi-Real piecewise-polynomial STE around sign."""

    def __init__(self):
        super().__init__()
        self.alpha_a = nn.Parameter(torch.tensor(1.0))
        self.beta_a = nn.Parameter(torch.tensor(0.0))

    def gradient_approx(self, x):
        out_forward = torch.sign(x)
        mask1 = x < -1
        mask2 = x < 0
        mask3 = x < 1
        out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
        out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
        out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
        return out_forward.detach() - out3.detach() + out3

    def forward(self, x):
        x = (x - self.beta_a) / self.alpha_a
        x = self.gradient_approx(x)
        return self.alpha_a * (x + self.beta_a)


class AdaBinConv2d(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.k = torch.tensor([10]).float()
        self.t = torch.tensor([0.1]).float()
        self.binary_a = AdaBinActivation()
        self.filter_size = self.kernel_size[0] * self.kernel_size[1] * self.in_channels

    def forward(self, inputs):
        inputs = self.binary_a(inputs)
        w = self.weight
        beta_w = w.mean((1, 2, 3)).view(-1, 1, 1, 1)
        alpha_w = torch.sqrt(((w - beta_w) ** 2).sum((1, 2, 3)) / self.filter_size).view(-1, 1, 1, 1)
        w = (w - beta_w) / alpha_w
        wb = BinaryQuantize().apply(w, self.k, self.t)
        weight = wb * alpha_w + beta_w
        return F.conv2d(inputs, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Maxout(nn.Module):
    def __init__(self, channel, neg_init=0.25, pos_init=1.0):
        super().__init__()
        self.neg_scale = nn.Parameter(neg_init * torch.ones(channel))
        self.pos_scale = nn.Parameter(pos_init * torch.ones(channel))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.pos_scale.view(1, -1, 1, 1) * self.relu(x) - self.neg_scale.view(1, -1, 1, 1) * self.relu(-x)


class AdaBinBlock(nn.Module):
    """AdaBin's CIFAR basic block: conv-BN-Maxout with the real shortcut."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = AdaBinConv2d(c, c, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(c)
        self.nonlinear1 = Maxout(c)
        self.conv2 = AdaBinConv2d(c, c, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(c)
        self.nonlinear2 = Maxout(c)

    def forward(self, x):
        out = self.nonlinear1(self.bn1(self.conv1(x)) + x)
        return self.nonlinear2(self.bn2(self.conv2(out)) + out)


class AdaBinNet(nn.Module):
    def __init__(self, c: int = 16, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.layer1 = AdaBinBlock(c)
        self.linear = nn.Linear(c, classes)

    def forward(self, x):
        out = self.layer1(F.hardtanh(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def adabin_trained(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking activation centers and distances (they start at 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, AdaBinActivation):
                m.alpha_a.fill_(0.5 + float(torch.rand(1, generator=g)))
                m.beta_a.fill_(float(torch.randn(1, generator=g)) * 0.3)
    return model
