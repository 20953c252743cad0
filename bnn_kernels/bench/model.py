"""`bench model`: converted full-size BNNs against two float baselines, measured in one run.

For each model (Bi-Real Net 18, ReActNet-A and a ResNet-18 with binary weights and real
activations, random weights, BN statistics randomized):
- "float model": the model as written for training, float32, NCHW input;
- "float deployment": the same network as a user would deploy it in float
  (bnn_kernels.bench.deploy: weights binarized once, BatchNorm folded, channels_last; the
  torch.compile'd version where it is faster, else eager, said in the note);
- "bnn_kernels.convert(model)": the converted model, fed the same NCHW input, also compiled
  where that is faster and agrees: with bnn_kernels.compile (the float glue fused into the
  binary convs' epilogues), with plain torch.compile, and as the AOTInductor package
  bnn_kernels.export writes (exported once per model, loaded, no Python or guards per call),
  the fastest kept (the note says which ran and how many binary convs were fused; the
  breakdown's "fusion" entry lists the steps).
  "Agrees" is compiled_agrees: top-1 equal on every input and outputs within rtol 1e-3,
  atol 1e-4 on all but at most 1 input in 16 (an activation a few ulps from a binarization
  threshold may flip under compiled rounding); the note names the inputs that differed.
Before timing, the deployment and the converted model are checked against the float model on
fresh random inputs (not the conversion examples): top-1 agreement and maximum deviation.
Latency per batch (batch 1) and images/s (batch 32) come from the harness; peak memory from a
subprocess per configuration (see peak_memory); the converted model's time is broken down per
op with torch.profiler (see breakdown).
All three run in float32 on every device (on a GPU the breakdown still reports host-side op
times; use the CUDA events of the table for device time).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile

import torch

import bnn_kernels as bk

from .deploy import float_deployment
from .harness import Progress, Result, time_fn
from .lce import LCE_MODELS, lce_row, time_lce

# name -> (factory in bnn_kernels.models, keyword arguments). Tests shrink these.
MODELS = {
    "birealnet18": ("birealnet18", {}),
    "reactnet_a": ("reactnet_a", {}),
    "bwn_resnet18": ("bwn_resnet18", {}),
}
BATCHES = [1, 32]  # latency at batch 1, throughput at batch 32
CHECK_BATCH = 8  # fresh inputs for the agreement check
MAX_REL_DEVIATION = 5e-2  # a larger deviation from the float model aborts the benchmark
SEED = 0
IMPLS = ("float", "deploy", "packed")


def build(factory: str, kwargs: dict, res: int, impl: str, seed: int = SEED):
    """The model in configuration impl ("float", "deploy" or "packed"), built the same way in
    the benchmark and in the memory subprocess. Returns (module, conversion report or None)."""
    from bnn_kernels import models as zoo

    torch.manual_seed(seed)
    model = zoo.randomize_bn(getattr(zoo, factory)(**kwargs), seed=seed).eval()
    example = torch.randn(2, 3, res, res)  # the conversion examples
    if impl == "float":
        return model, None
    if impl == "deploy":
        return float_deployment(model, example), None
    if impl == "packed":
        with torch.no_grad():
            return bk.convert(model, (example,))
    raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")


def check_against_float(ref: torch.nn.Module, other: torch.nn.Module, x: torch.Tensor) -> dict:
    """Top-1 agreement and maximum deviation of other from ref on x (absolute and relative
    to the largest output of ref)."""
    with torch.no_grad():
        want, got = ref(x).float(), other(x).float()
    dev = (got - want).abs().max().item()
    return {
        "agree": (got.argmax(1) == want.argmax(1)).float().mean().item(),
        "max_dev": dev,
        "rel_dev": dev / max(want.abs().max().item(), 1e-30),
        "inputs": x.shape[0],
    }


def _check_note(c: dict) -> str:
    return f"top-1 agreement {100 * c['agree']:.0f}% on {c['inputs']} fresh inputs, max deviation {c['max_dev']:.2e}"


AGREE_RTOL, AGREE_ATOL = 1e-3, 1e-4  # compiled against eager, per output element
OUTLIERS_PER = 16  # at most 1 input in 16 may differ beyond that (isolated threshold flips)


def compiled_agrees(got: torch.Tensor, want: torch.Tensor) -> tuple[bool, int, str]:
    """(ok, inputs that differed, detail): a compiled model's outputs against eager's on a batch. An activation
    within a few ulps of a binarization threshold can flip under the compiled float layers'
    rounding and change one input's output, so ok when top-1 agrees on every input and the
    outputs match (AGREE_RTOL, AGREE_ATOL) on all but at most 1 in OUTLIERS_PER inputs (none
    in a batch under 16), with no NaN where eager has none. detail says how many inputs differed and the maximum deviation."""
    if got.shape != want.shape or got.dim() == 0:
        return False, -1, f"output shape {tuple(got.shape)}, eager {tuple(want.shape)}"
    n = got.shape[0]
    g, w = got.detach().float().reshape(n, -1), want.detach().float().reshape(n, -1)
    close = torch.isclose(g, w, rtol=AGREE_RTOL, atol=AGREE_ATOL).all(1)
    differed = int((~close).sum())
    top1 = int((g.argmax(1) != w.argmax(1)).sum())
    nan = int((g.isnan() & ~w.isnan()).any(1).sum())
    dev = (g.double() - w.double()).abs().max().item() if g.numel() else 0.0
    ok = top1 == 0 and nan == 0 and differed * OUTLIERS_PER <= n
    detail = f"{differed} of {n} inputs differed, max deviation {dev:.2e}"
    detail += f", top-1 differed on {top1}" if top1 else ""
    return ok, differed, detail + (f", NaN on {nan}" if nan else "")


def _try_compile(deploy, x, eager_ms, device, repeats, compile_fn=None, label="torch.compile"):
    """(ms, note) of compile_fn(deploy) (torch.compile by default) on x when it is faster
    than eager and agrees with it (compiled_agrees; the note gives the inputs that differed)."""
    try:
        compiled = (compile_fn or torch.compile)(deploy)
        with torch.no_grad():
            ok, differed, detail = compiled_agrees(compiled(x), deploy(x))
            if not ok:
                return None, f"eager ({label} output differed: {detail})"
            ms = time_fn(lambda i: compiled(x), device, repeats=repeats)
    except Exception as e:  # noqa: BLE001 - any compile failure falls back to eager
        return None, f"eager ({label} failed: {type(e).__name__})"
    if ms < eager_ms:
        return ms, f"{label} ({detail})" if differed else label
    return None, f"eager ({label} slower: {ms:.2f} ms)"


FUSED = "torch.compile with bnn_kernels fusion"
PACKAGE = "AOTInductor package (bnn_kernels.export)"


def _packaged(path: str, x: torch.Tensor, fusion):
    """The compile_fn of the AOTInductor candidate: exports the model to path (batch size
    dynamic, with the epilogue fusion pass) unless an earlier batch did, then loads it."""

    def load(m):
        if not os.path.exists(path):
            bk.export(m, (x,), path, fuse=fusion)
        return bk.load_exported(path)

    return load


def _try_compile_packed(model, x, eager_ms, device, repeats, package=None):
    """The converted model compiled with the epilogue fusion pass (bnn_kernels.compile), without
    it, and, given a package path, as an AOTInductor package (bnn_kernels.export; exported on
    the first call, loaded from path on later ones): (ms or None, note, FusionReport or None)
    of the fastest that agrees with eager."""
    fusion, pkg_fusion = bk.FusionPass(), bk.FusionPass()

    def fused(m):  # a fresh compilation, so the pass runs and reports
        return bk.compile(m, fuse=fusion, options={"fx_graph_cache": False})

    candidates = [(FUSED, fused, fusion), ("torch.compile", None, None)]
    if package is not None:
        candidates.append((PACKAGE, _packaged(package, x, pkg_fusion), pkg_fusion))
    tried, failed, reports = [], [], {}
    for label, fn, rep in candidates:
        ms, how = _try_compile(model, x, float("inf"), device, repeats, fn, label)
        (tried if ms is not None else failed).append((ms, how))
        if rep is not None and rep.reports:
            reports[label] = rep.report
    fused_note = f"; {_fusion_note(reports[FUSED])}" if FUSED in reports else ""
    if not tried:
        return None, ", ".join(h for _, h in failed), None
    ms, how = min(tried)
    others = [f"{h} {m:.2f} ms" for m, h in tried if h != how] + [h for _, h in failed]
    if ms >= eager_ms:
        return None, f"eager ({how} slower: {ms:.2f} ms{fused_note})", reports.get(FUSED)
    label = next(lb for lb, _, _ in candidates if how.startswith(lb))
    own = f"; {_fusion_note(reports[label])}" if label in reports else fused_note
    return ms, how + own + "".join(f"; {o}" for o in others), reports.get(label)


NO_BINARY_CONVS = "no binary_conv2d call to fuse (the epilogue fusion covers binary convs only)"


def _fusion_note(report) -> str:
    if not report.ops:
        return NO_BINARY_CONVS
    steps = ", ".join(f"{k} {v}" for k, v in report.fused.items())
    return f"{report.ops_fused} of {len(report.ops)} binary convs fused ({steps})"


def bench_model(
    device: torch.device,
    progress: Progress,
    batches=None,
    size=None,
    repeats=10,
    try_compile=True,
    lce_python=None,
    models=None,
) -> list[Result]:
    """The rows of every model of MODELS, or of those named in models (see the module
    docstring). lce_python: an interpreter with Larq Compute Engine; models with a larq_zoo
    counterpart then get an LCE row at batch 1 on the CPU, timed before and after ours in this
    run (bnn_kernels/bench/lce.py)."""
    res = size or 224
    batches = batches or BATCHES
    out = []
    for name in select_models(models):
        # the converted model's AOTInductor package lives here while its batches and its
        # memory subprocess run
        with tempfile.TemporaryDirectory(prefix="bnn_kernels_bench_") as tmp:
            package = os.path.join(tmp, f"{name}.pt2") if try_compile else None
            out += _bench_one(name, device, progress, batches, res, repeats, try_compile, lce_python, package)
    return out


def _prepare(name: str, res: int, device) -> tuple[dict, dict]:
    """The three configurations of a model, checked against the float model on fresh inputs
    (a deviation over MAX_REL_DEVIATION aborts), and each one's note ({how} left to fill)."""
    factory, kwargs = MODELS[name]
    models, report = {}, None
    for impl in IMPLS:
        models[impl], rep = build(factory, kwargs, res, impl)
        models[impl] = models[impl].to(device)
        report = rep or report
    if not report.converted:
        raise AssertionError(f"convert() converted no layer of {name}")
    gen = torch.Generator().manual_seed(SEED + 1)  # not the conversion examples
    xc = torch.randn(CHECK_BATCH, 3, res, res, generator=gen).to(device)
    checks = {k: check_against_float(models["float"], models[k], xc) for k in ("deploy", "packed")}
    for k, c in checks.items():
        if c["rel_dev"] > MAX_REL_DEVIATION:
            raise AssertionError(f"{name}: {k} deviates from the float model ({_check_note(c)}): benchmark aborted")
    notes = {
        "float": "float32 NCHW as written (weights re-binarized every call)",
        "deploy": f"{{how}}; {models['deploy'].stats['frozen']} values frozen, "
        f"{models['deploy'].stats['bn_folded']} BN folded, channels_last; {_check_note(checks['deploy'])}",
        "packed": f"{{how}}; {len(report.converted)} layers packed; {_check_note(checks['packed'])} (random weights)",
    }
    for k, m in models.items():
        nbytes = sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))
        notes[k] += f"; weights {nbytes / 2**20:.2f} MiB"
    return models, notes


