"""Offset-binary convolution (AdaBin): weights beta_o +- alpha_o per output channel, activations
beta + alpha * s with s = +-1.

With s_a = sign(x - threshold) and s_w = sign(W - beta_o) the float layer's result is

    conv(beta + alpha s_a, beta_o + alpha_o s_w)
      = alpha alpha_o conv(s_a, s_w) + alpha beta_o conv(s_a, 1) + beta alpha_o conv(1, s_w) + beta beta_o conv(1, 1)

where 1 is all ones and the image is zero padded, so the last three terms are window sums: of
s_a over the receptive field, of s_w over the in-image taps, and the count of in-image taps.
All four are exact integers from one ``binary_conv2d`` call: the weight rows are s_w plus one
all-(+1) row per group, the batch is the input plus one all-ones image. The epilogue is

    y = multiplier * conv(s_a, s_w) + window_coefs[0] * conv(s_a, 1) + window_coefs[1] * conv(1, s_w)
        + window_coefs[2] * conv(1, 1) + bias    (per output channel o).
"""

from __future__ import annotations

import torch

from .. import ops
from ._base import per_channel, register_packed, words
from .binary import _ConvGeometry, _EpilogueBuffers, conv_output_format

__all__ = ["OffsetBinaryConv2d"]


@register_packed
class OffsetBinaryConv2d(_ConvGeometry):
    """Offset-binary 2-D convolution with zero padding (see the module docstring).

    Buffers: weight_bits int32 [O + groups, KH, KW, ceil((C/groups)/32)] (per group its O/groups
    rows of s_w, then a row of +1), threshold float32 [C], multiplier float32 [O], window_coefs
    float32 [3, O], bias float32 [O].
    """

    _config_keys = _ConvGeometry.geometry_keys + ("out_dtype",)
    epilogue_buffers = ("multiplier", "window_coefs")

    def __init__(
        self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, out_dtype="float32"
    ):
        super().__init__()
        self._init_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, out_dtype)
        kh, kw = self.kernel_size
        self.register_buffer(
            "weight_bits",
            torch.zeros(out_channels + groups, kh, kw, words(self.in_channels // self.groups), dtype=torch.int32),
        )
        self.register_buffer("threshold", torch.zeros(in_channels, dtype=torch.float32))
        self.register_buffer("window_coefs", torch.zeros(3, out_channels, dtype=torch.float32))
        _EpilogueBuffers.init(self, out_channels)

    @classmethod
    def from_weight(
        cls,
        weight,
        bias=None,
        *,
        act_scale,
        act_offset,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        threshold=None,
        out_dtype="float32",
    ):
        """Pack a float layer ``conv(act_offset + act_scale * sign(x - threshold), weight, bias)`` whose
        weight takes two values beta_o +- alpha_o in each output channel (threshold defaults to
        act_offset, as in AdaBin's sign((x - beta) / alpha))."""
        if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
            raise ValueError(
                f"weight must be a 4-D tensor [O, C/groups, KH, KW], got {getattr(weight, 'shape', weight)}"
            )
        o, cg, kh, kw = weight.shape
        m = cls(cg * groups, o, (kh, kw), stride, padding, dilation, groups, out_dtype).to(weight.device)
        w = weight.detach().double()
        hi, lo = w.amax((1, 2, 3)), w.amin((1, 2, 3))
        w_alpha, w_beta = (hi - lo) / 2, (hi + lo) / 2
        s_w = torch.where(w >= w_beta.view(-1, 1, 1, 1), 1.0, -1.0)
        rows = torch.cat(
            [
                s_w.reshape(groups, o // groups, cg, kh, kw),
                torch.ones(groups, 1, cg, kh, kw, dtype=s_w.dtype, device=s_w.device),
            ],
            1,
        )
        m.weight_bits.copy_(ops.pack_bits(rows.reshape(-1, cg, kh, kw).permute(0, 2, 3, 1), 0.0))
        a, b = float(act_scale), float(act_offset)
        m.threshold.copy_(per_channel(b if threshold is None else threshold, cg * groups, "threshold", 0.0))
        m.multiplier.copy_((a * w_alpha).float())
        m.window_coefs.copy_(torch.stack([a * w_beta, b * w_alpha, b * w_beta]).float())
        m.bias.copy_(per_channel(bias, o, "bias", 0.0))
        return m

    def window_terms(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integers int32 [4, N, O, Ho, Wo]: conv(s_a, s_w), conv(s_a, 1), conv(1, s_w), conv(1, 1)."""
        self._check_input(x)
        n, _, h, w = x.shape
        bits = ops.pack_bits(x.permute(0, 2, 3, 1), self.threshold)
        ones = ops.pack_bits(torch.ones(1, h, w, self.in_channels, device=x.device), 0.0)
        y = self._conv_bits(torch.cat([bits, ones]), 0)
        y = y.unflatten(1, (self.groups, -1))  # [N + 1, groups, O/groups + 1, Ho, Wo]
        core, ones_row = y[:, :, :-1].flatten(1, 2), y[:, :, -1:].expand(-1, -1, y.shape[2] - 1, -1, -1).flatten(1, 2)
        return torch.stack([core[:n], ones_row[:n], core[n:].expand(n, -1, -1, -1), ones_row[n:].expand(n, -1, -1, -1)])

    _window_terms_2d = window_terms  # what forward calls (the 1-D module overrides window_terms)

    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The exact binary core conv(sign(x - threshold), s_w), int32 [N, O, Ho, Wo]."""
        return self._window_terms_2d(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self._window_terms_2d(x)
        work = torch.float64 if self.out_dtype == torch.float64 else torch.float32
        coefs = torch.cat([self.multiplier.view(1, -1), self.window_coefs]).to(work).view(4, 1, -1, 1, 1)
        y = (t.to(work) * coefs).sum(0) + self.bias.to(work).view(1, -1, 1, 1)
        return conv_output_format(x, y.to(self.out_dtype))
