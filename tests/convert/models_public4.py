"""A fourth set of layer idioms of public low-bit / BNN training code, written as that code writes
them: LSQ activation quantizers (learned step, its gradient-scale trick, the signed range),
BiT / BiBERT-style binary transformer layers (elastic binarization with learned alpha / beta,
LayerNorm around it, binarized attention scores), products written in other ways (keyword
arguments, torch.conv2d, x @ w.t(), einsum, addmm, F.unfold + matmul) and module plumbing
(in-place binarizers, parametrizations, forward pre-hooks, several inputs and outputs)."""

import torch
import torch.nn.functional as F
from torch import nn


def mean_abs_sign(w: torch.Tensor) -> torch.Tensor:
    """XNOR-Net weights: sign(w) times the mean |w| of each output channel."""
    return torch.sign(w) * w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


# --- LSQ (Esser et al.): round(clamp(x / s, lo, hi)) * s with a learned step s ----------------------
class LSQActivation(nn.Module):
    """LSQ's activation quantizer: q = round(clamp(x / s, 0, 2**b - 1)) * s (signed:
    [-2**(b-1), 2**(b-1) - 1]) with a straight-through round; grad_scale: the step used as
    s * g + (s - s * g).detach(), LSQ's gradient scaling (the same value, rounded twice)."""

    def __init__(self, bits=2, step=0.37, signed=False, grad_scale=False):
        super().__init__()
        self.step = nn.Parameter(torch.tensor(float(step)))
        self.bits, self.signed, self.grad_scale = bits, signed, grad_scale

    def forward(self, x):
        s = self.step
        if self.grad_scale:
            g = 1.0 / (x.numel() * (2**self.bits - 1)) ** 0.5
            s = s * g + (s - s * g).detach()
        lo, hi = (-(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1) if self.signed else (0, 2**self.bits - 1)
        q = torch.clamp(x / s, lo, hi)
        q = (q.round() - q).detach() + q
        return q * s


class LSQConv2d(nn.Conv2d):
    """A binary-weight conv whose input LSQ quantizes inside its forward."""

    def __init__(self, cin, cout, k, **lsq):
        super().__init__(cin, cout, k, padding=k // 2, bias=False)
        self.quant = LSQActivation(**lsq)

    def forward(self, x):
        return F.conv2d(self.quant(x), mean_abs_sign(self.weight), None, self.stride, self.padding)


class LSQNet(nn.Sequential):
    """Float stem, BN, an LSQ binary-weight conv, BN."""

    def __init__(self, **lsq):
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), LSQConv2d(8, 8, 3, **lsq), nn.BatchNorm2d(8))


class SignWeightConv2d(nn.Conv2d):
    """XNOR-style binary weights on whatever input it is given (quantized upstream, or real)."""

    def forward(self, x):
        return F.conv2d(x, mean_abs_sign(self.weight), self.bias, self.stride, self.padding)


class LSQUpstreamNet(nn.Sequential):
    """The LSQ quantizer as a module of its own before the binary-weight conv."""

    def __init__(self, **lsq):
        super().__init__(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            LSQActivation(**lsq),
            SignWeightConv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
        )


# --- BiT / BiBERT-style binary transformer layers ------------------------------------------------
class ElasticBinarizer(nn.Module):
    """BiT's elastic binarization with a learned scale alpha and shift beta (one, or one per
    feature): alpha * sign((x - beta) / alpha), or the {0, 1} form
    alpha * round(clamp((x - beta) / alpha, 0, 1))."""

    def __init__(self, features=1, two_sided=True, alpha=0.8, beta=0.1):
        super().__init__()
        g = torch.Generator().manual_seed(features)
        spread = 0.1 * torch.randn(features, generator=g) if features > 1 else torch.zeros(1)
        self.alpha = nn.Parameter(alpha + spread)
        self.beta = nn.Parameter(beta + spread.flip(0))
        self.two_sided = two_sided

    def forward(self, x):
        y = (x - self.beta) / self.alpha
        q = torch.sign(y) if self.two_sided else torch.round(torch.clamp(y, 0, 1))
        return self.alpha * q