def _bench_one(name, device, progress, batches, res, repeats, try_compile, lce_python, package) -> list[Result]:
    """bench_model's rows of one model; package: where its AOTInductor package goes (None: not tried)."""
    models, notes = _prepare(name, res, device)
    rows, compiled, fusion, lce = {}, {}, {}, {}
    for nb in batches:
        progress.step(f"model {name} batch {nb}")
        case = f"{name} {nb}x3x{res}x{res}"
        with_lce = lce_python and nb == 1 and name in LCE_MODELS and device.type == "cpu"
        lce_args = (lce_python, LCE_MODELS.get(name), res, torch.get_num_threads(), repeats)
        before = time_lce(*lce_args) if with_lce else None
        rows[nb], compiled[nb], fusion[nb] = _time_batch(
            models, case, nb, res, device, notes, repeats, try_compile, package
        )
        if with_lce:
            lce[nb] = lce_row(case, str(device), before, time_lce(*lce_args))
        if nb == batches[0]:
            b = breakdown(models["packed"], torch.randn(nb, 3, res, res, device=device))
            b["fusion"] = _fusion_summary(fusion[nb], compiled[nb].get("packed"))
            rows[nb]["packed"].breakdown = b
    factory, kwargs = MODELS[name]
    mem = {
        impl: peak_memory(
            factory, kwargs, res, impl, batches, device, {nb: compiled[nb].get(impl) for nb in batches}, package
        )
        for impl in IMPLS
    }
    out = []
    for nb in batches:
        r = rows[nb]
        for impl in IMPLS:
            row = r[impl]
            row.peak_mib, row.peak_growth_mib = mem[impl][nb]
            row.note += f"; running adds {row.peak_growth_mib:.1f} MiB, process peak RSS {row.peak_mib:.0f} MiB"
        out += [
            _vs(r["packed"], r["float"]),
            _vs(dataclasses.replace(r["packed"], breakdown=None), r["deploy"]),
            r["float"],
            r["deploy"],
        ]
        if nb in lce:
            out += [_vs(dataclasses.replace(r["packed"], breakdown=None), lce[nb]), lce[nb]]
    return out


