"""Ops whose result is not a function of their inputs alone, for the tracking in _trace.py:
dropout (the identity when not training, which the tracking names "identity") and random draws
(a forward that calls one is random: no packed layer reproduces it)."""

from __future__ import annotations

import torch

__all__ = ["DROPOUT", "RANDOM", "op_name"]

# Dropout ops: the identity when not training (nn.Dropout in eval mode), tracked as the op
# "identity"; in training mode (F.dropout(x, p) without training=self.training) they are random,
# never elementwise.
DROPOUT = {"dropout", "alpha_dropout", "feature_alpha_dropout", "feature_dropout"} | {f"dropout{d}d" for d in (1, 2, 3)}
# Ops that draw random numbers: a forward that calls one (stochastic binarization, dropout in
# training mode) is random, which no packed layer reproduces.
RANDOM = DROPOUT | {"rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "multinomial"}
RANDOM |= {"bernoulli", "normal", "poisson", "bernoulli_", "normal_", "uniform_", "exponential_", "random_"}
RANDOM |= {"cauchy_", "log_normal_", "geometric_"}


def op_name(func, args, kwargs) -> str:
    """The op's name for the tracking: "identity" for a dropout that is not training. An ATen
    operator called directly (``torch.ops.aten.sign.default``, as the graph of
    ``torch.export(...).module()`` calls them) is named as its torch function ("sign")."""
    name = func._opname if isinstance(func, torch._ops.OpOverload) else getattr(func, "__name__", str(func))
    if name in DROPOUT:
        training = kwargs.get("training", kwargs.get("train", args[2] if len(args) > 2 else True))
        if training is False:
            return "identity"
    return name
