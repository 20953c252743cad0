"""Checks that the C++ runner reproduces Python on exported converted models (run by CI).

For each model (integer ops alone, the digits demo network, Bi-Real-18) this converts it,
exports it with bnn_kernels.export, runs the .pt2 with the C++ runner and compares with
Python: integer outputs must be identical, float outputs equal up to float rounding against
the eager converted model and bit-identical against the same package run from Python.

    python examples/cpp/check_runner.py --runner build-runner/bnn_runner \
        --ops-lib build-cmake-torch/libbnn_kernels_ops.so [--repeat 50] [--models bireal18]

--repeat N also prints the median latency of the eager model, of the package from Python and
of the C++ runner (meaningful only on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from safetensors.torch import load_file, save_file
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import bnn_kernels as bk  # noqa: E402
from bnn_kernels import models as zoo  # noqa: E402


class IntegerOps(nn.Module):
    """The exact integer core of binary layers: packed conv and XNOR GEMM (int32 outputs)."""

    def __init__(self, rng: random.Random, cin: int, hw: int):
        super().__init__()
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        self.cin, self.groups = cin, rng.choice([1, 2])
        self.stride, self.padding = rng.choice([1, 2]), rng.choice([0, 1])
        cout = self.groups * rng.randrange(3, 40)
        w = torch.randn(cout, cin // self.groups, 3, 3, generator=g)
        self.register_buffer("w_bits", bk.pack_bits(w.permute(0, 2, 3, 1).contiguous()))
        self.k = cin * hw * hw
        self.register_buffer("fc_bits", bk.pack_bits(torch.randn(rng.randrange(5, 70), self.k, generator=g)))

    def forward(self, x):
        xb = bk.pack_bits(x.permute(0, 2, 3, 1))
        y = bk.binary_conv2d(xb, self.w_bits, self.cin, self.stride, self.padding, groups=self.groups)
        return y, bk.xnor_gemm(bk.pack_bits(x.flatten(1)), self.fc_bits, self.k)


def _randomize_bn(model: nn.Module, g: torch.Generator) -> nn.Module:
    """Trained-looking BatchNorm statistics, so folded epilogues are not the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def build(name: str, rng: random.Random):
    """(module, example input) for each checked model; converted where it is a float BNN."""
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    if name == "integer":
        cin, hw = rng.choice([4, 34, 64]), rng.randrange(5, 12)
        return IntegerOps(rng, cin, hw).eval(), torch.randn(rng.randrange(2, 6), cin, hw, hw, generator=g)
    if name == "digits":  # the network of examples/demo.py, deterministic weights
        torch.manual_seed(rng.randrange(2**31))
        model, x = zoo.DigitsBNN(), torch.randn(rng.randrange(2, 9), 1, 8, 8, generator=g)
    elif name == "bireal18":
        torch.manual_seed(rng.randrange(2**31))
        model, x = zoo.birealnet18(), torch.randn(2, 3, 64, 64, generator=g)
    else:
        raise ValueError(f"unknown model {name!r}")
    packed, report = bk.convert(_randomize_bn(model, g), (x,))
    assert report.converted, f"{name}: no layer was converted"
    return packed.eval(), x


def _median_ms(fn, x, n: int) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _compare(name: str, got, eager, packaged) -> None:
    for i, (c, e, p) in enumerate(zip(got, eager, packaged)):
        assert c.shape == e.shape and c.dtype == e.dtype, (
            f"{name} output {i}: {c.shape}/{c.dtype} vs {e.shape}/{e.dtype}"
        )
        assert torch.equal(c, p), f"{name} output {i}: C++ and Python runs of the same package differ"
        if e.dtype.is_floating_point:
            tol = 1e-4 * max(1.0, e.abs().max().item())
            err = (c - e).abs().max().item() if c.numel() else 0.0
            assert err <= tol, f"{name} output {i}: C++ differs from the eager model by {err} (> {tol})"
            print(f"  output {i} {tuple(c.shape)} float: max |C++ - eager| = {err:.3g}")
        else:
            assert torch.equal(c, e), f"{name} output {i}: integer output differs from the eager model"
            print(f"  output {i} {tuple(c.shape)} {c.dtype}: identical to the eager model")


def check(name: str, args, rng: random.Random, tmp: str) -> None:
    model, x = build(name, rng)
    path = os.path.join(tmp, f"{name}.pt2")
    t0 = time.perf_counter()
    bk.export(model, (x,), path)
    print(f"{name}: exported in {time.perf_counter() - t0:.1f} s")
    x = torch.cat([x, x[:1]])  # a batch size the export did not see (dynamic batch)
    with torch.no_grad():
        eager = model(x)
    eager = eager if isinstance(eager, tuple) else (eager,)
    if name == "integer":  # the integer ops against the plain-PyTorch oracle too
        xb = bk.reference.pack_bits(x.permute(0, 2, 3, 1))
        ref = bk.reference.binary_conv2d(xb, model.w_bits, model.cin, model.stride, model.padding, groups=model.groups)
        assert torch.equal(eager[0], ref), "binary_conv2d differs from the reference"
    packaged = bk.load_exported(path)
    in_file, out_file = os.path.join(tmp, f"{name}_in.safetensors"), os.path.join(tmp, f"{name}_out.safetensors")
    save_file({"input_0": x.contiguous()}, in_file)
    cmd = [args.runner, args.ops_lib, path, in_file, out_file]
    if args.repeat:
        cmd += ["--repeat", str(args.repeat)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{name}: runner failed ({run.returncode}):\n{run.stdout}{run.stderr}")
    out = load_file(out_file)
    got = [out[f"output_{i}"] for i in range(len(out))]
    assert len(got) == len(eager), f"{name}: {len(got)} outputs from C++, {len(eager)} from Python"
    from_package = packaged(x)
    _compare(name, got, eager, from_package if isinstance(from_package, (tuple, list)) else (from_package,))
    if args.repeat:
        with torch.no_grad():
            py_eager, py_pkg = _median_ms(model, x, args.repeat), _median_ms(packaged, x, args.repeat)
        cpp = run.stdout.strip().splitlines()[-1]
        print(f"  latency, batch {x.shape[0]}: eager {py_eager:.3f} ms, package from Python {py_pkg:.3f} ms; {cpp}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runner", required=True, help="the bnn_runner executable (examples/cpp)")
    p.add_argument("--ops-lib", required=True, help="libbnn_kernels_ops.so for the runner to load")
    p.add_argument("--models", nargs="+", default=["integer", "digits", "bireal18"])
    p.add_argument("--repeat", type=int, default=0, help="also time N runs of each (median)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            check(name, args, rng, tmp)
    print("C++ runner reproduces Python on: " + ", ".join(args.models))


if __name__ == "__main__":
    main()