def _time_batch(models, case, nb, res, device, notes, repeats, try_compile, package=None):
    """Times the three configurations at batch nb: ({impl: Result}, {impl: what ran, see
    _used}, FusionReport of the converted model or None). The float deployment and the
    converted model are each compiled where that is faster and agrees; the converted model
    with and without the epilogue fusion and, given a package path, as an AOTInductor
    package, the fastest kept."""
    x = torch.randn(nb, 3, res, res, device=device)
    ms = {}
    with torch.no_grad():
        for impl, m in models.items():
            ms[impl] = time_fn(lambda i: m(x), device, repeats=repeats)
        how = {impl: "eager (torch.compile not tried)" for impl in ("deploy", "packed")}
        report = None
        if try_compile:
            t_c, how["deploy"] = _try_compile(models["deploy"], x, ms["deploy"], device, repeats)
            ms["deploy"] = t_c or ms["deploy"]
            t_c, how["packed"], report = _try_compile_packed(
                models["packed"], x, ms["packed"], device, repeats, package
            )
            ms["packed"] = t_c or ms["packed"]
    names = {"float": "float model", "deploy": "float deployment", "packed": "bnn_kernels.convert(model)"}
    rows = {
        impl: Result(
            "model",
            case,
            names[impl],
            str(device),
            ms[impl],
            float(nb),
            "img",
            impl != "float",
            note=notes[impl].replace("{how}", how.get(impl, "")),
        )
        for impl in IMPLS
    }
    used = {impl: _used(h) for impl, h in how.items()}
    return rows, used, report


