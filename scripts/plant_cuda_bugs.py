#!/usr/bin/env python3
"""Plants typical GPU bugs in the CUDA kernels, one at a time, in a scratch copy of csrc/, and
shows that the emulation suite (tests/cuda_emu) fails for every one: a bug counts as caught
when a family of the suite (or a GEMM path-choice run) exits non-zero (a wrong result, a
wrong path, an unwritten output, or an emulator error such as an out-of-bounds access, a
shared-memory race or a missing cp.async wait).

Usage: python scripts/plant_cuda_bugs.py [--only ID ...] [--work DIR] [--list]
Prints one line per bug and the score; exits 1 when a bug survives or cannot be planted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cuda_emu"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from snippet_match import spans  # noqa: E402

import build  # noqa: E402

MMA, POPC, GEMV = "gemm/and_gemm_mma_cuda.cu", "gemm/and_gemm_popc_cuda.cu", "gemm/and_gemm_gemv_cuda.cu"
DISPATCH, XNOR = "gemm/and_gemm_dispatch_cuda.cu", "gemm/xnor_gemm_cuda.cu"
CONV, PACK = "conv/binary_conv_cuda.cu", "pack/pack_cuda.cu"
LIN, BITS = "linear/binary_weight_linear_cuda.cu", "bitserial/bitserial_gemm_cuda.cu"
EPI = "gemm/epilogue_cuda.cu"
WCONV = "wconv/binary_weight_conv_cuda.cu"
TILE = "common/tile_store.cuh"
WGMMA = "gemm/and_gemm_wgmma_cuda.cu"
# The family that runs first for a file (default: its csrc folder's name).
FAMILY = {EPI: "fused", WGMMA: "wgmma", TILE: "wconv"}

# (id, what, file, text, replacement, occurrence: 1-based, or 0 for every occurrence)
# One bug per entry, as a table (left out of the formatter).
# fmt: off
BUGS = [
    ("mma-sync", "drop the __syncthreads of the MMA k loop", MMA, "    __syncthreads();\n", "", 1),
    ("mma-wait-1", "cp.async.wait_group one too large (waits for one group less)", MMA,
     "ptx::cp_async_wait<kStages - 2>()", "ptx::cp_async_wait<kStages - 1>()", 1),
    ("mma-stage", "next tile loaded into the stage being read", MMA,
     "load_stage(next % kStages, next)", "load_stage(kt % kStages, next)", 1),
    ("mma-zero-fill-16", "16-byte copies skip the zero-fill of rows / words past the operand", MMA,
     "ptx::cp_async16(tile + swz(r, c), src, bytes);", "if (bytes) ptx::cp_async16(tile + swz(r, c), src, bytes);", 1),
    ("mma-zero-fill-4", "4-byte copies skip the zero-fill", MMA,
     "ptx::cp_async4(tile + swz(r, w >> 2) + (w & 3) * 4, src, bytes);",
     "if (bytes) ptx::cp_async4(tile + swz(r, w >> 2) + (w & 3) * 4, src, bytes);", 1),
    ("mma-load-rows", "operand load bound off by one (row == M loaded)", MMA,
     "(gr < nrows && left > 0)", "(gr <= nrows && left > 0)", 1),
    ("mma-load-words", "16-byte copy of a partial chunk reads 4 bytes too many", MMA,
     "left >= 4 ? 16 : left * 4", "left >= 4 ? 16 : left * 4 + 4", 1),
    ("mma-load-words4", "4-byte copies: word bound off by one", MMA, "(gr < nrows && gw < words)",
     "(gr < nrows && gw <= words)", 1),
    ("mma-store-bound", "epilogue store bound off by one", MMA, "if (m < p.M && n < p.N)", "if (m <= p.M && n < p.N)", 1),
    ("mma-tail-mask", "dropped tail mask of the last k word", MMA, "const bool mask_tile = p.last_mask",
     "const bool mask_tile = false && p.last_mask", 1),
    ("mma-frag-a", "wrong ldmatrix row for A fragments", MMA, "ri + (mi & 1) * 8;", "ri + (mi >> 1) * 8;", 1),
    ("mma-frag-c", "wrong accumulator column in the epilogue", MMA, "2 * t + (r & 1);", "2 * t + (r >> 1);", 1),
    ("mma-mask-hi", "tail mask applied to the wrong fragment half", MMA, "af[i][2] &= m_hi, af[i][3] &= m_hi",
     "af[i][2] &= m_lo, af[i][3] &= m_lo", 1),
    ("mma-vec16-align", "16-byte path chosen without the leading-dimension check", MMA,
     "aligned_to(p.B, 16) && p.lda % 4 == 0 && p.ldb % 4 == 0 &&", "aligned_to(p.B, 16) &&", 1),
    ("mma-smem-attribute", "launch without raising the dynamic shared-memory limit", MMA,
     "if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes) == cudaSuccess)",
     "if (kernel != nullptr)", 1),
    ("popc-uninit-acc", "tiled accumulators left uninitialized", POPC, "int32_t acc[4][4] = {};", "int32_t acc[4][4];", 1),
    ("gemv-vec16-align", "GEMV 16-byte loads chosen without the leading-dimension check", GEMV,
     "aligned_to(p.B, 16) && p.lda % 4 == 0 && p.ldb % 4 == 0 &&", "aligned_to(p.B, 16) &&", 1),
    ("popc-sync-1", "drop the __syncthreads after the tile loads", POPC, "    __syncthreads();\n", "", 1),
    ("popc-sync-2", "drop the __syncthreads before the next tile loads", POPC, "    __syncthreads();\n  }\n",
     "  }\n", 1),
    ("popc-load-bound", "tile load row bound off by one", POPC, "if (row >= nrows || w >= words)",
     "if (row > nrows || w >= words)", 1),
    ("popc-tail-mask", "dropped tail mask in the tiled kernel", POPC, "return w == words - 1 ? (v & last_mask) : v;",
     "return v;", 1),
    ("popc-store-bound", "tiled store bound off by one", POPC, "if (m < p.M && n < p.N)", "if (m < p.M && n <= p.N)", 1),
    ("gemv-tail-mask", "GEMV drops the tail mask", GEMV, "if (w0 + j == last) bw[j] &= p.last_mask;", "", 1),
    ("gemv-shfl-mask", "missing lane in the reduction's shuffle mask", GEMV,
     "__shfl_xor_sync(0xFFFFFFFFu, acc[r], off)", "__shfl_xor_sync(0x7FFFFFFFu, acc[r], off)", 1),
    ("gemv-reduce", "reduction stops one step early", GEMV, "for (int off = 16; off > 0; off >>= 1) acc[r]",
     "for (int off = 16; off > 1; off >>= 1) acc[r]", 1),
    ("gemv-vec-tail", "16-byte path reads the word past the row end", GEMV,
     "av.z = w0 + 2 <= last ? Ar[2] : 0;", "av.z = Ar[2];", 1),
    ("gemv-early-exit", "GEMV warps past N not retired", GEMV, "  if (n >= p.N) return;\n", "", 1),
    ("rowpop-tail-mask", "row popcounts drop the tail mask", XNOR, "s += __popc(w == words - 1 ? (v & last_mask) : v);",
     "s += __popc(v);", 1),
    ("rowpop-shfl-mask", "missing lane in the row-popcount shuffle mask", XNOR, "__shfl_xor_sync(0xFFFFFFFFu, s, off)",
     "__shfl_xor_sync(0xFFFF0000u, s, off)", 1),
    ("conv-im2col-mask", "im2col drops the channel tail mask", CONV,
     "      v = fill;\n    }\n    if (j == wg - 1) v &= last;\n", "      v = fill;\n    }\n", 1),
    ("conv-im2col-h", "im2col height bound off by one", CONV, "if (ih >= 0 && ih < p.in_h &&", "if (ih >= 0 && ih <= p.in_h &&", 1),
    ("conv-funnel", "funnel shift reads the word past the pixel", CONV, "(w0 + 1 < wx ?", "(w0 + 1 <= wx ?", 1),
    ("conv-border", "border fix skips the last kernel row", CONV, "for (int64_t kh = 0; kh < p.kernel_h; ++kh) {",
     "for (int64_t kh = 0; kh + 1 < p.kernel_h; ++kh) {", 1),
    ("conv-weight-mask", "weight prep drops the tail mask", CONV, "      if (j == wg - 1) v &= last;\n", "", 1),
    ("conv-rowadd-shfl", "missing lane in the row-add shuffle mask", CONV, "__shfl_xor_sync(0xFFFFFFFFu, s, off)",
     "__shfl_xor_sync(0xFFFFFFFEu, s, off)", 1),
    ("pack-ballot-mask", "ballot mask misses lanes", PACK, "__ballot_sync(0xFFFFFFFFu, bit)", "__ballot_sync(0x0000FFFFu, bit)", 1),
    ("pack-load-bound", "pack reads one element past the row", PACK, "    if (c < k) {\n      const Thr v",
     "    if (c <= k) {\n      const Thr v", 1),
    ("planes-store-bound", "to_bitplanes writes one plane too many", PACK, "if (lane < nbits) out", "if (lane <= nbits) out", 1),
    ("unpack-store-bound", "unpack grid-stride bound off by one", PACK, "i < n; i += step)", "i <= n; i += step)", 1),
    ("linear-gemv-tail", "linear GEMV reads x past K", LIN, "        if (!full && col >= K) continue;\n", "", 1),
    ("linear-sync-1", "linear tiled: drop the __syncthreads after staging", LIN, "    __syncthreads();\n", "", 1),
    ("linear-sync-2", "linear tiled: drop the __syncthreads before restaging", LIN, "    __syncthreads();\n  }\n",
     "  }\n", 1),
    ("linear-x-bound", "linear tiled stages x without the K bound", LIN, "(m < M && col < K) ?", "(m < M) ?", 1),
    ("linear-shfl-mask", "linear GEMV broadcast with a partial mask", LIN,
     "__shfl_sync(0xFFFFFFFFu, wv[f][q], src)", "__shfl_sync(0x7FFFFFFFu, wv[f][q], src)", 1),
    ("linear-vec16-align", "linear GEMV 16-byte weight loads without the row-length check", LIN,
     "const bool vec16 = aligned_to(w, 16) && words % 4 == 0;", "const bool vec16 = aligned_to(w, 16);", 1),
    ("linear-store-bound", "linear tiled store bound off by one", LIN, "TileOut<Acc>{out, ldo, 0, M, N,",
     "TileOut<Acc>{out, ldo, 0, M + 1, N,", 1),
    ("slice-n-offset", "GEMM launch slices along N forget their column offset", DISPATCH,
     "p.C = args.C + b0 * args.c_batch + m0 * args.ldc + n0;", "p.C = args.C + b0 * args.c_batch + m0 * args.ldc;", 1),
    ("slice-batch-rows", "GEMM batch slices forget the row-add offset", DISPATCH,
     "p.row_add = args.row_add + b0 * args.row_batch + m0;", "p.row_add = args.row_add + m0;", 1),
    ("linear-slice-m", "linear GEMV row slices write to the first slice", LIN, "bias, out + ms * N);", "bias, out);", 1),
    ("conv-chunk-out", "conv pixel chunks write to the first chunk", CONV, "a.C = out + r0 * p.out_channels,",
     "a.C = out,", 1),
    ("pack-stride", "pack grid-stride loop skips words", PACK, "       i += warps) {\n    const int64_t r = i / words, w = i - r * words;\n    const int64_t c = w * 32 + lane;\n    bool bit",
     "       i += warps + 1) {\n    const int64_t r = i / words, w = i - r * words;\n    const int64_t c = w * 32 + lane;\n    bool bit", 1),
    ("bitserial-chunk", "bitserial row chunks read the first chunk's activations", BITS, "g.A = a + m0 * words,",
     "g.A = a,", 1),
    ("bitserial-bound", "bitserial epilogue bound off by one", BITS, "i < n_items;\n", "i <= n_items;\n", 1),
    ("bitserial-offset", "bitserial drops negative activation offsets", BITS, "if (reduce && a_offset != 0)",
     "if (reduce && a_offset > 0)", 1),
    ("mma-any-code", "tensor-core path chosen without checking the loaded code is sm_80+", DISPATCH,
     "if (path == GemmPath::Mma && !mma_native)", "if (path == GemmPath::Mma && false)", 1),
    ("linear-fma", "linear epilogue fused into one FMA (rounds unlike the CPU)", "common/float_rn.cuh",
     "  if (scale) dot = mul_rn(dot, scale[n]);\n",
     "  if (scale && bias) return fma(dot, scale[n], bias[n]);\n  if (scale) dot = mul_rn(dot, scale[n]);\n", 1),
    ("epi-ballot-mask", "fused epilogue: ballot mask misses a lane", EPI, "__ballot_sync(0xFFFFFFFFu, bit)",
     "__ballot_sync(0x7FFFFFFFu, bit)", 1),
    ("epi-tail", "fused epilogue: the slot at channel N computes and stores", EPI, "if (n < N) {", "if (n <= N) {", 1),
    ("epi-acc-ld", "fused epilogue reads the accumulators with the row length as leading dim", EPI,
     "acc[m * acc_ld + n]", "acc[m * N + n]", 1),
    ("epi-word", "fused epilogue: bit words of a row all stored to its first word", EPI,
     "e.bits_out[m * e.bits_ld + n / 32]", "e.bits_out[m * e.bits_ld]", 1),
    ("epi-threshold", "fused epilogue thresholds with > instead of >=", EPI, "bit = y >= e.out_threshold[n];",
     "bit = y > e.out_threshold[n];", 1),
    ("epi-half", "fused epilogue rounds float16 toward zero", EPI, "__float2half_rn(y)", "__float2half_rz(y)", 1),
    ("epi-stride", "fused epilogue grid-stride loop skips a warp of slots", EPI, "s += stride)", "s += stride + 32)", 1),
    ("epi-dual-float", "fused epilogue: no float output when bits are written too (the dual ops)", EPI,
     "if (e.out) store_float(e, m, n, y);", "if (e.out && !e.bits_out) store_float(e, m, n, y);", 1),
    ("epi-dual-half-bits", "fused epilogue: bits of the rounded float16 value beside a float16 output", EPI,
     "if (e.bits_out) bit = y >= e.out_threshold[n];",
     "if (e.bits_out) bit = (e.out_dtype == OutDtype::Float16 ? __half2float(__float2half_rn(y)) : y) >= "
     "e.out_threshold[n];", 1),
    ("wconv-sync", "binary_weight_conv2d: no barrier between staging and use", WCONV,
     "    decode_w(wo, d, k0, b0, nl, Ws);\n    __syncthreads();\n", "    decode_w(wo, d, k0, b0, nl, Ws);\n", 1),
    ("wconv-order", "binary_weight_conv2d sums a step's columns backwards (not the CPU's order)", WCONV,
     "for (int c = 0; c < kn; ++c) {", "for (int c = kn - 1; c >= 0; --c) {", 1),
    ("wconv-border", "binary_weight_conv2d gathers one column past the right border", WCONV,
     "iw >= 0 && iw < p.in_w", "iw >= 0 && iw <= p.in_w", 1),
    ("wconv-last-pixel", "binary_weight_conv2d reads rows past the last pixel", WCONV,
     "o.base[i] = pix < d.pixels ? n * p.in_h * p.in_w * p.in_channels : -1;",
     "o.base[i] = n * p.in_h * p.in_w * p.in_channels;", 1),
    ("wconv-group-weights", "binary_weight_conv2d reads group 0's weights for every group", WCONV,
     "w + (grp * d.og + n0 + nl) * d.taps * d.wg", "w + (n0 + nl) * d.taps * d.wg", 1),
    ("wconv-store-bound", "binary_weight_conv2d store bound off by one", WCONV,
     "grp * d.og, d.pixels, d.og,", "grp * d.og, d.pixels + 1, d.og,", 1),
    ("wconv-store-group", "binary_weight_conv2d stores every group's outputs at group 0's channels", WCONV,
     "TileOut<T>{out, p.out_channels, grp * d.og,", "TileOut<T>{out, p.out_channels, 0,", 1),
    ("tile-store-cols", "4x4 tile store: column bound off by one", TILE, "if (m < t.rows && n < t.cols)",
     "if (m < t.rows && n <= t.cols)", 1),
    ("tile-store-channel", "4x4 tile store scales by the tile column, not the channel", TILE,
     "finish_rn(acc[i][j], t.scale, t.bias, t.c0 + n)", "finish_rn(acc[i][j], t.scale, t.bias, n)", 1),
    ("wconv-group-channels", "binary_weight_conv2d gathers group 0's channels", WCONV,
     "* p.in_channels + grp * d.cg + ch];", "* p.in_channels + ch];", 1),
    # the sm_90a GEMM (GemmPath::Wgmma): TMA + mbarrier ring, wgmma descriptors, epilogue
    ("wgmma-swizzle", "descriptor names the 64-byte swizzle for 128-byte swizzled tiles", WGMMA,
     "uint64_t(1024 >> 4) << 32 | uint64_t(1) << 62;", "uint64_t(1024 >> 4) << 32 | uint64_t(2) << 62;", 1),
    ("wgmma-sbo", "descriptor stride between 8-row groups 512 bytes instead of 1024", WGMMA,
     "uint64_t(1024 >> 4) << 32", "uint64_t(512 >> 4) << 32", 1),
    ("wgmma-kstep", "k256 steps advance the descriptor 16 bytes instead of 32", WGMMA,
     "ptx::wgmma_b1_and<BN>(acc, da + 2 * k, db + 2 * k,", "ptx::wgmma_b1_and<BN>(acc, da + k, db + k,", 1),
    ("wgmma-fence", "no wgmma.fence before a tile's wgmma (accumulators just read by the epilogue)", WGMMA,
     "ptx::wgmma_fence();", "", 1),
    ("wgmma-fence-once", "wgmma.fence only before the first tile (later tiles follow an epilogue's reads)", WGMMA,
     "ptx::wgmma_fence();", "if (it == 0) ptx::wgmma_fence();", 1),
    ("wgmma-wait-1", "wgmma.wait_group 2 instead of 1 before releasing the previous stage", WGMMA,
     "ptx::wgmma_wait_group<1>();", "ptx::wgmma_wait_group<2>();", 1),
    ("wgmma-final-wait", "no wgmma.wait_group 0 before the epilogue reads the accumulators", WGMMA,
     "ptx::wgmma_wait_group<0>();", "", 1),
    ("wgmma-early-release", "previous stage released before the wait_group that covers its reader", WGMMA,
     "ptx::wgmma_wait_group<1>(); // the previous stage's group is done: release its stage\n"
     "      if (kt > 0) ptx::mbarrier_arrive(r.empty((it - 1) % Ring<BN>::stages));",
     "if (kt > 0) ptx::mbarrier_arrive(r.empty((it - 1) % Ring<BN>::stages));\n      ptx::wgmma_wait_group<1>();", 1),
    ("wgmma-release-current", "consumers release the stage they just issued on, not the previous one", WGMMA,
     "if (kt > 0) ptx::mbarrier_arrive(r.empty((it - 1) % Ring<BN>::stages));",
     "if (kt > 0) ptx::mbarrier_arrive(r.empty(s));", 1),
    ("wgmma-full-wait", "consumers skip the wait for the stage's TMA data", WGMMA,
     "wait_phase(r.full(s), (it / Ring<BN>::stages) & 1);", "", 1),
    ("wgmma-parity", "producer waits on the empty barrier without inverting the parity", WGMMA,
     "wait_phase(r.empty(s), ((it / Ring<BN>::stages) & 1) ^ 1);", "wait_phase(r.empty(s), (it / Ring<BN>::stages) & 1);", 1),
    ("wgmma-tx-short", "expect_tx announces 16 bytes fewer than the two boxes bring", WGMMA,
     "ptx::mbarrier_arrive_expect_tx(r.full(s), Ring<BN>::stage);",
     "ptx::mbarrier_arrive_expect_tx(r.full(s), Ring<BN>::stage - 16);", 1),
    ("wgmma-tx-long", "expect_tx announces 16 bytes more than the two boxes bring", WGMMA,
     "ptx::mbarrier_arrive_expect_tx(r.full(s), Ring<BN>::stage);",
     "ptx::mbarrier_arrive_expect_tx(r.full(s), Ring<BN>::stage + 16);", 1),
    ("wgmma-tma-misaligned", "TMA destination of A not on a 1024-byte swizzle pattern", WGMMA,
     "ptx::tma_load_2d(r.a(s), ma,", "ptx::tma_load_2d(r.a(s) + 128, ma,", 1),
    ("wgmma-mbar-fence", "no fence.mbarrier_init after the barrier inits", WGMMA, "ptx::fence_mbarrier_init();", "", 1),
    ("wgmma-tail-fix", "dirty bits past last_mask not subtracted in the epilogue", WGMMA, "if (dirty) cnt -=",
     "if (false) cnt -=", 1),
    ("wgmma-store-bound", "wgmma epilogue store bound off by one", WGMMA, "if (m < p.M && n < p.N) {",
     "if (m <= p.M && n < p.N) {", 1),
    ("wgmma-batch-rows", "tiles of later batch entries read the first entry's A rows", WGMMA,
     "tl.b * g.a_rows_per_batch + tl.m0", "tl.m0", 1),
    ("wgmma-consumer-rows", "both consumer warpgroups read the first 64 rows of A", WGMMA,
     "desc_128b(r.a(s) + wg * 64 * kKBytes)", "desc_128b(r.a(s))", 1),
    ("wgmma-any-code", "wgmma path taken without checking the loaded code is sm_90a", DISPATCH,
     "if (and_gemm_wgmma_native() && launch_and_gemm_wgmma(args, stream))", "if (launch_and_gemm_wgmma(args, stream))", 1),
    ("wgmma-fits", "wgmma path taken for batch strides that are not whole rows", WGMMA,
     "if (batch > 1 && batch_stride % ld != 0) return false;", "", 1),
]
# fmt: on


def plant(src: str, text: str, new: str, occurrence: int) -> str | None:
    """src with the occurrence-th `text` (every one for 0) replaced by `new`, matching text
    whitespace-insensitively; None when it is missing."""
    found = spans(src, text)
    if occurrence:
        if len(found) < occurrence:
            return None
        found = [found[occurrence - 1]]
    if not found:
        return None
    new = new.strip()
    for a, b in reversed(found):
        src = src[:a] + new + src[b:]
    return src


def _first_error(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(("EMU ERROR", "FAIL"))]
    return (lines or [r.stderr.strip()[-200:]])[0][:220]


def run_suite(exe: str, first: str) -> str | None:
    """The first failing run of the emulation suite ('family device seed: message'), or None.
    The family `first` (the planted file's) runs first, the whole suite when it passes, then
    the GEMM path-choice runs (build.FALLBACK). The wgmma family's extra runs (every wgmma at
    its latest point, build.WGMMA_LATE; the path by loaded code, build.WGMMA_FALLBACK) come
    right after it when it is `first`, at the end otherwise."""
    env = dict(os.environ, GCOV_PREFIX=os.path.join(os.path.dirname(exe), "gcov-discard"))

    def family(fam):
        return [
            (f"{fam} device {d} seed {s}", [fam, "--device", str(d), "--seed", str(s)]) for d, s in build.SUITE[fam]
        ]

    wgmma_extra = [
        (
            f"wgmma device {d} seed {s} (wgmma late)",
            ["wgmma", "--device", str(d), "--seed", str(s), "--wgmma-late", "1"],
        )
        for d, s in build.WGMMA_LATE
    ] + [
        (f"wgmma fallback {(d, c, w)}", [f"wgmma-fallback:{w}", "--device", str(d)] + (["--code", c] if c else []))
        for d, c, w in build.WGMMA_FALLBACK
    ]
    runs = (family(first) if first in build.SUITE else []) + (wgmma_extra if first == "wgmma" else [])
    for fam in build.SUITE:
        if fam != first:
            runs += family(fam)
    runs += [(f"fallback {case}", build.fallback_args(*case)) for case in build.FALLBACK]
    runs += [] if first == "wgmma" else wgmma_extra
    for label, argv in runs:
        try:
            r = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=300, env=env)
        except subprocess.TimeoutExpired:
            return f"{label}: timeout"
        if r.returncode != 0:
            return f"{label}: {_first_error(r)}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="bug ids to plant (default: all)")
    ap.add_argument("--work", help="scratch folder (default: a temporary one)")
    ap.add_argument("--list", action="store_true", help="list the bugs and exit")
    args = ap.parse_args()
    if args.list:
        for bid, what, path, *_ in BUGS:
            print(f"{bid:20s} {path:40s} {what}")
        return 0
    work = args.work or tempfile.mkdtemp(prefix="plant_cuda_bugs_")
    scratch, out = os.path.join(work, "csrc"), os.path.join(work, "build")
    bugs = [b for b in BUGS if not args.only or b[0] in args.only]
    caught = 0
    missing = []
    for bid, what, path, text, new, occ in bugs:
        t0 = time.time()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, "csrc"), scratch)
        target = os.path.join(scratch, path)
        with open(target) as f:
            planted = plant(f.read(), text, new, occ)
        if planted is None:
            print(f"NOT PLANTED {bid}: pattern not found in {path}", flush=True)
            missing.append(bid)
            continue
        with open(target, "w") as f:
            f.write(planted)
        try:
            exe = build.build(out, scratch)
            verdict = run_suite(exe, FAMILY.get(path, path.split("/")[0]))  # folders are named like the families
        except RuntimeError as e:  # a bug that does not compile is not a test of the suite
            print(f"NOT PLANTED {bid}: does not compile ({str(e).splitlines()[0][:120]})", flush=True)
            missing.append(bid)
            continue
        if verdict:
            caught += 1
            print(f"caught   {bid:20s} ({time.time() - t0:4.0f} s) {what}\n         -> {verdict}", flush=True)
        else:
            print(f"MISSED   {bid:20s} ({time.time() - t0:4.0f} s) {what}", flush=True)
    planted_n = len(bugs) - len(missing)
    print(f"\nscore: {caught}/{planted_n} planted bugs caught" + (f", {len(missing)} not planted" if missing else ""))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if caught == planted_n and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
