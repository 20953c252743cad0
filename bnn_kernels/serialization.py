"""Save and load packed models with safetensors (never pickle).

``save(model, path)`` writes the model's state_dict plus, in the safetensors metadata, the
name, class and config() of every packed module. ``load(path, model)`` rebuilds those packed
modules inside ``model`` (an instance of the original float architecture, or an already
converted one) and loads the state: no example inputs and no float weights are needed.
``load(path)`` alone returns the tensors as a dict.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from .nn._base import PACKED_MODULES, PackedModule, float_layers_channels_last, float_layers_to

__all__ = ["save", "load", "packed_modules_meta"]

_META_KEY = "bnn_kernels.packed_modules"
_FORMAT_KEY = "bnn_kernels.format"
_FORMAT = "1"
_CHANNELS_LAST_KEY = "bnn_kernels.float_channels_last"  # the float layers were in channels_last


def packed_modules_meta(model: nn.Module) -> dict[str, dict]:
    """{qualified name: {"class": ..., "config": {...}}} of the packed modules in model."""
    return {
        name: {"class": type(m).__name__, "config": m.config()}
        for name, m in model.named_modules()
        if isinstance(m, PackedModule)
    }


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state entry {k!r} is a {type(v).__name__}; only tensors can be saved with safetensors")
        # safetensors refuses shared or non-contiguous storage: store an independent copy.
        out[k] = v.detach().to("cpu").contiguous().clone()
    return out


def save(model_or_state: nn.Module | dict, path: str | os.PathLike) -> None:
    """Write a model (state_dict + packed-module metadata) or a dict of tensors to a .safetensors file."""
    from safetensors.torch import save_file

    meta = {_FORMAT_KEY: _FORMAT}
    if isinstance(model_or_state, nn.Module):
        state = model_or_state.state_dict()
        meta[_META_KEY] = json.dumps(packed_modules_meta(model_or_state), sort_keys=True)
        if float_layers_channels_last(model_or_state):
            meta[_CHANNELS_LAST_KEY] = "1"
    elif isinstance(model_or_state, dict):
        state = model_or_state
    else:
        raise TypeError(f"save expects an nn.Module or a dict of tensors, got {type(model_or_state).__name__}")
    save_file(_tensors(state), os.fspath(path), metadata=meta)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


_WRAPPER = "module."  # what nn.DataParallel / DistributedDataParallel put before every name


def _match_wrapper_prefix(model: nn.Module, state: dict, packed: dict) -> tuple[dict, dict]:
    """state and packed with the wrappers' ``module.`` prefix removed (every name of the file has
    it, no module or tensor name of the model does) or added (the other way round); unchanged
    otherwise."""
    names = list(state) + [n for n in packed if n]
    own = [n for n, _ in model.named_modules() if n] + list(model.state_dict())

    def prefixed(ns: list[str]) -> tuple[bool, bool]:  # (all, any)
        flags = [n.startswith(_WRAPPER) or n == _WRAPPER[:-1] for n in ns]
        return bool(flags) and all(flags), any(flags)

    (file_all, file_any), (own_all, own_any) = prefixed(names), prefixed(own)
    if file_all and not own_any:

        def fix(n: str) -> str:
            return n[len(_WRAPPER) :]
    elif own_all and not file_any:

        def fix(n: str) -> str:
            return _WRAPPER + n if n else _WRAPPER[:-1]
    else:
        return state, packed
    return {fix(k): v for k, v in state.items()}, {fix(k): v for k, v in packed.items()}


def _packed_meta(path: str, meta: dict) -> dict[str, dict]:
    """The file's {name: {"class", "config"}} of packed modules, checked (ValueError naming the
    file and the entry otherwise); {} for a file without them (a plain state dict)."""
    version = meta.get(_FORMAT_KEY, _FORMAT)
    if version != _FORMAT:
        raise ValueError(f"{path}: bnn_kernels file format {version!r}; this version reads format {_FORMAT!r}")
    try:
        packed = json.loads(meta.get(_META_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the metadata {_META_KEY!r} is not valid JSON ({e})") from None
    if not isinstance(packed, dict):
        raise ValueError(f"{path}: the metadata {_META_KEY!r} must map module names to entries")
    for name, info in packed.items():
        if not (isinstance(info, dict) and isinstance(info.get("class"), str) and isinstance(info.get("config"), dict)):
            raise ValueError(f"{path}: the packed-module entry {name!r} must hold a 'class' name and a 'config' dict")
    return packed


def _place_packed(path: str, model: nn.Module, name: str, info: dict, dev: str, state: dict) -> None:
    """Put a packed module of the entry's class and config at name in model (unless one is there)."""
    cls = PACKED_MODULES.get(info["class"])
    if cls is None:
        raise ValueError(f"{path}: unknown packed module class {info['class']!r} for {name!r}")
    try:
        current = model.get_submodule(name) if name else model
    except AttributeError:
        raise ValueError(f"{path}: the model has no module named {name!r} to hold a packed {info['class']}") from None
    if type(current) is cls and current.config() == info["config"]:
        return
    if not name:
        raise ValueError(f"{path}: the root module itself is a packed {info['class']}; build it with from_config")
    _check_config_shapes(path, name, info, cls, state)
    _set_submodule(model, name, _from_config(path, name, info, cls).to(dev))