def _used(how: str) -> bool | str:
    """What a timing note says ran: False (eager), True (torch.compile), "fused"
    (bnn_kernels.compile) or "package" (the AOTInductor package)."""
    if how.startswith(PACKAGE):
        return "package"
    return "fused" if how.startswith(FUSED) else how.startswith("torch.compile")


def _fusion_summary(report, compiled) -> dict:
    """What the epilogue fusion did in the converted model that was timed (breakdown["fusion"])."""
    if report is None:
        ran = "not compiled with fusion" if compiled != "fused" else "no report"
        return {"compiled": compiled, "note": ran}
    return {
        "compiled": compiled,
        "binary_ops": len(report.ops),
        "fused": report.ops_fused,
        "steps": dict(report.fused),
        "stopped": dict(report.stopped),
    }


def _vs(ours: Result, base: Result) -> Result:
    return dataclasses.replace(ours, baseline=base.impl, speedup=base.ms / ours.ms)


def select_models(models=None) -> list[str]:
    """The names of MODELS to run: all, or those listed (an unknown name raises ValueError
    naming the choices)."""
    if not models:
        return list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    return list(dict.fromkeys(models))


def case_count(batches=None, models=None) -> int:
    return len(select_models(models)) * len(batches or BATCHES)


# ---------------------------------------------------------------------------------------------
# Per-op breakdown
# ---------------------------------------------------------------------------------------------
_LAYOUT = {
    "aten::copy_",
    "aten::contiguous",
    "aten::to",
    "aten::_to_copy",
    "aten::clone",
    "aten::empty",
    "aten::empty_like",
    "aten::empty_strided",
    "aten::permute",
    "aten::view",
    "aten::reshape",
    "aten::as_strided",
    "aten::transpose",
    "aten::t",
    "aten::expand",
    "aten::unsqueeze",
    "aten::squeeze",
    "aten::flatten",
    "aten::detach",
    "aten::zero_",
    "aten::fill_",
    "aten::resize_",
    "aten::slice",
    "aten::select",
    "aten::alias",
    "aten::lift_fresh",
}


