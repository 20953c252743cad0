"""Benchmark suite: `python -m bnn_kernels bench {gemm,conv,linear,bitserial,peak,all}`."""
from .harness import Result, environment, table, write_outputs
from .suites import SUITES

__all__ = ["Result", "SUITES", "environment", "table", "write_outputs", "run"]


def run(names, device, out_dir=None, name=None, quiet=False, **kw):
    """Runs the named suites on device, prints the table, writes JSON/CSV/PNG under out_dir."""
    import torch

    from .harness import Progress
    from .suites import case_count

    device = torch.device(device)
    env = environment(device)
    progress = Progress(sum(case_count(n, device, **kw) for n in names), quiet=quiet)
    results = []
    for n in names:
        fn = SUITES[n]
        params = {p: kw[p] for p in fn.__code__.co_varnames[: fn.__code__.co_argcount] if p in kw and kw[p] is not None}
        results += fn(device, progress, **params)
    print("# " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(table(results))
    if out_dir:
        for p in write_outputs(results, env, out_dir, name or f"{'_'.join(names)}_{device.type}"):
            print(f"wrote {p}")
    return results
