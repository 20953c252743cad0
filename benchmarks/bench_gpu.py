"""GPU benchmarks: bnn_kernels' CUDA ops against dense PyTorch baselines.

  xnor_gemm (M = N = K bits)        vs torch.matmul bf16 and torch._int_mm int8 (same M, N, K)
  binary_weight_linear (1 x K @ N)  vs an fp16 GEMV (torch.matmul, [1, K] @ [K, N])

Method: results checked against the CPU kernels first; then warm-up, CUDA events around each
call, median of many iterations; inputs rotated over enough copies to exceed 2x L2 where a
single copy would fit in it. Prints one block per problem and writes bench_gpu.csv to --out.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics

import torch

import bnn_kernels as bk


def rand_bits(rows: int, k: int, gen) -> torch.Tensor:
    w = (k + 31) // 32
    t = torch.randint(-(2**31), 2**31, (rows, w), dtype=torch.int64, generator=gen).to(torch.int32)
    if k % 32:
        t[:, -1] &= (1 << (k % 32)) - 1
    return t


def copies_for(nbytes: int) -> int:
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    return max(1, -(-2 * l2 // max(nbytes, 1)) + 1)


def time_ms(fn, inputs, warmup: int = 10, iters: int = 50) -> float:
    """Median milliseconds of fn(*inputs[i % len(inputs)])."""
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    torch.cuda.synchronize()
    times = []
    for i in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        args = inputs[i % len(inputs)]
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def with_env(name: str, value: str, fn):
    def run(*args):
        old = os.environ.get(name)
        os.environ[name] = value
        try:
            return fn(*args)
        finally:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
    return run


def bench_xnor(size: int, rows: list, gen):
    m = n = k = size
    a, b = rand_bits(m, k, gen), rand_bits(n, k, gen)
    ad, bd = a.cuda(), b.cuda()
    # correctness first: a slice of rows against the CPU kernel
    check_rows = min(m, 256)
    for path in ["auto", "mma", "popc"]:
        got = with_env("BNN_KERNELS_CUDA_GEMM_PATH", path, bk.xnor_gemm)(ad[:check_rows], bd, k).cpu()
        assert torch.equal(got, bk.xnor_gemm(a[:check_rows], b, k)), f"xnor_gemm {path} mismatch at {size}"
    ops = 2.0 * m * n * k
    res = {}
    for path in ["mma", "popc"]:
        fn = with_env("BNN_KERNELS_CUDA_GEMM_PATH", path, bk.xnor_gemm)
        res[f"xnor_gemm[{path}]"] = time_ms(lambda x, y: fn(x, y, k), [(ad, bd)], iters=20 if path == "popc" else 50)
    xa = torch.rand(m, k, device="cuda", dtype=torch.bfloat16) * 2 - 1
    xb = torch.rand(k, n, device="cuda", dtype=torch.bfloat16) * 2 - 1
    res["torch.matmul bf16"] = time_ms(torch.matmul, [(xa, xb)])
    ia = torch.randint(-128, 128, (m, k), device="cuda", dtype=torch.int8)
    ib = torch.randint(-128, 128, (k, n), device="cuda", dtype=torch.int8)
    res["torch._int_mm int8"] = time_ms(torch._int_mm, [(ia, ib)])
    base = res["torch.matmul bf16"]
    print(f"== xnor_gemm M=N=K={size} (K in bits; baselines use K elements)")
    for name, ms in res.items():
        tops = ops / (ms * 1e-3) / 1e12
        print(f"  {name:24s} {ms:9.3f} ms  {tops:9.1f} TOPS  x{base / ms:6.2f} vs bf16")
        rows.append({"problem": f"gemm {size}^3", "kernel": name, "ms": f"{ms:.4f}", "TOPS": f"{tops:.2f}",
                     "GB/s": "", "speedup_vs_baseline": f"{base / ms:.3f}"})


def bench_gemv(gen):
    k = n = 16384
    x = torch.randn(1, k, generator=gen)
    w = rand_bits(n, k, gen)
    xd = x.cuda()
    for path in ["auto", "gemv", "tiled"]:
        got = with_env("BNN_KERNELS_CUDA_LINEAR_PATH", path, bk.binary_weight_linear)(xd, w.cuda(), k).cpu()
        torch.testing.assert_close(got, bk.binary_weight_linear(x, w, k), rtol=1e-4, atol=1e-2)
    wcopies = [w.cuda() for _ in range(copies_for(w.numel() * 4))]
    xh = xd.half()
    res, bytes_moved = {}, {}
    for path in ["gemv", "tiled"]:
        fn = with_env("BNN_KERNELS_CUDA_LINEAR_PATH", path, bk.binary_weight_linear)
        res[f"binary_weight_linear[{path}] fp32 x"] = time_ms(lambda xx, ww: fn(xx, ww, k), [(xd, c) for c in wcopies])
        bytes_moved[f"binary_weight_linear[{path}] fp32 x"] = n * k / 8 + k * 4 + n * 4
        res[f"binary_weight_linear[{path}] fp16 x"] = time_ms(lambda xx, ww: fn(xx, ww, k), [(xh, c) for c in wcopies])
        bytes_moved[f"binary_weight_linear[{path}] fp16 x"] = n * k / 8 + k * 2 + n * 2
    wh = torch.randn(k, n, device="cuda", dtype=torch.float16)
    res["torch.matmul fp16 GEMV"] = time_ms(torch.matmul, [(xh, wh)])
    bytes_moved["torch.matmul fp16 GEMV"] = n * k * 2 + k * 2 + n * 2
    base = res["torch.matmul fp16 GEMV"]
    print(f"== binary_weight_linear 1 x {k} -> {n}")
    for name, ms in res.items():
        gbs = bytes_moved[name] / (ms * 1e-3) / 1e9
        print(f"  {name:40s} {ms:9.4f} ms  {gbs:8.1f} GB/s  x{base / ms:6.2f} vs fp16 GEMV")
        rows.append({"problem": f"gemv 1x{k}x{n}", "kernel": name, "ms": f"{ms:.5f}", "TOPS": "",
                     "GB/s": f"{gbs:.1f}", "speedup_vs_baseline": f"{base / ms:.3f}"})


rows: list = []


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    ap.add_argument("--sizes", default="4096,8192")
    args = ap.parse_args()
    assert torch.cuda.is_available() and bk.cuda_built(), "needs a GPU and a CUDA build of bnn_kernels"
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  CUDA {torch.version.cuda}")
    gen = torch.Generator().manual_seed(0)
    for s in [int(v) for v in args.sizes.split(",") if v]:
        bench_xnor(s, rows, gen)
    bench_gemv(gen)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "bench_gpu.csv")
    with open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["problem", "kernel", "ms", "TOPS", "GB/s", "speedup_vs_baseline"])
        wr.writeheader()
        wr.writerows(rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
