"""Shared machinery of the packed modules: config, registry, activation quantizers, epilogue.

Every packed module stores its numbers as buffers (packed int32 weights, float32 multiplier,
bias and thresholds) and its hyper-parameters as plain attributes returned by ``config()``.
``type(m).from_config(m.config())`` builds an empty module of the same shapes, so a
state_dict (or a safetensors file written by ``bnn_kernels.save``) can be loaded into it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import ops
from .._args import pair, words  # noqa: F401  (re-exported to the packed modules)

__all__ = ["PackedModule", "Folded", "PACKED_MODULES", "register_packed", "dtype_name", "dtype_from_name"]

PACKED_MODULES: dict[str, type[PackedModule]] = {}

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def dtype_name(dtype: torch.dtype) -> str:
    for k, v in _DTYPES.items():
        if v == dtype:
            return k
    raise ValueError(f"out_dtype must be one of {sorted(_DTYPES)}, got {dtype}")


def dtype_from_name(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        dtype_name(name)  # validates
        return name
    if name not in _DTYPES:
        raise ValueError(f"out_dtype must be one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


def register_packed(cls):
    """Class decorator: makes cls known to bnn_kernels.load by its name."""
    PACKED_MODULES[cls.__name__] = cls
    return cls


def positive_int(v, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    return v


def per_channel(v, n: int, name: str, default: float) -> torch.Tensor:
    """A number, None or a tensor of n elements (any shape) -> float32 [n]."""
    if v is None:
        return torch.full((n,), float(default), dtype=torch.float32)
    if isinstance(v, torch.Tensor):
        t = v.detach().to(torch.float32)
        if t.numel() == 1:
            return t.reshape(1).expand(n).clone()
        if t.numel() != n:
            raise ValueError(
                f"{name} must be a number or hold {n} values (one per channel), got shape {tuple(v.shape)}"
            )
        return t.reshape(n).clone()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number or a tensor, got {type(v).__name__}")
    return torch.full((n,), float(v), dtype=torch.float32)


def mean_abs_scale(weight: torch.Tensor) -> torch.Tensor:
    """XNOR-Net's per-output-channel scale: mean |w| over all but the first dim, float32 [O]."""
    return weight.detach().abs().reshape(weight.shape[0], -1).mean(1).to(torch.float32)


def resolve_scale(scale, weight: torch.Tensor) -> torch.Tensor:
    """scale=None -> 1, 'mean_abs' -> mean |w| per output channel, number/tensor -> per channel."""
    if isinstance(scale, str):
        if scale != "mean_abs":
            raise ValueError(f"scale must be None, 'mean_abs', a number or a tensor, got {scale!r}")
        return mean_abs_scale(weight)
    return per_channel(scale, weight.shape[0], "scale", 1.0)


def weight_rows(weight: torch.Tensor, ternary: bool, groups: int = 1) -> torch.Tensor:
    """The rows packed by sign (bit = w >= 0): the weight itself, or for ternary weights
    {-a, 0, +a} the +-1 rows P of (w > 0) and N of (w < 0), [2 * O, ...], in each group its P rows
    then its N rows, so that W = (P - N) / 2 and every product with it is exact (combine_ternary)."""
    w = weight.detach()
    if not ternary:
        return w
    one = torch.ones_like(w)
    p, n = torch.where(w > 0, one, -one), torch.where(w < 0, one, -one)
    g = p.reshape(groups, -1, *w.shape[1:])
    return torch.cat([g, n.reshape(g.shape)], 1).reshape(2 * w.shape[0], *w.shape[1:])


def combine_ternary(y: torch.Tensor, dim: int, groups: int = 1) -> torch.Tensor:
    """int32 results of the 2 * O rows of weight_rows(w, True, groups) along dim -> those of W:
    (y_P - y_N) / 2 (exact: the difference is even)."""
    dim = dim % y.dim()
    y = y.unflatten(dim, (groups, 2, -1))
    d = y.select(dim + 1, 0) - y.select(dim + 1, 1)
    return torch.div(d.flatten(dim, dim + 1), 2, rounding_mode="floor")


def check_bool(v, name: str) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{name} must be a bool, got {v!r}")
    return v


