"""Command line: `python -m bnn_kernels info` (or the `bnn-kernels` console script)."""

from __future__ import annotations

import argparse
import os
import platform
import sys


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in ("popcnt", "avx2", "avx512f", "avx512_vpopcntdq") if f in flags]
    except OSError:
        pass
    return []


def info() -> None:
    import torch

    import bnn_kernels as bk

    print(f"bnn_kernels   {bk.__version__} ({os.path.dirname(bk.__file__)})")
    print(f"torch         {torch.__version__} (CUDA {torch.version.cuda})")
    print(f"python        {sys.version.split()[0]} on {platform.machine()}")
    print(f"native ops    {'loaded' if bk._native.available() else 'NOT loaded: ' + str(bk._native.LOAD_ERROR)}")
    print(
        f"CPU kernel    {bk.cpu_gemm_isa()} (CPU flags: {' '.join(cpu_flags()) or 'unknown'}; threads {torch.get_num_threads()})"
    )
    print(f"CUDA kernels  {'built' if bk.cuda_built() else 'not built'}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(
                f"GPU {i}         {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB"
            )
    else:
        print("GPU           none visible")
    print(f"ops           {', '.join(bk.ops.__all__)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bnn-kernels", description="bnn_kernels command line")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="build, kernels, CPU features, GPU and versions")
    b = sub.add_parser("bench", help="benchmark against torch (cuBLAS / cuDNN on a GPU, float32 on the CPU)")
    b.add_argument("suite", nargs="+", choices=["gemm", "conv", "linear", "bitserial", "peak", "model", "all"])
    b.add_argument("--device", default=None, help="cpu or cuda (default: cuda when usable)")
    b.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    b.add_argument("--shapes", type=int, nargs="+", default=None, help="gemm: square sizes instead of the default set")
    b.add_argument("--batches", type=int, nargs="+", default=None, help="conv, model: batch sizes")
    b.add_argument("--rows", type=int, nargs="+", default=None, help="linear: activation rows")
    b.add_argument(
        "--size", type=int, default=None, help="linear / bitserial / peak: problem size; model: image resolution"
    )
    b.add_argument(
        "--peak-ops",
        type=float,
        default=None,
        help="binary OPS/s ceiling of the device (e.g. 9.2e15 for H100 b1 MMA), shown as %% of peak",
    )
    b.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    b.add_argument(
        "--isa",
        choices=["auto", "avx512", "avx2", "scalar"],
        default=None,
        help="cap the CPU micro-kernel (sets BNN_KERNELS_CPU_ISA; auto: no cap)",
    )
    b.add_argument("--out", default=None, help="folder for JSON, CSV and PNG results")
    b.add_argument("--name", default=None, help="file name stem of the results")
    b.add_argument("--quiet", action="store_true", help="no progress lines")
    b.add_argument("--no-compile", action="store_true", help="model: do not try torch.compile for the float deployment")
    b.add_argument(
        "--models",
        default=None,
        help="model: comma-separated models to run (default: all of birealnet18, reactnet_a, bwn_resnet18)",
    )
    b.add_argument(
        "--lce-python",
        default=None,
        help="model: a Python interpreter with larq-compute-engine and larq-zoo; adds Larq Compute Engine's "
        "time for the larq_zoo counterpart (Bi-Real Net) at batch 1, measured in the same run",
    )
    args = ap.parse_args(argv)
    if args.cmd == "info":
        info()
    elif args.cmd == "bench":
        import torch

        import bnn_kernels as bk
        from bnn_kernels import bench

        # --threads and --isa hold for this run only: an in-process caller gets its settings back
        saved_threads, saved_isa = torch.get_num_threads(), os.environ.get("BNN_KERNELS_CPU_ISA")
        try:
            _bench(ap, args, torch, bk, bench)
        finally:
            torch.set_num_threads(saved_threads)
            if saved_isa is None:
                os.environ.pop("BNN_KERNELS_CPU_ISA", None)
            else:
                os.environ["BNN_KERNELS_CPU_ISA"] = saved_isa
    return 0


def _bench(ap, args, torch, bk, bench) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.isa == "auto":
        os.environ.pop("BNN_KERNELS_CPU_ISA", None)
    elif args.isa:
        os.environ["BNN_KERNELS_CPU_ISA"] = args.isa
    device = args.device or ("cuda" if torch.cuda.is_available() and bk.cuda_built() else "cpu")
    if device.startswith("cuda") and not (torch.cuda.is_available() and bk.cuda_built()):
        ap.error("--device cuda needs a visible GPU and bnn_kernels built with CUDA (see `bnn-kernels info`)")
    names = list(bench.SUITES) if "all" in args.suite else list(dict.fromkeys(args.suite))
    if args.models:
        from bnn_kernels.bench.model import select_models

        try:
            select_models(args.models.split(","))
        except ValueError as e:
            ap.error(f"--{e}")
    bench.run(
        names,
        device,
        out_dir=args.out,
        name=args.name,
        quiet=args.quiet,
        shapes=args.shapes,
        batches=args.batches,
        rows=args.rows,
        size=args.size,
        repeats=args.repeats,
        peak_ops=args.peak_ops,
        try_compile=False if args.no_compile else None,
        lce_python=args.lce_python,
        models=args.models.split(",") if args.models else None,
    )


if __name__ == "__main__":
    sys.exit(main())
