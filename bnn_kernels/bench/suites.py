"""Benchmark suites: each returns Results for bnn_kernels and its baselines, timed side by side.

Baselines: on a GPU, torch.matmul fp16/bf16 (cuBLAS), torch._int_mm int8 (cuBLASLt) and
F.conv2d fp16 channels_last (cuDNN); on the CPU, the same ops in float32.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import bnn_kernels as bk
from bnn_kernels import reference as R

from .harness import Progress, Result, rotation_count, time_fn
from .model import bench_model
from .model import case_count as model_case_count

# Problem sets. GPU sets are larger; --shapes on the command line overrides the squares.
SQUARES = {"cpu": [1024, 2048, 4096], "cuda": [1024, 2048, 4096, 8192, 16384]}
# (label, M, N, K): BNN layers as GEMMs (batch*H*W, out, in*KH*KW) and LLM linear layers.
GEMM_LAYERS = [
    ("resnet18 l3 3x3 b64", 64 * 14 * 14, 256, 256 * 9),
    ("resnet18 l4 3x3 b64", 64 * 7 * 7, 512, 512 * 9),
    ("llm 4096x4096 t16", 16, 4096, 4096),
    ("llm 4096x11008 t2048", 2048, 11008, 4096),
]
# (label, C_in, C_out, H, stride): ResNet-18 3x3 stages and ReActNet-A style layers.
CONV_LAYERS = [
    ("resnet18 l1", 64, 64, 56, 1),
    ("resnet18 l2", 128, 128, 28, 1),
    ("resnet18 l3", 256, 256, 14, 1),
    ("resnet18 l4", 512, 512, 7, 1),
    ("resnet18 l2 down", 64, 128, 56, 2),
    ("reactnet 3x3 32", 32, 32, 112, 1),
    ("reactnet 3x3 128", 128, 128, 56, 1),
    ("reactnet 3x3 512", 512, 512, 14, 1),
]
BATCHES = {"cpu": [1, 8], "cuda": [1, 64, 256]}
# (label, M, N, K): bit-serial layers as GEMMs, 3136 pixels (56x56) by 3x3 convs of 64..512 channels.
BITSERIAL_LAYERS = [(f"M=3136 N={c} K={9 * c}", 3136, c, 9 * c) for c in (64, 128, 256, 512)]
BITSERIAL_CASES = [(1, 2), (1, 4), (2, 2)]  # (weight bits, activation bits), each against W1A1


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _check_rows(got: torch.Tensor, want_fn: Callable[[torch.Tensor], torch.Tensor], m: int, full_limit: int) -> bool:
    """Compares got with the reference, on every row when small, else on 64 random rows."""
    rows = torch.arange(m) if m <= full_limit else torch.randperm(m)[:64].sort().values
    want = want_fn(rows)
    if not torch.equal(got[rows.to(got.device)].cpu(), want.cpu()):
        raise AssertionError("result differs from bnn_kernels.reference: benchmark aborted")
    return True


def _float_types(device: torch.device) -> list[torch.dtype]:
    return [torch.float16, torch.bfloat16] if device.type == "cuda" else [torch.float32]


def _int8_mm_ok(device: torch.device) -> bool:
    return device.type == "cuda" and hasattr(torch, "_int_mm")


def gemm_cases(device, shapes=None, layers=True):
    squares = shapes or SQUARES[device.type]
    cases = [(f"square {s}", s, s, s) for s in squares]
    return cases + (GEMM_LAYERS if layers and shapes is None else [])


def bench_gemm(device: torch.device, progress: Progress, shapes=None, repeats=20) -> list[Result]:
    out = []
    for label, m, n, k in gemm_cases(device, shapes):
        progress.step(f"gemm {label} M={m} N={n} K={k}")
        case = f"{label} ({m}x{n}x{k})" if not label.startswith("square") else f"M=N=K={m}"
        work = 2.0 * m * n * k
        sets = rotation_count((m + n) * math.ceil(k / 32) * 4, device)
        a = [bk.pack_bits(torch.randn(m, k, device=device)) for _ in range(sets)]
        b = [bk.pack_bits(torch.randn(n, k, device=device)) for _ in range(sets)]
        y = bk.xnor_gemm(a[0], b[0], k)
        ok = _check_rows(y, lambda r: R.xnor_gemm(a[0][r.to(device)].cpu(), b[0].cpu(), k), m, 512)
        t_ours = time_fn(lambda i: bk.xnor_gemm(a[i % sets], b[i % sets], k), device, repeats=repeats)
        ours = Result("gemm", case, "bnn_kernels.xnor_gemm", str(device), t_ours, work, "OPS", ok)
        out.append(ours)
        for dt in _float_types(device):
            fs = rotation_count((m + n) * k * dt.itemsize, device, cap=8)
            fa = [_sign(torch.randn(m, k, device=device)).to(dt) for _ in range(fs)]
            fb = [_sign(torch.randn(n, k, device=device)).to(dt) for _ in range(fs)]
            t = time_fn(lambda i: fa[i % fs] @ fb[i % fs].T, device, repeats=repeats)
            out.append(Result("gemm", case, f"torch.matmul {str(dt)[6:]}", str(device), t, work, "OPS", False))
            out.append(_vs(ours, out[-1]))
        if _int8_mm_ok(device) and m >= 17:
            ia = torch.randint(-1, 2, (m, k), device=device, dtype=torch.int8)
            ib = torch.randint(-1, 2, (k, n), device=device, dtype=torch.int8)
            t = time_fn(lambda i: torch._int_mm(ia, ib), device, repeats=repeats)
            out.append(Result("gemm", case, "torch._int_mm int8", str(device), t, work, "OPS", False))
            out.append(_vs(ours, out[-1]))
    return _collapse(out)


def _vs(ours: Result, base: Result) -> Result:
    """A comparison row: ours against one baseline (kept separate so each baseline gets a ratio)."""
    return Result(
        ours.suite,
        ours.case,
        ours.impl,
        ours.device,
        ours.ms,
        ours.work,
        ours.unit,
        ours.checked,
        baseline=base.impl,
        speedup=base.ms / ours.ms,
        ceiling=ours.ceiling,
        note=ours.note,
    )


def _collapse(rows: list[Result]) -> list[Result]:
    """Drops the plain row of ours when comparison rows of the same case follow."""
    compared = {(r.case, r.impl) for r in rows if r.baseline}
    return [r for r in rows if r.baseline or (r.case, r.impl) not in compared]


def bench_conv(device: torch.device, progress: Progress, batches=None, repeats=10) -> list[Result]:
    out = []
    batches = batches or BATCHES[device.type]
    for label, cin, cout, h, stride in CONV_LAYERS:
        for nb in batches:
            progress.step(f"conv {label} batch {nb}")
            case = f"{label} {nb}x{cin}x{h}x{h} s{stride}"
            ho = (h + 2 - 3) // stride + 1
            work = 2.0 * nb * cout * ho * ho * cin * 9
            x = torch.randn(nb, cin, h, h, device=device)
            w = torch.randn(cout, cin, 3, 3, device=device)
            xb, wb = bk.pack_bits(x.permute(0, 2, 3, 1)), bk.pack_bits(w.permute(0, 2, 3, 1))
            y = bk.binary_conv2d(xb, wb, cin, stride=stride, padding=1)
            first = slice(0, 1)
            want = R.binary_conv2d(xb[first].cpu(), wb.cpu(), cin, stride, 1, 1, 1, 0)
            if not torch.equal(y[first].cpu(), want):
                raise AssertionError(f"binary_conv2d differs from the reference on {case}")
            t_ours = time_fn(lambda i: bk.binary_conv2d(xb, wb, cin, stride=stride, padding=1), device, repeats=repeats)
            ours = Result("conv", case, "bnn_kernels.binary_conv2d", str(device), t_ours, work, "OPS", True)
            out += _conv_path_rows(ours, xb, wb, cin, stride, work, device, repeats)
            for dt in _float_types(device)[:1]:
                sx = _sign(x).to(dt).contiguous(memory_format=torch.channels_last)
                sw = _sign(w).to(dt).contiguous(memory_format=torch.channels_last)
                t = time_fn(lambda i: F.conv2d(sx, sw, stride=stride, padding=1), device, repeats=repeats)
                out.append(
                    _vs(ours, Result("conv", case, f"F.conv2d {str(dt)[6:]} NHWC", str(device), t, work, "OPS", False))
                )
                out.append(Result("conv", case, f"F.conv2d {str(dt)[6:]} NHWC", str(device), t, work, "OPS", False))
            out += _binary_weight_conv_rows(case, x, w, wb, stride, work, device, repeats)
    return out


GEMM_CONV = "bnn_kernels.binary_conv2d implicit GEMM"


def _conv_path_rows(ours, xb, wb, cin, stride, work, device, repeats) -> list[Result]:
    """Where the CPU conv runs the direct kernel, the implicit GEMM (BNN_KERNELS_CONV_PATH=gemm)
    timed in turns with it in the same run: the comparison row (ours against the GEMM)."""
    if device.type != "cpu" or not bk.cpu_conv_path().startswith("direct"):
        return []
    old = os.environ.get("BNN_KERNELS_CONV_PATH")

    def run(path):
        os.environ["BNN_KERNELS_CONV_PATH"] = path
        return bk.binary_conv2d(xb, wb, cin, stride=stride, padding=1)

    try:
        if not torch.equal(run("gemm"), run("auto")):
            raise AssertionError(f"the direct and GEMM conv kernels differ on {ours.case}")
        t = _time_in_turns({"direct": lambda: run("auto"), "gemm": lambda: run("gemm")}, device, repeats)
    finally:
        if old is None:
            os.environ.pop("BNN_KERNELS_CONV_PATH", None)
        else:
            os.environ["BNN_KERNELS_CONV_PATH"] = old
    gemm = Result("conv", ours.case, GEMM_CONV, str(device), t["gemm"], work, "OPS", True)
    direct = dataclasses.replace(ours, ms=t["direct"], note="direct kernel, timed in turns with the GEMM")
    return [gemm, _vs(direct, gemm)]


def _binary_weight_conv_rows(case, x, w, wb, stride, work, device, repeats) -> list[Result]:
    """binary_weight_conv2d (binary weights, real float32 x, NHWC) against F.conv2d float32 with the
    unpacked weights, both 3x3 padding 1, checked against the float64 reference on one image."""
    cin = x.shape[1]
    xr = x.contiguous(memory_format=torch.channels_last)
    scale = torch.rand(w.shape[0], device=device) + 0.5
    wf = (_sign(w) * scale.view(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
    y = bk.binary_weight_conv2d(xr, wb, cin, stride, 1, multiplier=scale)
    want = R.binary_weight_conv2d(xr[:1].cpu().double(), wb.cpu(), cin, stride, 1, multiplier=scale.cpu())
    err = ((y[:1].cpu().double() - want).abs().max() / (want.abs().max() + 1e-6)).item()
    if err > 1e-4:
        raise AssertionError(f"binary_weight_conv2d relative error {err:.2e} > 1e-4 on {case}")
    t_ours = time_fn(
        lambda i: bk.binary_weight_conv2d(xr, wb, cin, stride, 1, multiplier=scale), device, repeats=repeats
    )
    t_base = time_fn(lambda i: F.conv2d(xr, wf, stride=stride, padding=1), device, repeats=repeats)
    base = Result("conv", case, "F.conv2d float32 NHWC (real x)", str(device), t_base, work, "OPS", False)
    ours = Result("conv", case, "bnn_kernels.binary_weight_conv2d", str(device), t_ours, work, "OPS", True)
    return [_vs(ours, base), base]


def bench_linear(device: torch.device, progress: Progress, size=None, rows=None, repeats=20) -> list[Result]:
    out = []
    n = k = size or (16384 if device.type == "cuda" else 4096)
    rows = rows or [1, 4, 16, 64, 256]
    w = torch.randn(n, k, device=device)
    wb = bk.pack_bits(w)
    scale = torch.rand(n, device=device) + 0.5
    dt = _float_types(device)[0]
    wf = (_sign(w) * scale[:, None]).to(dt)
    for m in rows:
        progress.step(f"linear {m}x{k} -> {n}")
        case = f"rows={m} {k}->{n}"
        x = torch.randn(m, k, device=device, dtype=dt)
        y = bk.binary_weight_linear(x, wb, k, scale)
        want = R.binary_weight_linear(x.cpu(), wb.cpu(), k, scale.cpu())
        tol = 2e-3 if dt == torch.float32 else 3e-2
        err = ((y.cpu().double() - want.double()).abs().max() / (want.double().abs().max() + 1e-6)).item()
        if err > tol:
            raise AssertionError(f"binary_weight_linear relative error {err:.2e} > {tol} on {case}")
        work = 2.0 * m * n * k
        t_ours = time_fn(lambda i: bk.binary_weight_linear(x, wb, k, scale), device, repeats=repeats)
        t_base = time_fn(lambda i: x @ wf.T, device, repeats=repeats)
        base = Result("linear", case, f"torch.matmul {str(dt)[6:]}", str(device), t_base, work, "OPS", False)
        ours = Result("linear", case, "bnn_kernels.binary_weight_linear", str(device), t_ours, work, "OPS", True)
        out += [_vs(ours, base), base]
        if m <= 16:  # memory-bound: the bytes moved, against the copy bandwidth (bench peak)
            moved = wb.numel() * 4 + x.numel() * x.element_size() + m * n * x.element_size()
            out.append(
                Result(
                    "linear",
                    case,
                    "bnn_kernels.binary_weight_linear (bytes)",
                    str(device),
                    t_ours,
                    float(moved),
                    "B",
                    True,
                )
            )
    return out


def _time_in_turns(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Min milliseconds of each fn over `repeats` rounds that run every fn once, in turn
    (a, b, c, a, b, c, ...): load from other processes hits all of them alike, so their
    ratios hold on a busy machine where absolute times do not."""
    for f in fns.values():  # warm-up
        f()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, f in fns.items():
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                f()
                end.record()
                end.synchronize()
                ms = start.elapsed_time(end)
            else:
                t = time.perf_counter()
                f()
                ms = (time.perf_counter() - t) * 1e3
            best[name] = min(best[name], ms)
    return best


