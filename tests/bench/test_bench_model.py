"""`bench model` on tiny networks: both float baselines, batch-32 throughput, peak memory and the
per-op breakdown are reported, and the float deployment computes what the float model computes.
Nothing here asserts anything about speed."""

import csv
import json

import pytest
import torch

import bnn_kernels as bk
from bnn_kernels import models as zoo
from bnn_kernels.__main__ import main
from bnn_kernels.bench import model as bm
from bnn_kernels.bench.deploy import _attr, float_deployment
from bnn_kernels.fusion import FusionReport

TINY = {
    "birealnet18": ("birealnet18", {"width": 8, "num_classes": 10}),
    "reactnet_a": ("reactnet_a", {"width_mult": 0.125, "num_classes": 10}),
}
IMPLS = {"float model", "float deployment", "bnn_kernels.convert(model)"}


def test_bench_model_reports_baselines_memory_and_breakdown(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bm, "MODELS", TINY)
    args = [
        "bench",
        "model",
        "--device",
        "cpu",
        "--size",
        "32",
        "--batches",
        "1",
        "32",
        "--repeats",
        "1",
        "--no-compile",
        "--out",
        str(tmp_path),
        "--name",
        "r",
        "--quiet",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "commit=" in printed and "bnn_kernels ops" in printed and "other overhead" in printed
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["environment"]["device"] == "cpu" and data["environment"]["threads"] >= 1
    rows = data["results"]
    for name in TINY:
        for nb in (1, 32):
            mine = [r for r in rows if r["case"] == f"{name} {nb}x3x32x32"]
            assert {r["impl"] for r in mine} == IMPLS
            ours = [r for r in mine if r["impl"] == "bnn_kernels.convert(model)"]
            assert {r["baseline"] for r in ours} == {"float model", "float deployment"}
            assert all(r["checked"] and r["speedup"] > 0 for r in ours)
            assert all(r["unit"] == "img" and r["work"] == nb and r["rate"] > 0 for r in mine)
            assert all(r["peak_mib"] > 0 and r["peak_growth_mib"] >= 0 for r in mine)
            assert all("top-1 agreement" in r["note"] for r in mine if r["impl"] != "float model")
            deploy = next(r for r in mine if r["impl"] == "float deployment")
            assert "eager" in deploy["note"] and "BN folded" in deploy["note"]
        b = [r["breakdown"] for r in rows if r["breakdown"] and r["case"].startswith(name)]
        assert len(b) == 1 and b[0]["input"] == [1, 3, 32, 32]
        cats = b[0]["categories"]
        assert set(cats) == {"bnn_kernels ops", "float layers", "layout and copies", "other overhead"}
        assert cats["bnn_kernels ops"] > 0 and sum(cats.values()) >= b[0]["ms_per_inference"] * 0.999
        assert any(o["op"].startswith("bnn_kernels::") and o["calls"] >= 1 for o in b[0]["ops"])
    lines = (tmp_path / "r.csv").read_text().splitlines()
    header = next(csv.reader(lines[1:2]))
    assert "peak_mib" in header and "breakdown" not in header
    assert len(list(csv.DictReader(lines[1:]))) == len(rows)


def _computed_from_input_only(gm) -> bool:
    """True when every op of the graph depends on the input: nothing is computed from
    parameters alone per call (no sign() or mean() of weights)."""
    live = {n for n in gm.graph.nodes if n.op == "placeholder"}
    for n in gm.graph.nodes:
        if n.op == "call_function":
            if not any(a in live for a in n.all_input_nodes):
                return False
            live.add(n)
    return True


@pytest.mark.parametrize(
    "make",
    [
        lambda: zoo.birealnet18(num_classes=10, width=8),
        lambda: zoo.reactnet_a(num_classes=10, width_mult=0.125),
        lambda: zoo.XNORNetSmall(width=16),
        lambda: zoo.ReActNetSmall(width=16, shift_inside=True),
    ],
)
def test_float_deployment_computes_the_float_model(make):
    torch.manual_seed(1)
    model = zoo.randomize_bn(make(), seed=3).eval()
    deploy = float_deployment(model, torch.randn(2, 3, 32, 32))
    assert _computed_from_input_only(deploy.gm) and deploy.stats["frozen"] > 0
    for nb in (1, 5):  # fresh inputs, other batch sizes than the export example
        x = torch.randn(nb, 3, 32, 32)
        with torch.no_grad():
            want, got = model(x), deploy(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())


def test_float_deployment_folds_every_conv_batchnorm():
    model = zoo.randomize_bn(zoo.birealnet18(num_classes=10, width=8)).eval()
    deploy = float_deployment(model, torch.randn(2, 3, 32, 32))
    targets = {str(n.target) for n in deploy.gm.graph.nodes if n.op == "call_function"}
    assert deploy.stats["bn_folded"] == 20 and not any("batch_norm" in t for t in targets)
    weights = [_attr(deploy.gm, n.target) for n in deploy.gm.graph.nodes if n.op == "get_attr"]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights if w.dim() == 4)
    n_params = sum(t.numel() for t in list(model.parameters()) + list(model.buffers()) if t.dim() == 4)
    assert sum(t.numel() for t in list(deploy.parameters()) + list(deploy.buffers())) < 1.5 * n_params


