"""CPU benchmark: bnn_kernels ops against torch float32 on the same inputs and threads.

For each case the op's result is first checked against bnn_kernels.reference, then our op
and its float32 baseline are timed alternately (one call each per round, after warm-up),
so that both see the same machine load; the median of the rounds is reported (times,
speed-up, throughput), and in the last column the speed-up of the fastest rounds (less
sensitive to other processes on a shared machine).

    python benchmarks/bench_cpu.py                    # every case, torch's default threads
    python benchmarks/bench_cpu.py --threads 2 --repeats 15 --json out.json
    python benchmarks/bench_cpu.py --cases gemm,conv --gemm 1024,1024,4096
    python benchmarks/bench_cpu.py --isa avx2          # cap the micro-kernel (avx512|avx2|scalar)

Throughput: ours in binary GOPS = 2*M*N*K / s (one multiply and one add per bit product,
the same count as the float baseline's GFLOP/s = 2*M*N*K / s).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from bnn_kernels.bench.harness import cpu_model

bk = ref = None  # bnn_kernels, imported in main() once --isa is in the environment

CASES = ("gemm", "conv", "bitserial", "linear")


def _ints(text: str, n: int, name: str) -> list[int]:
    vals = [int(v) for v in text.split(",")]
    if len(vals) != n:
        raise argparse.ArgumentTypeError(f"--{name} takes {n} comma-separated integers")
    return vals


def time_pair(ours, base, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of each round of ours() and base(), called alternately."""
    for _ in range(warmup):
        ours()
        base()
    t_ours, t_base = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        t1 = time.perf_counter()
        base()
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_base.append(t2 - t1)
    return t_ours, t_base


def signs(*shape: int, gen: torch.Generator) -> torch.Tensor:
    """Random +-1 float32 values (never zero)."""
    return torch.randint(0, 2, shape, generator=gen).float().mul_(2).sub_(1)


def case_gemm(m: int, n: int, k: int, gen):
    a, b = signs(m, k, gen=gen), signs(n, k, gen=gen)
    ab, bb = bk.pack_bits(a), bk.pack_bits(b)
    got = bk.xnor_gemm(ab, bb, k)
    assert torch.equal(got, ref.xnor_gemm(ab, bb, k)), "xnor_gemm differs from the reference"
    assert torch.equal(got, (a.double() @ b.double().T).int()), "xnor_gemm differs from the float product"
    bt = b.T.contiguous()
    return dict(name=f"xnor_gemm M={m} N={n} K={k}", baseline="torch.matmul float32", ops=2 * m * n * k,
                ours=lambda: bk.xnor_gemm(ab, bb, k), base=lambda: torch.matmul(a, bt))


def case_conv(n: int, c: int, h: int, w: int, o: int, kh: int, kw: int, pad: int, stride: int, gen):
    x = signs(n, c, h, w, gen=gen)
    wt = signs(o, c, kh, kw, gen=gen)
    xb = bk.pack_bits(x.permute(0, 2, 3, 1).contiguous())
    wb = bk.pack_bits(wt.permute(0, 2, 3, 1).contiguous())
    got = bk.binary_conv2d(xb, wb, c, stride=stride, padding=pad)
    assert torch.equal(got, ref.binary_conv2d(xb, wb, c, stride=stride, padding=pad)), "binary_conv2d differs"
    xc = x.contiguous(memory_format=torch.channels_last)
    wc = wt.contiguous(memory_format=torch.channels_last)
    ho, wo = got.shape[2], got.shape[3]
    return dict(name=f"binary_conv2d x={n}x{c}x{h}x{w} w={o}x{c}x{kh}x{kw} pad={pad} stride={stride}",
                baseline="F.conv2d float32 channels_last", ops=2 * n * ho * wo * o * c * kh * kw,
                ours=lambda: bk.binary_conv2d(xb, wb, c, stride=stride, padding=pad),
                base=lambda: F.conv2d(xc, wc, None, stride, pad))


def case_bitserial(m: int, n: int, k: int, wbits: int, abits: int, gen):
    qa = torch.randint(0, 2**abits, (m, k), generator=gen)
    qw = torch.randint(-(2 ** (wbits - 1)), 2 ** (wbits - 1), (n, k), generator=gen) if wbits > 1 else None
    ap = bk.to_bitplanes(qa, abits)
    a_coefs = [1 << p for p in range(abits)]
    if wbits == 1:  # +-1 weights: one plane, value 2*bit - 1
        wp = bk.to_bitplanes(torch.randint(0, 2, (n, k), generator=gen), 1)
        w_coefs, w_off = [2], -1
    else:  # signed two's complement planes
        wp = bk.to_bitplanes(qw, wbits, signed=True)
        w_coefs, w_off = [1 << p for p in range(wbits - 1)] + [-(1 << (wbits - 1))], 0
    args = (ap, wp, k, a_coefs, w_coefs, 0, w_off)
    got = bk.bitserial_gemm(*args)
    assert torch.equal(got, ref.bitserial_gemm(*args)), "bitserial_gemm differs from the reference"
    a = ref.decode_bitplanes(ap, k, a_coefs).float()
    wf = ref.decode_bitplanes(wp, k, w_coefs, w_off).float().T.contiguous()
    return dict(name=f"bitserial_gemm W{wbits}A{abits} M={m} N={n} K={k}", baseline="torch.matmul float32",
                ops=2 * m * n * k, ours=lambda: bk.bitserial_gemm(*args), base=lambda: torch.matmul(a, wf))


