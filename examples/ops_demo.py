"""The ops in one page: pack, xnor_gemm and binary_conv2d against the reference and float.

Prints whether each packed op equals the plain-PyTorch reference and the float computation
on +-1 data, and how fast it runs next to the float op on the same device and threads.
Run: python examples/ops_demo.py [--device cuda]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import bnn_kernels as bk
from bnn_kernels import reference as R


def timed(fn, device, repeats=5):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sign(x):
    return torch.where(x >= 0, 1.0, -1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() and bk.cuda_built() else "cpu")
    ap.add_argument("--size", type=int, default=2048, help="M = N = K of the GEMM")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    print(
        f"bnn_kernels {bk.__version__} | torch {torch.__version__} | device {dev} | threads {torch.get_num_threads()}"
        f" | CPU kernel {bk.cpu_gemm_isa()} | CUDA kernels built: {bk.cuda_built()}"
    )
    rows = []

    # Packing: 32 values per int32 word.
    x = torch.randn(64, 1000, device=dev)
    bits = bk.pack_bits(x)
    rows.append(
        (
            "pack_bits 64x1000",
            torch.equal(bits.cpu(), R.pack_bits(x.cpu())),
            None,
            f"{x.numel() * 4} B -> {bits.numel() * 4} B",
        )
    )

    # XNOR-popcount GEMM vs float matmul of the same +-1 matrices.
    n = args.size
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    ab, bb = bk.pack_bits(a), bk.pack_bits(b)
    y = bk.xnor_gemm(ab, bb, n)
    sa, sb = sign(a), sign(b)
    exact = torch.equal(y.cpu(), (sa @ sb.T).to(torch.int32).cpu())
    t_bin = timed(lambda: bk.xnor_gemm(ab, bb, n), dev)
    t_f32 = timed(lambda: sa @ sb.T, dev)
    rows.append((f"xnor_gemm {n}^3", exact, (t_bin, t_f32), f"{2 * n**3 / t_bin / 1e9:.0f} binary GOPS"))

    # Binary conv (ResNet-18 layer) vs F.conv2d float32 channels_last on +-1 data.
    xc = torch.randn(8, 256, 14, 14, device=dev)
    wc = torch.randn(256, 256, 3, 3, device=dev)
    xb, wb = bk.pack_bits(xc.permute(0, 2, 3, 1)), bk.pack_bits(wc.permute(0, 2, 3, 1))
    yc = bk.binary_conv2d(xb, wb, 256, padding=1)
    sx = sign(xc).contiguous(memory_format=torch.channels_last)
    sw = sign(wc).contiguous(memory_format=torch.channels_last)
    exact = torch.equal(yc.cpu(), F.conv2d(sx, sw, padding=1).to(torch.int32).cpu()) and torch.equal(
        yc.cpu(), R.binary_conv2d(xb.cpu(), wb.cpu(), 256, 1, 1, 1, 1, 0)
    )
    t_bin = timed(lambda: bk.binary_conv2d(xb, wb, 256, padding=1), dev)
    t_f32 = timed(lambda: F.conv2d(sx, sw, padding=1), dev)
    flops = 2 * 8 * 256 * 14 * 14 * 256 * 9
    rows.append(("binary_conv2d 8x256x14x14 3x3", exact, (t_bin, t_f32), f"{flops / t_bin / 1e9:.0f} binary GOPS"))

    print(f"\n{'op':32} {'exact':6} {'packed ms':>10} {'float32 ms':>11} {'speed-up':>9}  note")
    for name, ok, times, note in rows:
        if times:
            tb, tf = times
            print(f"{name:32} {str(ok):6} {tb * 1e3:10.2f} {tf * 1e3:11.2f} {tf / tb:8.2f}x  {note}")
        else:
            print(f"{name:32} {str(ok):6} {'':>10} {'':>11} {'':>9}  {note}")
    if not all(r[1] for r in rows):
        raise SystemExit("MISMATCH against the reference")


if __name__ == "__main__":
    main()
