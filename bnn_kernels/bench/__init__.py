"""Benchmark suite: `python -m bnn_kernels bench {gemm,conv,linear,bitserial,peak,model,all}`."""

from .harness import Result, environment, table, write_outputs
from .suites import SUITES

__all__ = ["Result", "SUITES", "environment", "table", "write_outputs", "run"]


def run(names, device, out_dir=None, name=None, quiet=False, **kw):
    """Runs the named suites on device, prints the table, writes JSON/CSV/PNG under out_dir."""
    import torch

    from .harness import Progress
    from .model import format_breakdown
    from .suites import case_count

    device = torch.device(device)
    env = environment(device)
    progress = Progress(sum(case_count(n, device, **kw) for n in names), quiet=quiet)
    results = []
    if "peak" in names:  # measure the ceilings first, so every later row can be set against them
        names = ["peak"] + [n for n in names if n != "peak"]
    for n in names:
        fn = SUITES[n]
        params = {p: kw[p] for p in fn.__code__.co_varnames[: fn.__code__.co_argcount] if p in kw and kw[p] is not None}
        results += fn(device, progress, **params)
    apply_ceilings(results, peak_ops=kw.get("peak_ops"))
    print("# " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(table(results))
    for r in results:
        if r.breakdown:
            print(format_breakdown(f"{r.case} {r.impl}", r.breakdown))
    if out_dir:
        for p in write_outputs(results, env, out_dir, name or f"{'_'.join(names)}_{device.type}"):
            print(f"wrote {p}")
    return results


def apply_ceilings(results, peak_ops=None):
    """Sets each row's ceiling from the peak rows measured in the same run: bytes rows against
    the copy bandwidth, a baseline's OPS against the dense matmul peak of its kind, and ours
    against peak_ops (binary OPS/s of the device, when given: no torch op measures it)."""
    copy = [r.rate for r in results if r.suite == "peak" and r.unit == "B"]
    mm = {r.impl: r.rate for r in results if r.suite == "peak" and r.unit == "OPS" and r.impl.startswith("torch")}
    for r in results:
        if r.suite == "peak" or r.ceiling:
            continue
        if r.unit == "B" and copy:
            r.ceiling = max(copy)
        elif r.impl in mm:
            r.ceiling = mm[r.impl]
        elif r.unit == "OPS" and peak_ops and r.impl.startswith("bnn_kernels"):
            r.ceiling = peak_ops