def case_linear(rows: int, n: int, k: int, gen):
    x = torch.randn(rows, k, generator=gen)
    w = signs(n, k, gen=gen)
    wb = bk.pack_bits(w)
    got = bk.binary_weight_linear(x, wb, k)
    exp = ref.binary_weight_linear(x, wb, k)
    # float32 accumulation: error bounded by ~K * eps * sum|x|; check it well inside that.
    tol = 1e-5 * x.abs().sum(dim=1, keepdim=True) + 1e-4
    assert ((got - exp).abs() <= tol).all(), "binary_weight_linear differs from the reference"
    return dict(name=f"binary_weight_linear rows={rows} N={n} K={k}", baseline="F.linear float32",
                ops=2 * rows * n * k, ours=lambda: bk.binary_weight_linear(x, wb, k), base=lambda: F.linear(x, w))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for both sides")
    p.add_argument("--repeats", type=int, default=11, help="timed rounds per case (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--gemm", default="2048,2048,2048", help="M,N,K of xnor_gemm")
    p.add_argument("--conv", default="8,256,14,14,256,3,3,1,1", help="N,C,H,W,O,KH,KW,pad,stride")
    p.add_argument("--bitserial", default="2048,2048,2048", help="M,N,K of the W1A2 and W2A2 cases")
    p.add_argument("--linear", default="4096,4096", help="N,K of binary_weight_linear (1 and 64 rows)")
    p.add_argument("--isa", choices=("auto", "avx512", "avx2", "scalar"), default=None,
                   help="caps the micro-kernel through BNN_KERNELS_CPU_ISA (auto: no cap)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.isa == "auto":
        os.environ.pop("BNN_KERNELS_CPU_ISA", None)
    elif args.isa is not None:
        os.environ["BNN_KERNELS_CPU_ISA"] = args.isa
    global bk, ref
    import bnn_kernels as bk
    from bnn_kernels import reference as ref

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    wanted = [c for c in args.cases.split(",") if c]
    unknown = set(wanted) - set(CASES)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}")

    builders = []
    if "gemm" in wanted:
        builders.append(lambda: case_gemm(*_ints(args.gemm, 3, "gemm"), gen))
    if "conv" in wanted:
        builders.append(lambda: case_conv(*_ints(args.conv, 9, "conv"), gen))
    if "bitserial" in wanted:
        mnk = _ints(args.bitserial, 3, "bitserial")
        builders.append(lambda: case_bitserial(*mnk, 1, 2, gen))
        builders.append(lambda: case_bitserial(*mnk, 2, 2, gen))
    if "linear" in wanted:
        nk = _ints(args.linear, 2, "linear")
        builders.append(lambda: case_linear(1, *nk, gen))
        builders.append(lambda: case_linear(64, *nk, gen))

    env = dict(cpu=cpu_model(), threads=torch.get_num_threads(), torch=torch.__version__,
               isa=bk.cpu_gemm_isa(), isa_env=os.environ.get("BNN_KERNELS_CPU_ISA", ""),
               repeats=args.repeats, warmup=args.warmup, command=" ".join([sys.executable] + sys.argv))
    env["loadavg_start"] = os.getloadavg()[0]
    print(f"# CPU: {env['cpu']} | threads: {env['threads']} | torch {env['torch']} | "
          f"micro-kernel: {env['isa']} | median of {args.repeats} alternating rounds | "
          f"load average {env['loadavg_start']:.2f}")
    header = (f"{'case':<62} {'ours ms':>9} {'torch ms':>9} {'speed-up':>8} {'our GOPS':>9} "
              f"{'torch GFLOP/s':>13} {'min/min':>10}")
    print(header)
    print("-" * len(header))
    results = []
    for build in builders:
        c = build()
        ours_s, base_s = time_pair(c["ours"], c["base"], args.warmup, args.repeats)
        t_ours, t_base = statistics.median(ours_s), statistics.median(base_s)
        r = dict(case=c["name"], baseline=c["baseline"], ours_ms=t_ours * 1e3, torch_ms=t_base * 1e3,
                 speedup=t_base / t_ours, ours_gops=c["ops"] / t_ours / 1e9, torch_gflops=c["ops"] / t_base / 1e9,
                 ours_min_ms=min(ours_s) * 1e3, torch_min_ms=min(base_s) * 1e3,
                 speedup_of_mins=min(base_s) / min(ours_s), checked=True)
        results.append(r)
        print(f"{r['case']:<62} {r['ours_ms']:>9.3f} {r['torch_ms']:>9.3f} {r['speedup']:>7.2f}x "
              f"{r['ours_gops']:>9.0f} {r['torch_gflops']:>13.0f} {r['speedup_of_mins']:>9.2f}x", flush=True)
    env["loadavg_end"] = os.getloadavg()[0]
    print(f"# load average at the end: {env['loadavg_end']:.2f} (other processes on these cores skew both columns)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(env=env, results=results), f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
