"""XNOR-popcount GEMM on packed rows, with the fused epilogue."""

from __future__ import annotations

import torch

from .. import _native
from .._args import words
from ._checks import check_bits, check_epilogue, check_epilogue_dual, check_k, register_fake

__all__ = ["xnor_gemm", "xnor_gemm_dual"]

EPILOGUE_DOC = """
    Fused epilogue (keyword-only; csrc/common/epilogue.h is its one definition). For output
    row m and channel n, with acc the exact integer result, in float32, each step rounded on
    its own (never an FMA), in this order:

        y = float(acc) * multiplier[n] + bias[n] + residual[m, n]
        t = y + act_shift_in[n];  t = t if t > 0 else act_slope[n] * t;  y = t + act_shift_out[n]

    Absent steps are skipped (the shifts need act_slope: PReLU, or RPReLU with the shifts).
    The result is bit-identical to that unfused torch sequence (bnn_kernels.reference.epilogue).

    Args (all optional; per-channel vectors are float32 [N]):
        multiplier, bias: per-channel scale and bias (e.g. a folded BatchNorm).
        residual: float32 of the float output's shape, added after the bias.
        act_slope, act_shift_in, act_shift_out: PReLU slope and RPReLU shifts.
        out_dtype: torch.float32 (the default when any float step is given), torch.float16 or
            torch.bfloat16: y rounded once to it (to nearest even). torch.int32 (only without
            float steps) is the raw result, as with no argument at all.
        out_threshold: float32 [N]: return the packed bits of y >= out_threshold[n] instead,
            int32 words, 32 channels per word, LSB first, tail bits 0: the canonical format the
            next binary layer reads. Excludes out_dtype. For both the float output and the bits
            from one call, use the op's ``_dual`` form (xnor_gemm_dual, binary_conv2d_dual).

    NaN: NaN propagates through the float steps (payload unspecified) and compares false
    with the threshold (bit 0, i.e. -1), as pack_bits does; inf follows IEEE float32.
"""


def xnor_gemm(
    a_bits: torch.Tensor,
    b_bits: torch.Tensor,
    k: int,
    *,
    multiplier: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    act_slope: torch.Tensor | None = None,
    act_shift_in: torch.Tensor | None = None,
    act_shift_out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    out_threshold: torch.Tensor | None = None,
) -> torch.Tensor:
    """sign(A) @ sign(B).T exactly, for packed A [M, W] and B [N, W] of k bits per row, then
    the optional fused epilogue.

    Args:
        a_bits: int32 [M, ceil(k/32)], rows packed by pack_bits.
        b_bits: int32 [N, ceil(k/32)].
        k: number of valid bits per row (1 <= k <= 32 * W). Bits past k are ignored.

    Returns:
        Without epilogue arguments: int32 [M, N] with entries k - 2 * popcount(a ^ b), in
        [-k, k]. With float steps or out_dtype: [M, N] of out_dtype (residual: float32
        [M, N]). With out_threshold: int32 [M, ceil(N/32)] packed bits.
    """
    return _native.ops().xnor_gemm(
        a_bits,
        b_bits,
        k,
        multiplier=multiplier,
        bias=bias,
        residual=residual,
        act_slope=act_slope,
        act_shift_in=act_shift_in,
        act_shift_out=act_shift_out,
        out_dtype=out_dtype,
        out_threshold=out_threshold,
    )


xnor_gemm.__doc__ += EPILOGUE_DOC


@register_fake("xnor_gemm")
def _xnor_gemm_fake(a_bits, b_bits, k, **epilogue):
    check_bits(a_bits, "a_bits", 2)
    check_bits(b_bits, "b_bits", 2)
    torch._check(a_bits.shape[1] == b_bits.shape[1], lambda: "a_bits and b_bits must have the same words per row")
    check_k(k, a_bits, "a_bits")
    m, n = a_bits.shape[0], b_bits.shape[0]
    kind, dtype = check_epilogue(a_bits, n, (m, n), **epilogue)
    return a_bits.new_empty((m, words(n)) if kind == "bits" else (m, n), dtype=dtype)


DUAL_DOC = """
    The dual form computes the op and its fused epilogue once and writes two outputs from the
    same float32 y: the float output (out_dtype, float32 by default; y rounded once) and the
    packed bits of y >= out_threshold (required here). The bits are those of the op's
    out_threshold form; with a float32 output they are also pack_bits(float output, channel
    threshold out_threshold) over the channels. It replaces the op followed by pack_bits of its
    output where a layer's result feeds both float consumers (a residual, a cat) and the next
    binary layer, and saves re-reading the float output.
"""


def xnor_gemm_dual(
    a_bits: torch.Tensor,
    b_bits: torch.Tensor,
    k: int,
    *,
    multiplier: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    act_slope: torch.Tensor | None = None,
    act_shift_in: torch.Tensor | None = None,
    act_shift_out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    out_threshold: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """xnor_gemm with its epilogue, returning both (float [M, N] of out_dtype, packed bits int32
    [M, ceil(N/32)]). Arguments as xnor_gemm's; out_threshold (float32 [N]) is required and
    out_dtype is a float dtype (default torch.float32).
    """
    return _native.ops().xnor_gemm_dual(
        a_bits,
        b_bits,
        k,
        multiplier=multiplier,
        bias=bias,
        residual=residual,
        act_slope=act_slope,
        act_shift_in=act_shift_in,
        act_shift_out=act_shift_out,
        out_dtype=out_dtype,
        out_threshold=out_threshold,
    )


xnor_gemm_dual.__doc__ += DUAL_DOC + EPILOGUE_DOC


@register_fake("xnor_gemm_dual")
def _xnor_gemm_dual_fake(a_bits, b_bits, k, **epilogue):
    check_bits(a_bits, "a_bits", 2)
    check_bits(b_bits, "b_bits", 2)
    torch._check(a_bits.shape[1] == b_bits.shape[1], lambda: "a_bits and b_bits must have the same words per row")
    check_k(k, a_bits, "a_bits")
    m, n = a_bits.shape[0], b_bits.shape[0]
    dtype = check_epilogue_dual(a_bits, n, (m, n), **epilogue)
    return a_bits.new_empty((m, n), dtype=dtype), a_bits.new_empty((m, words(n)), dtype=torch.int32)
