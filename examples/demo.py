"""Train a small BNN on scikit-learn's 8x8 digits, convert it to packed bitwise layers, compare.

    python examples/demo.py [--epochs 12] [--width 48] [--budget 40]

Needs only bnn_kernels, torch, scikit-learn and tqdm (the digits ship inside scikit-learn; no
download). Prints float vs packed accuracy, prediction agreement, the weight file size of both
(safetensors) and their latency on the device at hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import bnn_kernels
from bnn_kernels.models import DigitsBNN


def load_digits_tensors(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    idx_tr, idx_te = train_test_split(range(len(y)), test_size=0.25, random_state=seed, stratify=d.target)
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def train(model, x, y, epochs: int, budget_s: float, seed: int):
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps_per_epoch = (len(y) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=epochs * steps_per_epoch)
    model.train()
    start = time.perf_counter()
    bar = tqdm(total=epochs * steps_per_epoch, desc="training", unit="step", mininterval=0.5)
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            b = perm[i : i + 64]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        if time.perf_counter() - start > budget_s:
            bar.write(f"time budget of {budget_s:.0f}s reached after {epoch + 1} epochs")
            break
    bar.close()
    return model.eval()


@torch.inference_mode()
def predict(model, x, batch=512):
    return torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])


@torch.inference_mode()
def latency_ms(model, x, reps: int = 30) -> float:
    for _ in range(3):
        model(x)
    times = []
    for _ in range(reps):
        if x.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--width", type=int, default=48)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--budget", type=float, default=40.0, help="stop training after this many seconds")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    xtr, ytr, xte, yte = load_digits_tensors(args.seed)
    model = DigitsBNN(width=args.width, blocks=args.blocks)
    model = train(model, xtr, ytr, args.epochs, args.budget, args.seed)

    packed, report = bnn_kernels.convert(model, (xtr[:256],))
    print("\nconversion report:")
    print(report)

    pf, pp = predict(model, xte), predict(packed, xte)
    print(
        f"\ntest accuracy   float {100 * (pf == yte).float().mean():.2f}%   packed {100 * (pp == yte).float().mean():.2f}%"
    )
    print(f"prediction agreement float vs packed: {100 * (pf == pp).float().mean():.2f}% of {len(yte)} test images")

    with tempfile.TemporaryDirectory() as d:
        fpath, ppath = os.path.join(d, "float.safetensors"), os.path.join(d, "packed.safetensors")
        bnn_kernels.save(model, fpath)
        bnn_kernels.save(packed, ppath)
        fs, ps = os.path.getsize(fpath), os.path.getsize(ppath)
        reloaded = bnn_kernels.load(ppath, DigitsBNN(width=args.width, blocks=args.blocks))
        same = torch.equal(predict(reloaded, xte), pp)
    binary_names = set(report.converted)
    bin_float = sum(
        p.numel() * p.element_size()
        for n, p in model.named_parameters()
        if n.rsplit(".", 1)[0] in binary_names and n.endswith("weight")
    )
    bin_packed = sum(m.weight_bits.numel() * 4 for n, m in packed.named_modules() if n in binary_names)
    print(
        f"weight file (safetensors): float {fs / 1024:.1f} KiB, packed {ps / 1024:.1f} KiB ({fs / ps:.1f}x smaller); "
        f"binary layers' weights {bin_float / 1024:.1f} KiB -> {bin_packed / 1024:.1f} KiB"
    )
    print(f"packed file reloaded into a fresh DigitsBNN: predictions identical = {same}")

    dev = torch.device("cuda" if torch.cuda.is_available() and bnn_kernels.cuda_built() else "cpu")
    model_d, packed_d = model.to(dev), packed.to(dev)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\nlatency on {where}, median of 30 runs:")
    for bs in (1, 256):
        xb = xte[:bs].to(dev)
        lf, lp = latency_ms(model_d, xb), latency_ms(packed_d, xb)
        print(f"  batch {bs:4d}: float {lf:8.3f} ms   packed {lp:8.3f} ms   ({lf / lp:.2f}x)")


if __name__ == "__main__":
    main()