def op_category(name: str) -> str:
    if name.startswith("bnn_kernels::"):
        return "bnn_kernels ops"
    if name in _LAYOUT:
        return "layout and copies"
    return "float layers"


def breakdown(model: torch.nn.Module, x: torch.Tensor, runs: int = 5) -> dict:
    """Time per inference of model(x) under torch.profiler, grouped by op name: each top-level
    op (one not called from another op) counts with its inclusive time in one category
    (bnn_kernels ops, float layers, layout and copies); "other overhead" is the wall time not
    spent in any op (Python, module calls). The profiler adds some time to every op."""
    import time

    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    with torch.no_grad():
        model(x)
        with profile(activities=acts) as prof:
            t0 = time.perf_counter()
            for _ in range(runs):
                model(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            wall = (time.perf_counter() - t0) * 1e3 / runs
    ops: dict = {}
    for e in prof.events():
        if e.cpu_parent is not None:
            continue
        o = ops.setdefault(e.name, {"op": e.name, "category": op_category(e.name), "calls": 0, "ms": 0.0})
        o["calls"] += 1
        o["ms"] += e.cpu_time_total / 1e3
    rows = sorted(
        ({**o, "calls": o["calls"] / runs, "ms": o["ms"] / runs} for o in ops.values()), key=lambda o: -o["ms"]
    )
    cats = {c: 0.0 for c in ("bnn_kernels ops", "float layers", "layout and copies")}
    for o in rows:
        cats[o["category"]] += o["ms"]
    cats["other overhead"] = max(0.0, wall - sum(cats.values()))
    return {
        "input": list(x.shape),
        "runs": runs,
        "ms_per_inference": wall,
        "categories": cats,
        "ops": rows,
        "method": "torch.profiler, top-level ops by name, inclusive CPU time per inference",
    }


def format_breakdown(title: str, b: dict, top: int = 12) -> str:
    lines = [f"# {title}: {b['ms_per_inference']:.3f} ms per inference under the profiler"]
    for c, ms in b["categories"].items():
        lines.append(f"  {c:20} {ms:9.3f} ms {100 * ms / max(b['ms_per_inference'], 1e-9):5.1f}%")
    f = b.get("fusion")
    if f and f.get("binary_ops") == 0:
        lines.append(f"  epilogue fusion: {NO_BINARY_CONVS}")
    elif f and "fused" in f:
        steps = ", ".join(f"{k} {v}" for k, v in f["steps"].items())
        lines.append(f"  epilogue fusion: {f['fused']} of {f['binary_ops']} binary convs fused ({steps})")
    elif f:
        lines.append(f"  epilogue fusion: {f['note']}")
    for o in b["ops"][:top]:
        lines.append(f"    {o['op']:44} {o['category']:18} {o['calls']:6.1f} calls {o['ms']:9.3f} ms")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------------------------
def peak_memory(factory, kwargs, res, impl, batches, device, compiled=None, package=None) -> dict:
    """{batch: (peak MiB, growth MiB)} of inference in configuration impl.

    CPU: a fresh Python process builds the model, runs it once at each batch (warm-up,
    compilation), then resets the kernel's resident-set high-water mark (/proc/self/clear_refs)
    and runs it again: peak = VmHWM (resident memory of the whole process, model and libraries
    included), growth = VmHWM minus the resident set at the reset (what inference adds).
    Where the high-water mark cannot be reset, the process's max RSS (ru_maxrss, building
    included) is reported with growth 0. glibc's malloc thresholds are fixed in the subprocess
    so freed tensors over 128 KiB go back to the system (see below). CUDA: torch.cuda.max_memory_allocated, in process."""
    if torch.device(device).type == "cuda":
        return _cuda_peak(factory, kwargs, res, impl, batches, device)
    # Fixed glibc thresholds: tensors over 128 KiB are mapped and unmapped on free, so memory
    # freed by the warm-up run leaves the resident set and is counted again when reused.
    malloc = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    args = {
        "factory": factory,
        "kwargs": kwargs,
        "res": res,
        "impl": impl,
        "batches": list(batches),
        "compiled": {str(k): v for k, v in (compiled or {}).items()},
        "package": package,
        "threads": torch.get_num_threads(),
    }
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        **malloc,
        "PYTHONPATH": os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    }
    code = "import json, sys; from bnn_kernels.bench.model import memory_child; memory_child(json.loads(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"peak memory of {factory} ({impl}) failed:\n{proc.stderr[-2000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return {int(k): tuple(v) for k, v in got.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def memory_child(args: dict) -> None:
    """Entry point of the memory subprocess: prints {batch: [peak MiB, growth MiB]} as JSON."""
    torch.set_num_threads(args["threads"])
    model, _ = build(args["factory"], args["kwargs"], args["res"], args["impl"])
    result = {}
    for nb in args["batches"]:
        how = args["compiled"].get(str(nb))
        if how == "package":  # the package the timing run exported
            run = bk.load_exported(args["package"])
        else:
            run = bk.compile(model) if how == "fused" else torch.compile(model) if how else model
        x = torch.randn(nb, 3, args["res"], args["res"])
        gc.collect()
        with torch.no_grad():
            run(x)
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                # the reset sets VmHWM to the resident set; reading that (not VmRSS, whose
                # per-thread counters are synced lazily and may read above it) keeps growth >= 0
                # but for the counters' own approximation (per-CPU sums, a few pages either
                # way), which can leave a run that adds nothing just below the reset value
                before = _status_kib("VmHWM")
                run(x)
                peak = max(_status_kib("VmHWM"), before)
                result[nb] = [peak / 1024, (peak - before) / 1024]
            except OSError:
                run(x)
                result[nb] = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0.0]
    print(json.dumps(result))


def _cuda_peak(factory, kwargs, res, impl, batches, device) -> dict:
    model = build(factory, kwargs, res, impl)[0].to(device)
    result = {}
    for nb in batches:
        x = torch.randn(nb, 3, res, res, device=device)
        with torch.no_grad():
            model(x)
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            model(x)
            peak = torch.cuda.max_memory_allocated(device)
        result[nb] = (peak / 2**20, (peak - before) / 2**20)
    return result