def test_float_deployment_bad_example():
    with pytest.raises(ValueError, match="example"):
        float_deployment(zoo.birealnet18(num_classes=10, width=8), torch.randn(1, 3, 32, 32))


def test_compile_falls_back_to_eager_and_says_why(monkeypatch):
    model = torch.nn.Linear(4, 3).eval()
    x = torch.randn(2, 4)

    def broken(*a, **k):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(torch, "compile", broken)
    assert bm._try_compile(model, x, 1.0, torch.device("cpu"), 1) == (
        None,
        "eager (torch.compile failed: RuntimeError)",
    )
    monkeypatch.setattr(torch, "compile", lambda m: lambda t: m(t) + 1)
    assert bm._try_compile(model, x, 1.0, torch.device("cpu"), 1)[1].startswith(
        "eager (torch.compile output differed: 2 of 2"
    )
    monkeypatch.setattr(torch, "compile", lambda m: m)
    ms, how = bm._try_compile(model, x, float("inf"), torch.device("cpu"), 1)
    assert how == "torch.compile" and ms > 0
    ms, how = bm._try_compile(model, x, 0.0, torch.device("cpu"), 1)
    assert ms is None and how.startswith("eager (torch.compile slower")


def test_packed_model_timed_fused_and_unfused_faster_kept(monkeypatch):
    """The converted model is compiled with and without the epilogue fusion; the note says
    which ran and how many binary convs were fused (fake timings: nothing about speed)."""
    from bnn_kernels.fusion import FusionReport

    report = FusionReport(ops=[{"node": "c", "op": "binary_conv2d", "fused": ["multiplier", "bias"], "stopped": "x"}])

    fusion = bk.FusionPass()
    fusion.reports.append(report)  # what the pass reports when the fused model compiles
    monkeypatch.setattr(bk, "FusionPass", lambda: fusion)

    def fake(model, x, eager_ms, device, repeats, compile_fn=None, label="torch.compile"):
        return times[label], label

    monkeypatch.setattr(bm, "_try_compile", fake)
    times = {bm.FUSED: 2.0, "torch.compile": 3.0}
    ms, note, rep = bm._try_compile_packed(None, None, 10.0, torch.device("cpu"), 1)
    assert ms == 2.0 and note.startswith(bm.FUSED) and "1 of 1 binary convs fused" in note
    assert rep.ops == report.ops
    assert "torch.compile 3.00 ms" in note
    times = {bm.FUSED: 4.0, "torch.compile": 3.0}
    ms, note, rep = bm._try_compile_packed(None, None, 10.0, torch.device("cpu"), 1)
    assert ms == 3.0 and note.startswith("torch.compile;") and rep is None
    ms, note, rep = bm._try_compile_packed(None, None, 1.0, torch.device("cpu"), 1)
    assert ms is None and note.startswith("eager (torch.compile slower")
    summary = bm._fusion_summary(report, "fused")
    assert summary["fused"] == 1 and summary["steps"] == {"multiplier": 1, "bias": 1}
    assert bm._fusion_summary(None, False)["note"] == "not compiled with fusion"
    text = bm.format_breakdown("t", {"ms_per_inference": 1.0, "categories": {}, "ops": [], "fusion": summary})
    assert "epilogue fusion: 1 of 1 binary convs fused (multiplier 1, bias 1)" in text


