"""What convert() reports, and the exceptions that carry a layer's reason for being skipped."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ConversionReport", "ConversionError", "Skip", "RealWeights"]


class ConversionError(ValueError):
    """Raised by convert(strict=True) when a binary layer cannot be converted exactly."""


class Skip(Exception):
    """A layer is left in float; the message is the reason shown in the report.

    ``evidence`` (set by the planner) says why the layer is meant to be binary (its forward
    binarizes, its weights are +-alpha, its input is binary), or is None for a float layer:
    strict=True raises for the skipped layers that have evidence."""

    evidence: str | None = None


class RealWeights(Skip):
    """The layer's weights are real-valued (not +-alpha): a float layer, never an error under strict."""


@dataclass
class ConversionReport:
    """What convert() did.

    converted: qualified names of the replaced modules, in call order.
    skipped: {name: reason} for every module that made a conv/linear call and was not replaced
        (real-valued layers included, with the reason "weights are not ...").
    layers: {name: {"module": packed class, "kind": ..., "max_abs": ..., "max_rel": ...,
        "int_exact": bool}}: per-layer deviation of the packed module from the original
        module's output on the examples (max_rel is per output channel, relative to that
        channel's largest |output| plus one step of its integer result).
    notes: {name: [str]} non-fatal findings (exact-zero weights...).
    fused: {folded module name: packed module name}; a binarizer folded into the thresholds of
        several packed modules (all the readers of its output) names them joined by ", ".
    model_max_abs / model_max_rel: converted model vs original model on the examples.
    channels_last: the float layers left in the model were put in channels_last.
    """

    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    layers: dict[str, dict] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    fused: dict[str, str] = field(default_factory=dict)
    model_max_abs: float = 0.0
    model_max_rel: float = 0.0
    channels_last: bool = False

    def note(self, name: str, msg: str) -> None:
        self.notes.setdefault(name, []).append(msg)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s), skipped {len(self.skipped)}, fused {len(self.fused)}"]
        for n in self.converted:
            d = self.layers[n]
            lines.append(
                f"  + {n}: {d['module']} ({d['kind']}) max_abs={d['max_abs']:.3g} max_rel={d['max_rel']:.3g}"
                f"{'' if d['int_exact'] else ' (integer part NOT exact)'}"
            )
        for n, why in self.skipped.items():
            lines.append(f"  - {n}: {why}")
        for n, into in self.fused.items():
            lines.append(f"  * {n} folded into {into}")
        for n, msgs in self.notes.items():
            for m in msgs:
                lines.append(f"  ! {n}: {m}")
        lines.append(
            f"  model output deviation: max_abs={self.model_max_abs:.3g} max_rel={self.model_max_rel:.3g}"
            f"{'; float layers in channels_last' if self.channels_last else ''}"
        )
        return "\n".join(lines)
