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
    print(f"CPU kernel    {bk.cpu_gemm_isa()} (CPU flags: {' '.join(cpu_flags()) or 'unknown'}; threads {torch.get_num_threads()})")
    print(f"CUDA kernels  {'built' if bk.cuda_built() else 'not built'}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"GPU {i}         {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB")
    else:
        print("GPU           none visible")
    print(f"ops           {', '.join(bk.ops.__all__)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bnn-kernels", description="bnn_kernels command line")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="build, kernels, CPU features, GPU and versions")
    args = ap.parse_args(argv)
    if args.cmd == "info":
        info()
    return 0


if __name__ == "__main__":
    sys.exit(main())