class BiTLinear(nn.Linear):
    """Elastic-binarized input times XNOR weights, with a bias."""

    def __init__(self, fin, fout, per_feature=False, **elastic):
        super().__init__(fin, fout)
        self.act = ElasticBinarizer(fin if per_feature else 1, **elastic)

    def forward(self, x):
        return F.linear(self.act(x), mean_abs_sign(self.weight), self.bias)


class BiTNet(nn.Module):
    """Token embedding, a pre-LayerNorm binary MLP block with a residual, mean pooling, a float head.
    Input [N, T, 8]."""

    def __init__(self, d=16, **bit):
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.ln1, self.fc1 = nn.LayerNorm(d), BiTLinear(d, 2 * d, **bit)
        self.ln2, self.fc2 = nn.LayerNorm(2 * d), BiTLinear(2 * d, d, **bit)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.fc2(self.ln2(self.fc1(self.ln1(h))))
        return self.head(h.mean(1))


class BinaryAttention(nn.Module):
    """BiBERT-style: binarized Q / K / V projections, binarized scores sign(q) @ sign(k)^T (an
    activation times an activation: no layer), softmax, a float output projection."""

    def __init__(self, d=16):
        super().__init__()
        self.q, self.k, self.v = BiTLinear(d, d), BiTLinear(d, d), BiTLinear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = torch.sign(q) @ torch.sign(k).transpose(-1, -2) / q.shape[-1] ** 0.5
        return self.out(torch.softmax(scores, -1) @ v)