def _bitserial_case(device: torch.device, m: int, n: int, k: int, wbits: int, abits: int):
    """Unsigned abits-bit activations against +-1 weights (wbits = 1) or signed wbits-bit ones,
    checked against the reference; returns the bitserial_gemm call and the decoded values."""
    qa = torch.randint(0, 2**abits, (m, k), device=device)
    if wbits == 1:
        qw, wc, wo = torch.randint(0, 2, (n, k), device=device), [2], -1  # w = 2 * bit - 1
    else:
        qw = torch.randint(-(2 ** (wbits - 1)), 2 ** (wbits - 1), (n, k), device=device)
        wc, wo = [2**p for p in range(wbits - 1)] + [-(2 ** (wbits - 1))], 0
    ap, wp = bk.to_bitplanes(qa, abits), bk.to_bitplanes(qw, wbits, signed=wbits > 1)
    ac = [2**p for p in range(abits)]
    y = bk.bitserial_gemm(ap, wp, k, ac, wc, 0, wo)
    _check_rows(y, lambda r: R.bitserial_gemm(ap[:, r.to(device)].cpu(), wp.cpu(), k, ac, wc, 0, wo), m, 256)
    return (lambda: bk.bitserial_gemm(ap, wp, k, ac, wc, 0, wo)), qa, qw


