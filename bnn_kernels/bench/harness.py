"""Timing and reporting for the benchmark suite.

Method (after the CUTLASS profiler): every case is checked against the reference before it
is timed; inputs are fresh random data (never zeros), rotated across enough copies to push
the working set past twice the last-level cache; warm-up runs, then the median of many
timed runs (CUDA events on a GPU, perf_counter on the CPU); no allocation is timed beyond
what the op itself allocates for its output.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import torch


@dataclasses.dataclass
class Result:
    suite: str
    case: str  # problem, e.g. "M=2048 N=2048 K=2048"
    impl: str  # "bnn_kernels.xnor_gemm" or the baseline's name
    device: str
    ms: float
    work: float  # operations (2*M*N*K) or bytes, per run
    unit: str  # "OPS", "B" (bytes) or "img" (images)
    checked: bool  # result verified against the reference before timing
    baseline: str | None = None  # impl this row is compared with
    speedup: float | None = None  # baseline ms / this ms
    ceiling: float | None = None  # peak of the device in `unit`/s, when known
    note: str = ""
    peak_mib: float | None = None  # peak resident memory while running, when measured (bench model)
    peak_growth_mib: float | None = None  # what running adds to the memory held before the run
    breakdown: dict | None = None  # per-op time breakdown (bench model; JSON only, not in the CSV)

    @property
    def rate(self) -> float:
        return self.work / (self.ms * 1e-3)

    @property
    def fraction_of_ceiling(self) -> float | None:
        return self.rate / self.ceiling if self.ceiling else None


def llc_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).L2_cache_size
    try:
        out = subprocess.run(["getconf", "LEVEL3_CACHE_SIZE"], capture_output=True, text=True).stdout.strip()
        if out and int(out) > 0:
            return int(out)
    except (OSError, ValueError):
        pass
    return 32 << 20


def rotation_count(bytes_per_set: int, device: torch.device, cap: int = 64) -> int:
    """How many input sets to cycle through so the working set exceeds 2x the LLC."""
    need = 2 * llc_bytes(device)
    return max(1, min(cap, -(-need // max(1, bytes_per_set))))


def time_fn(
    fn: Callable[[int], object],
    device: torch.device,
    *,
    warmup: int = 3,
    repeats: int = 20,
    min_seconds: float = 0.0,
) -> float:
    """Median milliseconds of fn(i) (i = run index, for rotating inputs)."""
    for i in range(warmup):
        fn(i)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        end = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        for i in range(repeats):
            start[i].record()
            fn(warmup + i)
            end[i].record()
        torch.cuda.synchronize(device)
        times = [s.elapsed_time(e) for s, e in zip(start, end)]
    else:
        t_total = time.perf_counter()
        i = 0
        while i < repeats or time.perf_counter() - t_total < min_seconds:
            t = time.perf_counter()
            fn(warmup + i)
            times.append((time.perf_counter() - t) * 1e3)
            i += 1
    return statistics.median(times)


def git_commit() -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
        if out.returncode == 0:
            return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return "unknown"


def environment(device: torch.device) -> dict:
    import bnn_kernels as bk

    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": _command(),
        "commit": git_commit(),
        "bnn_kernels": bk.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "cpu_kernel": bk.cpu_gemm_isa(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(
            gpu=p.name,
            sm=f"{p.major}{p.minor}",
            sms=p.multi_processor_count,
            cuda=torch.version.cuda,
            driver=_driver_version(),
        )
    return env


def _command() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("bnn_kernels", "__main__.py")):
        argv[0:1] = ["python", "-m", "bnn_kernels"]
    return " ".join(shlex.quote(a) for a in argv)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _driver_version() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _fmt_rate(rate: float, unit: str) -> str:
    if unit == "img":
        return f"{rate:8.1f} img/s"
    if unit == "B":
        return f"{rate / 1e9:8.1f} GB/s"
    return f"{rate / 1e12:8.3f} TOPS" if rate >= 1e12 else f"{rate / 1e9:8.1f} GOPS"


def table(results: Sequence[Result]) -> str:
    lines = [
        f"{'suite':9} {'case':34} {'impl':42} {'ms':>9} {'rate':>13} {'x baseline':>11} {'of peak':>8} check  note"
    ]
    for r in results:
        sp = f"{r.speedup:9.2f}x" if r.speedup else ""
        frac = f"{100 * r.fraction_of_ceiling:6.1f}%" if r.fraction_of_ceiling else ""
        lines.append(
            f"{r.suite:9} {r.case:34} {r.impl:42} {r.ms:9.3f} {_fmt_rate(r.rate, r.unit):>13} {sp:>11} {frac:>8} "
            f"{'ok' if r.checked else '-':5}  {'; '.join(t for t in (r.baseline and 'vs ' + r.baseline, r.note) if t)}".rstrip()
        )
    return "\n".join(lines)


def write_outputs(results: Sequence[Result], env: dict, out_dir: str, name: str) -> list[str]:
    """Writes name.json, name.csv (and name.png when matplotlib is present) under out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    rows = [dict(dataclasses.asdict(r), rate=r.rate, fraction_of_ceiling=r.fraction_of_ceiling) for r in results]
    paths = []
    p = os.path.join(out_dir, f"{name}.json")
    with open(p, "w") as f:
        json.dump({"environment": env, "results": rows}, f, indent=1)
    paths.append(p)
    p = os.path.join(out_dir, f"{name}.csv")
    with open(p, "w") as f:
        f.write("# " + json.dumps(env) + "\n")
        keys = [k for k in rows[0] if k != "breakdown"] if rows else []
        f.write(",".join(keys) + "\n")
        for row in rows:
            f.write(",".join(_csv(row[k]) for k in keys) + "\n")
    paths.append(p)
    png = plot(results, env, os.path.join(out_dir, f"{name}.png"))
    if png:
        paths.append(png)
    return paths


def _csv(v) -> str:
    s = "" if v is None else str(v)
    return f'"{s}"' if ("," in s or '"' in s) else s


def plot(results: Sequence[Result], env: dict, path: str) -> str | None:
    """Speed-up over each baseline per case, and the rate of each impl as a fraction of its ceiling."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ours = [r for r in results if r.speedup]
    if not ours:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(14, max(3, 0.35 * len(ours) + 1.5)))
    labels = [f"{r.case} vs {r.baseline}" for r in ours]
    axes[0].barh(labels, [r.speedup for r in ours], color="tab:blue")
    axes[0].axvline(1.0, color="black", lw=0.8)
    axes[0].set_xlabel("speed-up over baseline (x)")
    axes[0].invert_yaxis()
    with_ceiling = [r for r in results if r.fraction_of_ceiling]
    if with_ceiling:
        axes[1].barh(
            [f"{r.impl} {r.case}" for r in with_ceiling],
            [100 * r.fraction_of_ceiling for r in with_ceiling],
            color="tab:green",
        )
        axes[1].set_xlabel("% of the device ceiling")
        axes[1].set_xlim(0, 100)
        axes[1].invert_yaxis()
    else:
        axes[1].axis("off")
    fig.suptitle(
        f"bnn_kernels {env.get('commit')} on {env.get('gpu') or env.get('cpu')} ({env.get('device')}), "
        f"torch {env.get('torch')}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class Progress:
    """One line per case on stderr: [i/n] what, so long runs show where they are."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.i, self.quiet, self.t0 = total, 0, quiet, time.perf_counter()

    def step(self, what: str) -> None:
        self.i += 1
        if not self.quiet:
            print(f"[{self.i}/{self.total} {time.perf_counter() - self.t0:6.1f}s] {what}", file=sys.stderr, flush=True)