def test_packed_model_package_candidate_kept_when_fastest(monkeypatch):
    """Given a package path, the AOTInductor package is a third candidate: kept when it is the
    fastest (the note names it, the others' times follow), not tried without a path (fake
    timings: nothing about speed)."""
    fusion = bk.FusionPass()
    fusion.reports.append(FusionReport(ops=[{"node": "c", "op": "binary_conv2d", "fused": ["bias"], "stopped": "x"}]))
    monkeypatch.setattr(bk, "FusionPass", lambda: fusion)
    tried = []

    def fake(model, x, eager_ms, device, repeats, compile_fn=None, label="torch.compile"):
        tried.append(label)
        return times[label], label

    monkeypatch.setattr(bm, "_try_compile", fake)
    times = {bm.FUSED: 2.0, "torch.compile": 3.0, bm.PACKAGE: 1.5}
    ms, note, rep = bm._try_compile_packed(None, None, 10.0, torch.device("cpu"), 1, package="m.pt2")
    assert ms == 1.5 and note.startswith(bm.PACKAGE) and bm._used(note) == "package"
    assert f"{bm.FUSED} 2.00 ms" in note and "torch.compile 3.00 ms" in note
    tried.clear()
    ms, note, rep = bm._try_compile_packed(None, None, 10.0, torch.device("cpu"), 1)
    assert ms == 2.0 and bm.PACKAGE not in tried and bm._used(note) == "fused"

    def failing(model, x, eager_ms, device, repeats, compile_fn=None, label="torch.compile"):
        if label == bm.PACKAGE:  # failed: the note keeps why
            return None, f"eager ({label} failed: ExportError)"
        return fake(model, x, eager_ms, device, repeats, compile_fn, label)

    monkeypatch.setattr(bm, "_try_compile", failing)
    ms, note, rep = bm._try_compile_packed(None, None, 10.0, torch.device("cpu"), 1, package="m.pt2")
    assert ms == 2.0 and f"eager ({bm.PACKAGE} failed: ExportError)" in note
    assert [bm._used(h) for h in ("eager (x)", "torch.compile", bm.FUSED)] == [False, True, "fused"]


def test_packed_model_package_exported_once_and_reused(tmp_path, monkeypatch):
    """The package candidate exports the converted model on its first batch and loads the same
    file for the next (batch size dynamic); it computes what the eager model computes."""
    model, _ = bk.convert(
        zoo.randomize_bn(zoo.birealnet18(width=8, num_classes=10), seed=1).eval(), (torch.randn(2, 3, 32, 32),)
    )
    path = tmp_path / "m.pt2"
    x = torch.randn(3, 3, 32, 32)
    ms, note, rep = bm._try_compile_packed(model, x, float("inf"), torch.device("cpu"), 1, package=str(path))
    assert path.is_file() and bm.PACKAGE in note
    assert rep is None or rep.ops  # the package's own fusion report when it was kept

    def no_export(*a, **k):
        raise AssertionError("exported twice")

    monkeypatch.setattr(bk, "export", no_export)
    x2 = torch.randn(5, 3, 32, 32)
    run = bm._packaged(str(path), x2, None)(model)
    with torch.no_grad():
        assert bm.compiled_agrees(run(x2), model(x2))[0]