def bench_bitserial(device: torch.device, progress: Progress, size=None, repeats=10) -> list[Result]:
    """W1A1 (xnor_gemm) and bitserial_gemm W1A2, W1A4, W2A2 at the same M, N, K, timed in turns
    (min of the rounds): each bit-serial row reports its time as a multiple of W1A1's in the
    same run. On the square s^3 also the float (or int8) matmul of the decoded values."""
    s = size or (8192 if device.type == "cuda" else 2048)
    out = []
    for label, m, n, k in [(f"{s}^3", s, s, s)] + BITSERIAL_LAYERS:
        progress.step(f"bitserial {label}")
        square, work = label == f"{s}^3", 2.0 * m * n * k
        a1, b1 = bk.pack_bits(torch.randn(m, k, device=device)), bk.pack_bits(torch.randn(n, k, device=device))
        _check_rows(bk.xnor_gemm(a1, b1, k), lambda r: R.xnor_gemm(a1[r.to(device)].cpu(), b1.cpu(), k), m, 256)
        fns, base_fns = {"W1A1": lambda: bk.xnor_gemm(a1, b1, k)}, {}
        for wbits, abits in BITSERIAL_CASES:
            name = f"W{wbits}A{abits}"
            fns[name], qa, qw = _bitserial_case(device, m, n, k, wbits, abits)
            if square and _int8_mm_ok(device):
                ia, ib = qa.to(torch.int8), qw.to(torch.int8).T.contiguous().T
                base_fns[name] = ("torch._int_mm int8", lambda ia=ia, ib=ib: torch._int_mm(ia, ib.T))
            elif square:
                fa, fw = qa.float(), qw.float()
                base_fns[name] = ("torch.matmul float32", lambda fa=fa, fw=fw: fa @ fw.T)
        t = _time_in_turns(fns, device, repeats)
        # Apart: a float GEMM's worker threads still spin after it returns and would slow the next run.
        t.update(_time_in_turns({f"base {c}": f for c, (_, f) in base_fns.items()}, device, repeats))
        note = f"min of {repeats} runs in turns"

        def row(case, impl, ms, checked, note=note):
            return Result("bitserial", case, impl, str(device), ms, work, "OPS", checked, note=note)

        w1a1 = row(f"W1A1 {label}", "bnn_kernels.xnor_gemm", t["W1A1"], True)
        out.append(w1a1)
        for name in list(fns)[1:]:
            ours = row(f"{name} {label}", "bnn_kernels.bitserial_gemm", t[name], True)
            out.append(
                _vs(dataclasses.replace(ours, note=f"{t[name] / t['W1A1']:.2f}x the time of W1A1; {note}"), w1a1)
            )
            if name in base_fns:
                base = row(ours.case, base_fns[name][0], t[f"base {name}"], False)
                out += [_vs(ours, base), base]
    return out