# --- the product written in other ways ---------------------------------------------------------
class ProductConv(nn.Module):
    """sign(x) times XNOR weights, the conv written as `how`: keyword arguments, torch.conv2d, a
    conv1d written as a conv2d with a 1-high kernel, or manual im2col (F.unfold, then W @ cols or
    cols^T @ W^T)."""

    def __init__(self, how, cin=6, cout=5, k=3):
        super().__init__()
        self.how, self.k = how, k
        self.weight = nn.Parameter(torch.randn(cout, cin, *((1, k) if how == "conv1d_as_2d" else (k, k))))

    def forward(self, x):
        z, w = torch.sign(x), mean_abs_sign(self.weight)
        if self.how == "kwargs":
            return F.conv2d(input=z, weight=w, bias=None, stride=1, padding=1)
        if self.how == "torch_conv2d":
            return torch.conv2d(z, w, None, 1, 1)
        if self.how == "conv1d_as_2d":
            return F.conv2d(z, w, padding=(0, 1))
        n, _, h, wd = z.shape
        cols = F.unfold(z, self.k, padding=self.k // 2)  # [N, C*k*k, H*W]
        if self.how == "unfold_left":
            return (w.flatten(1) @ cols).view(n, -1, h, wd)
        return (cols.transpose(1, 2) @ w.flatten(1).t()).transpose(1, 2).reshape(n, -1, h, wd)


class ProductLinear(nn.Module):
    """sign(x) times XNOR weights plus a bias, the linear layer written as `how`."""

    def __init__(self, how, fin=12, fout=7):
        super().__init__()
        self.how = how
        self.weight = nn.Parameter(torch.randn(fout, fin))
        self.bias = nn.Parameter(torch.randn(fout) * 0.1)

    def forward(self, x):
        z, w, b = torch.sign(x), mean_abs_sign(self.weight), self.bias
        return {
            "kwargs": lambda: F.linear(input=z, weight=w, bias=b),
            "matmul_t": lambda: z @ w.t() + b,
            "torch_matmul": lambda: torch.matmul(z, w.t()) + b,
            "matmul_kwargs": lambda: torch.matmul(input=z, other=w.T) + b,
            "mm": lambda: torch.mm(z, w.T) + b,
            "einsum": lambda: torch.einsum("ni,oi->no", z, w) + b,
            "addmm": lambda: torch.addmm(b, z, w.t()),
            "bmm": lambda: torch.bmm(z.unsqueeze(0), w.t().unsqueeze(0)).squeeze(0) + b,
            "matvec_rows": lambda: torch.stack([z @ row for row in w], -1) + b,
        }[self.how]()


# --- module plumbing -----------------------------------------------------------------------------
class XnorConv2d(nn.Conv2d):
    """sign(x) and XNOR weights in one forward that TorchScript compiles."""

    def forward(self, x):
        w = self.weight
        bw = torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(torch.sign(x), bw, self.bias, self.stride, self.padding)


class ScriptedSign(nn.Module):
    def forward(self, x):
        return torch.sign(x)


class ConvWithScriptedBinarizer(nn.Conv2d):
    """A conv module whose binarizer child is TorchScript (its ops are invisible, the module's are not)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.act = torch.jit.script(ScriptedSign())

    def forward(self, x):
        return F.conv2d(self.act(x), mean_abs_sign(self.weight), self.bias, self.stride, self.padding)


def scripted_net(where: str) -> nn.Sequential:
    """Float stem, BN, a binary conv, BN; `where` is TorchScript: the binary conv ("binary"), the
    float stem ("stem") or the binarizer child inside the binary conv ("child")."""
    stem = nn.Conv2d(3, 6, 3, padding=1)
    conv = (ConvWithScriptedBinarizer if where == "child" else XnorConv2d)(6, 6, 3, padding=1)
    if where == "binary":
        conv = torch.jit.script(conv)
    if where == "stem":
        stem = torch.jit.script(stem)
    return nn.Sequential(stem, nn.BatchNorm2d(6), conv, nn.BatchNorm2d(6))


class InPlaceBinarizerConv(nn.Conv2d):
    """Binarizers written in place: x.clone().sign_(), sign(F.relu(x, inplace=True)) on a copy,
    clamp_ then sign_, x.sign_() on the caller's own tensor, and on the caller's tensor too
    F.hardtanh(x, inplace=True) / F.leaky_relu(x, 0.1, True) / nn.ReLU(inplace=True) before the sign."""

    def __init__(self, how, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.how = how

    def forward(self, x):
        if self.how == "sign_":
            z = x.clone().sign_()
        elif self.how == "relu_inplace":
            z = torch.sign(F.relu(x.clone(), inplace=True))
        elif self.how == "clamp_":
            z = x.clone().clamp_(-1, 1).sign_()
        elif self.how == "hardtanh_kw":
            z = torch.sign(F.hardtanh(x, inplace=True))
        elif self.how == "leaky_positional":
            z = torch.sign(F.leaky_relu(x, 0.1, True))
        elif self.how == "relu_module":
            z = torch.sign(nn.ReLU(inplace=True)(x))
        else:
            z = x.sign_()
        return F.conv2d(z, mean_abs_sign(self.weight), self.bias, self.stride, self.padding)


class MeanAbsSign(nn.Module):
    """A weight parametrization (torch.nn.utils.parametrize): XNOR weights."""

    def forward(self, w):
        return mean_abs_sign(w)


class TwoInputNet(nn.Module):
    """Two inputs and a keyword, a dict with a tuple inside as output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.conv = InPlaceBinarizerConv("sign_", 6, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x, skip, scale=1.0):
        h = self.stem(x) + skip
        out = self.bn(self.conv(h * scale))
        return {"out": out, "aux": (h, out.mean())}


class DoReFaWeightConv2d(nn.Conv2d):
    """DoReFa-Net's k-bit weights from tanh (2 * quantize_k(tanh(w) / (2 max|tanh w|) + 0.5) - 1)
    and k-bit activations round(clamp(x, 0, 1) * n) / n."""

    def __init__(self, *args, wbits=2, abits=2, **kwargs):
        super().__init__(*args, **kwargs)
        self.wbits, self.abits = wbits, abits

    def forward(self, x):
        t = torch.tanh(self.weight)
        nw, na = 2**self.wbits - 1, 2**self.abits - 1
        w = 2 * torch.round((t / (2 * t.abs().max()) + 0.5) * nw) / nw - 1
        return F.conv2d(torch.round(torch.clamp(x, 0, 1) * na) / na, w, self.bias, self.stride, self.padding)


class ResidualReader(nn.Module):
    """Float stem, then binary conv + BN + the stem's output (the caller reads the conv module's
    input tensor after the conv module ran)."""

    def __init__(self, how):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.conv = InPlaceBinarizerConv(how, 6, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x):
        h = self.stem(x)
        return self.bn(self.conv(h)) + h