def test_compiled_agreement_tolerates_isolated_threshold_flips():
    g = torch.Generator().manual_seed(5)
    want = torch.randn(32, 10, generator=g)
    assert bm.compiled_agrees(want.clone(), want) == (True, 0, "0 of 32 inputs differed, max deviation 0.00e+00")
    # within rtol 1e-3 / atol 1e-4 everywhere
    ok, n, _ = bm.compiled_agrees(want * (1 + 5e-4), want)
    assert ok and n == 0
    # an isolated flip: one input off by more, top-1 unchanged
    got = want.clone()
    got[7] += 0.01 * torch.sign(got[7] - got[7].max())  # moves away from the top-1 logit
    ok, n, detail = bm.compiled_agrees(got, want)
    assert ok and n == 1 and detail == "1 of 32 inputs differed, max deviation 1.00e-02"
    got[20] += 0.02 * torch.sign(got[20] - got[20].max())
    ok, n, detail = bm.compiled_agrees(got, want)
    assert ok and n == 2 and "max deviation 2.00e-02" in detail  # 2 of 32 = 1 in 16
    got[3] += 0.02 * torch.sign(got[3] - got[3].max())
    ok, n, detail = bm.compiled_agrees(got, want)
    assert not ok and n == 3 and detail.startswith("3 of 32 inputs differed")
    # a changed top-1 is never tolerated, even on a single input
    got = want.clone()
    i = int(want[4].argmin())
    got[4, i] = want[4].max() + 1
    ok, n, detail = bm.compiled_agrees(got, want)
    assert not ok and n == 1 and detail.endswith("top-1 differed on 1")
    # batches under 16: no input may differ; NaN differs; shapes must match
    ok, n, _ = bm.compiled_agrees(want[:8] + torch.eye(8, 10) * 1e-2, want[:8])
    assert not ok and n == 8
    one = want[:1].clone()
    one[0, 0] += 1e-2 * torch.sign(one[0, 0] - one[0].max())
    assert bm.compiled_agrees(one, want[:1])[:2] == (False, 1)
    nan = want.clone()
    nan[0, (int(want[0].argmax()) + 1) % 10] = float("nan")
    ok, n, detail = bm.compiled_agrees(nan, want)
    assert not ok and n == 1 and detail.endswith("NaN on 1")
    assert bm.compiled_agrees(want[:, :5], want)[0] is False


def test_compile_note_names_the_inputs_that_differed(monkeypatch):
    model = torch.nn.Linear(4, 3).eval()
    x = torch.randn(32, 4)

    def flip_one(m):
        def run(t):
            out = m(t)
            out[5] += 1e-2 * torch.sign(out[5] - out[5].max())
            return out

        return run

    monkeypatch.setattr(torch, "compile", flip_one)
    ms, how = bm._try_compile(model, x, float("inf"), torch.device("cpu"), 1)
    assert ms > 0 and how == "torch.compile (1 of 32 inputs differed, max deviation 1.00e-02)"
    ms, how = bm._try_compile(model, x[:8], float("inf"), torch.device("cpu"), 1)
    assert ms is None and how == "eager (torch.compile output differed: 1 of 8 inputs differed, max deviation 1.00e-02)"


def test_bench_model_runs_the_models_named(tmp_path, capsys, monkeypatch):
    """--models picks models by name (here the binary-weight ResNet-18 alone: its 19 binary-weight
    convs are packed); an unknown name is refused before anything runs, naming the choices."""
    monkeypatch.setattr(bm, "MODELS", dict(TINY, bwn_resnet18=("bwn_resnet18", {"width": 8, "num_classes": 10})))
    common = ["bench", "model", "--device", "cpu", "--size", "32", "--batches", "1", "--repeats", "1", "--quiet"]
    out = ["--no-compile", "--out", str(tmp_path), "--name", "r"]
    assert main(common + out + ["--models", "bwn_resnet18"]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert {r["case"] for r in rows} == {"bwn_resnet18 1x3x32x32"}
    ours = [r for r in rows if r["impl"] == "bnn_kernels.convert(model)"]
    assert ours and all("19 layers packed" in r["note"] for r in ours)
    assert bm._fusion_note(FusionReport()) == bm.NO_BINARY_CONVS  # what a binary-weight model gets
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(common + ["--models", "birealnet18,nope"])
    assert "--models: unknown nope; choose from birealnet18, reactnet_a, bwn_resnet18" in capsys.readouterr().err