def bench_peak(device: torch.device, progress: Progress, size=None, repeats=10) -> list[Result]:
    """Ceilings measured on the device in hand: copy bandwidth, dense float (and int8) matmul,
    and the best popcount rate of our own kernel on a cache-resident problem (a lower bound
    on the popcount ceiling). size sets the matmul size s (copy: 16*s*s bytes; popcount
    GEMM: s/4 x s/4 x 8s)."""
    out = []
    s = size or (8192 if device.type == "cuda" else 2048)
    nbytes = max(16 * s * s, 64 << 20) if size else ((1 << 30) if device.type == "cuda" else (256 << 20))
    progress.step("peak: copy bandwidth")
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = time_fn(lambda i: dst.copy_(src), device, repeats=repeats)
    out.append(
        Result(
            "peak",
            f"copy {nbytes / 2**20:.0f} MiB",
            "tensor.copy_ (read+write)",
            str(device),
            t,
            2.0 * nbytes,
            "B",
            False,
        )
    )
    for dt in _float_types(device):
        progress.step(f"peak: matmul {dt}")
        fa = torch.randn(s, s, device=device).to(dt)
        t = time_fn(lambda i: fa @ fa, device, repeats=repeats)
        out.append(
            Result("peak", f"matmul {s}^3", f"torch.matmul {str(dt)[6:]}", str(device), t, 2.0 * s**3, "OPS", False)
        )
    if _int8_mm_ok(device):
        progress.step("peak: int8 matmul")
        ia = torch.randint(-1, 2, (s, s), device=device, dtype=torch.int8)
        t = time_fn(lambda i: torch._int_mm(ia, ia), device, repeats=repeats)
        out.append(Result("peak", f"int8 mm {s}^3", "torch._int_mm int8", str(device), t, 2.0 * s**3, "OPS", False))
    progress.step("peak: popcount GEMM, cache-resident")
    m, k = max(1, s // 4), 8 * s
    a = bk.pack_bits(torch.randn(m, k, device=device))
    y = bk.xnor_gemm(a, a, k)
    ok = _check_rows(y, lambda r: R.xnor_gemm(a[r.to(device)].cpu(), a.cpu(), k), m, 64)
    t = time_fn(lambda i: bk.xnor_gemm(a, a, k), device, repeats=repeats)
    out.append(
        Result(
            "peak",
            f"xnor {m}x{m}x{k}",
            "bnn_kernels.xnor_gemm (achieved)",
            str(device),
            t,
            2.0 * m * m * k,
            "OPS",
            ok,
            note="best achieved rate, a lower bound on the popcount ceiling",
        )
    )
    return out


SUITES = {
    "gemm": bench_gemm,
    "conv": bench_conv,
    "linear": bench_linear,
    "bitserial": bench_bitserial,
    "peak": bench_peak,
    "model": bench_model,
}


def case_count(name: str, device: torch.device, **kw) -> int:
    if name == "gemm":
        return len(gemm_cases(device, kw.get("shapes")))
    if name == "conv":
        return len(CONV_LAYERS) * len(kw.get("batches") or BATCHES[device.type])
    if name == "linear":
        return len(kw.get("rows") or [1, 4, 16, 64, 256])
    if name == "bitserial":
        return 1 + len(BITSERIAL_LAYERS)
    if name == "model":
        return model_case_count(kw.get("batches"), kw.get("models"))
    return 4 if device.type == "cpu" else 5