def check_float_input(x: torch.Tensor, name: str, dims: int | None, features: int, feature_dim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: input must be a tensor, got {type(x).__name__}")
    if dims is not None and x.dim() != dims:
        raise ValueError(f"{name}: input must have {dims} dims, got shape {tuple(x.shape)}")
    if x.dim() == 0 or x.shape[feature_dim] != features:
        raise ValueError(
            f"{name}: input must have {features} features in dim {feature_dim}, got shape {tuple(x.shape)}"
        )


class PackedModule(nn.Module):
    """Base of the packed modules: config() / from_config(), extra_repr from config."""

    _config_keys: tuple[str, ...] = ()
    # buffers holding per-output-channel factors of the result (scaled together when an affine
    # map such as a BatchNorm is folded in; ``bias`` is the shift)
    epilogue_buffers: tuple[str, ...] = ("multiplier",)

    def config(self) -> dict[str, Any]:
        """JSON-serializable hyper-parameters; from_config(config()) rebuilds the shapes."""
        out = {}
        for k in self._config_keys:
            v = getattr(self, k)
            if isinstance(v, torch.dtype):
                v = dtype_name(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[k] = v
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**config)

    def extra_repr(self) -> str:
        parts = []
        for k, v in self.config().items():
            parts.append(f"{k}={tuple(v) if isinstance(v, list) else v}")
        return ", ".join(parts)

    # -- epilogue -------------------------------------------------------------------------
    def _epilogue(
        self, y_int: torch.Tensor, channel_dim: int, path_dim: int | None = None, reduce: bool = False
    ) -> torch.Tensor:
        """float(y_int) * multiplier + bias (per channel along channel_dim, and per path along
        path_dim when multiplier and bias are [paths, channels]), summed over path_dim when
        reduce, cast to out_dtype."""
        shape = [1] * y_int.dim()
        shape[channel_dim] = -1
        if path_dim is not None:
            shape[path_dim] = self.multiplier.shape[0]
        work = torch.float64 if self.out_dtype == torch.float64 else torch.float32
        y = torch.addcmul(self.bias.to(work).view(shape), y_int.to(work), self.multiplier.to(work).view(shape))
        if path_dim is not None and reduce:
            y = y.sum(path_dim)
        return y.to(self.out_dtype)


def check_act(act: str, nbits: int, allowed: tuple[str, ...]) -> None:
    """Validates how a packed module turns its float input into bits.

    act "sign":  bit = x >= threshold[c]; the value is +1 for bit 1, -1 for bit 0.
    act "step":  bit = x >= threshold[c]; the value is 1 for bit 1, 0 for bit 0 (Heaviside).
    act "round": q = clamp(round(x * in_mul), 0, 2**nbits - 1), an unsigned nbits integer
                 (DoReFa / PACT style; in_mul is 1/step of the grid).
    """
    if act not in allowed:
        raise ValueError(f"act must be one of {allowed}, got {act!r}")
    if act in ("sign", "step") and nbits != 1:
        raise ValueError(f"act={act!r} gives 1 bit per value; nbits must be 1, got {nbits}")
    if not (1 <= nbits <= 8):
        raise ValueError(f"nbits must be in [1, 8], got {nbits}")


def quantize_round(x: torch.Tensor, in_mul: torch.Tensor, nbits: int) -> torch.Tensor:
    """clamp(round(x * in_mul), 0, 2**nbits - 1) as int32, computed in x's dtype."""
    q = torch.round(x * in_mul.to(x.dtype))
    return torch.clamp(q, 0, 2**nbits - 1).to(torch.int32)


def planes_of(
    x_last: torch.Tensor, act: str, threshold: torch.Tensor, in_mul: torch.Tensor, nbits: int
) -> torch.Tensor:
    """x [..., C] (channels last) -> packed bit planes [P, ..., ceil(C/32)] of the quantized values."""
    if act in ("sign", "step"):
        return ops.pack_bits(x_last, threshold).unsqueeze(0)
    return ops.to_bitplanes(quantize_round(x_last, in_mul, nbits), nbits)


@register_packed
class Folded(PackedModule):
    """Identity left where a module (BatchNorm, per-channel scale) was folded into a packed
    module's epilogue by ``bnn_kernels.convert``; ``into`` names that packed module."""

    _config_keys = ("into",)

    def __init__(self, into: str = ""):
        super().__init__()
        self.into = str(into)

    def forward(self, x):
        return x


def float_4d_tensors(model: nn.Module):
    """The 4-D parameters and buffers of the modules that are not packed (the float layers')."""
    for m in model.modules():
        if isinstance(m, PackedModule):
            continue
        for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
            if t.dim() == 4:
                yield t


def float_layers_to(model: nn.Module, memory_format: torch.memory_format) -> None:
    """The 4-D parameters and buffers of the modules that are not packed to memory_format, in place."""
    for t in float_4d_tensors(model):
        t.data = t.data.contiguous(memory_format=memory_format)


def float_layers_channels_last(model: nn.Module) -> bool:
    """Some 4-D parameter of a module that is not packed is in channels_last (and not contiguous)."""
    return any(
        t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
        for m in model.modules()
        if not isinstance(m, PackedModule)
        for t in m.parameters(recurse=False)
    )