def _from_config(path: str, name: str, info: dict, cls: type) -> nn.Module:
    """cls.from_config of the entry's config, a ValueError naming the file and entry if invalid."""
    try:
        return cls.from_config(info["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: the config of {name!r} is not a valid {info['class']} config: {e}") from None


def _check_config_shapes(path: str, name: str, info: dict, cls: type, state: dict) -> None:
    """The module the entry's config describes, built on the meta device (nothing allocated),
    has the shapes of the file's tensors: a config with a wrong or huge size is refused before
    the module's buffers are allocated."""
    try:
        with torch.device("meta"):
            probe = _from_config(path, name, info, cls)
    except (RuntimeError, NotImplementedError):  # a module that cannot be built without values: load_state_dict checks
        return
    prefix = f"{name}." if name else ""
    for key, t in probe.state_dict().items():
        stored = state.get(prefix + key)
        if stored is not None and stored.shape != t.shape:
            raise ValueError(
                f"{path}: tensor {prefix + key!r} has shape {tuple(stored.shape)} in the file, but the config of "
                f"{name!r} gives a {info['class']} with shape {tuple(t.shape)}"
            )


def _check_packed_dtypes(path: str, model: nn.Module, state: dict) -> None:
    """Every tensor of a packed module has the dtype the module holds (load_state_dict would
    cast packed bits or thresholds of another dtype silently)."""
    own = model.state_dict()
    packed = [n for n, m in model.named_modules() if isinstance(m, PackedModule)]
    for key, t in state.items():
        mine = own.get(key)
        if mine is None or mine.dtype == t.dtype:
            continue
        owner = max((n for n in packed if not n or key.startswith(n + ".")), key=len, default=None)
        if owner is not None:
            raise ValueError(
                f"{path}: tensor {key!r} is {t.dtype} in the file, but the packed module "
                f"{owner or '<root>'!r} holds {mine.dtype}"
            )


def load(path: str | os.PathLike, model: nn.Module | None = None, *, strict: bool = True, device=None):
    """Read a file written by save.

    Without model: returns {name: tensor}. With model: replaces each module named in the
    file's metadata by a packed module of the recorded class and config (unless it already
    is one), loads the state dict (``strict`` as in load_state_dict) and returns the model,
    in eval mode. A file saved from a model wrapped in nn.DataParallel or
    DistributedDataParallel (every name starts with ``module.``) loads into the bare model, and
    a file of the bare model into such a wrapper: the ``module.`` prefix is matched to the model.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = os.fspath(path)
    dev = "cpu" if device is None else str(device)
    state = load_file(path, device=dev)
    if model is None:
        return state
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    packed = _packed_meta(path, meta)
    state, packed = _match_wrapper_prefix(model, state, packed)
    for name, info in sorted(packed.items(), key=lambda kv: kv[0].count(".")):
        _place_packed(path, model, name, info, dev, state)
    _check_packed_dtypes(path, model, state)
    model.load_state_dict(state, strict=strict)
    if meta.get(_CHANNELS_LAST_KEY) == "1":
        float_layers_to(model, torch.channels_last)
    return model.eval()
