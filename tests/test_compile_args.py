"""bnn_kernels.compile / export: what reaches torch.compile, torch.export and AOTInductor.

The compilers are replaced by recorders, so these tests check the arguments and the model's
mode in milliseconds; tests/test_compile_fused.py and tests/test_export_pt2.py compile for real."""

import copy
import os

import pytest
import torch
from torch import nn

import bnn_kernels as bk
from bnn_kernels import compile_fused, export_pt2
from bnn_kernels.fusion import FusionReport


class _Recorder:
    """Records its calls; then returns act(*args, **kwargs)."""

    def __init__(self, act):
        self.calls, self.act = [], act

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.act(*args, **kwargs)


def _raise(error):
    def act(*args, **kwargs):
        raise error

    return act


@pytest.fixture
def torch_compile(monkeypatch):
    rec = _Recorder(lambda model, **kw: nn.Identity())
    monkeypatch.setattr(torch, "compile", rec)
    return rec


def test_compile_installs_the_pass_and_keeps_the_callers_options(torch_compile):
    model, options = nn.Linear(3, 2), {"fx_graph_cache": False, "max_autotune": False}
    compiled = bk.compile(model, options=options, dynamic=True, mode="default")
    ((got,), kw) = torch_compile.calls[0]
    assert got is model
    assert isinstance(compiled.fusion_pass, bk.FusionPass)
    assert kw == {
        "options": {"fx_graph_cache": False, "max_autotune": False, "post_grad_custom_post_pass": compiled.fusion_pass},
        "dynamic": True,
        "mode": "default",
    }
    assert options == {"fx_graph_cache": False, "max_autotune": False}  # the caller's dict is not changed


def test_compile_without_fusion_is_plain_torch_compile(torch_compile):
    compiled = bk.compile(nn.Linear(3, 2), fuse=False, backend="eager", options={"fx_graph_cache": False})
    (_, kw) = torch_compile.calls[0]
    assert compiled.fusion_pass is None
    assert kw == {"backend": "eager", "options": {"fx_graph_cache": False}}


def test_compile_with_the_callers_pass(torch_compile):
    mine = bk.FusionPass()
    compiled = bk.compile(nn.Linear(3, 2), fuse=mine, backend="inductor")
    (_, kw) = torch_compile.calls[0]
    assert compiled.fusion_pass is mine and kw["options"]["post_grad_custom_post_pass"] is mine


def test_fusion_pass_report_merges_every_graph():
    p = bk.FusionPass()
    p(torch.fx.symbolic_trace(nn.ReLU()).graph)  # a graph without binary ops: an empty report
    assert len(p.reports) == 1 and p.reports[0].ops == []
    p.reports += [
        FusionReport(ops=[{"fused": ["bias"], "stopped": "a"}]),
        FusionReport(ops=[{"fused": [], "stopped": "b"}]),
    ]
    assert p.report.ops == [{"fused": ["bias"], "stopped": "a"}, {"fused": [], "stopped": "b"}]
    assert p.report.ops_fused == 1 and p.report.stopped == {"a": 1, "b": 1}
    assert copy.deepcopy({"pass": p})["pass"] is p  # AOTInductor deep-copies its configs


def test_fusion_pass_uuid_covers_every_fusion_source(monkeypatch):
    seen = []
    monkeypatch.setattr(compile_fused, "get_hash_for_files", lambda files: seen.append(files) or "h")
    assert bk.FusionPass().uuid() == "h"
    names = {os.path.basename(f) for f in seen[0]}
    assert names == {"fusion.py", "_fusion_chain.py", "_fusion_dual.py", "compile_fused.py"}
    assert all(os.path.isfile(f) for f in seen[0])


class _Probe(nn.Module):
    """Records whether it ran in training mode."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return x * 2


@pytest.fixture
def compilers(monkeypatch):
    def fake_export(model, inputs, **kw):
        model(*inputs)
        return ("program", inputs, kw)

    exp, aoti = _Recorder(fake_export), _Recorder(lambda *a, **kw: "written.pt2")
    monkeypatch.setattr(torch.export, "export", exp)
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", aoti)
    return exp, aoti


@pytest.mark.parametrize("training", [True, False])
def test_export_traces_in_eval_with_a_dynamic_batch(compilers, training, tmp_path):
    exp, aoti = compilers
    model = _Probe().train(training)
    x = torch.randn(1, 3)
    assert bk.export(model, x, tmp_path / "m.pt2") == "written.pt2"  # a bare tensor is one input
    assert model.modes == [False] and model.training is training
    (m, inputs), kw = exp.calls[0]
    assert m is model and len(inputs) == 1 and torch.equal(inputs[0], torch.cat([x, x]))  # batch 1 traced as 2
    assert kw["strict"] is False
    (dims,) = kw["dynamic_shapes"]
    assert list(dims) == [0] and dims[0].min == 1
    (program,), akw = aoti.calls[0]
    assert program[0] == "program" and akw["package_path"] == os.fspath(tmp_path / "m.pt2")


@pytest.mark.parametrize("fuse", [True, False, "own"])
def test_export_configs(compilers, fuse, tmp_path):
    _, aoti = compilers
    mine = bk.FusionPass()
    user = {"max_autotune": False, "fx_graph_cache": False}
    bk.export(
        _Probe(), (torch.randn(3, 2),), tmp_path / "m.pt2", fuse=mine if fuse == "own" else fuse, inductor_configs=user
    )
    configs = aoti.calls[0][1]["inductor_configs"]
    assert configs["aot_inductor.metadata"] == {"bnn_kernels_version": bk.__version__}
    assert configs["max_autotune"] is False and configs["fx_graph_cache"] is False
    installed = configs.get("post_grad_custom_post_pass")
    if fuse == "own":
        assert installed is mine
    else:
        assert isinstance(installed, bk.FusionPass) if fuse else installed is None
    assert user == {"max_autotune": False, "fx_graph_cache": False}


def test_export_gives_the_mode_back_when_tracing_fails(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.export, "export", _Recorder(_raise(RuntimeError("boom\nsecond line"))))
    model = _Probe().train()
    with pytest.raises(bk.ExportError, match=r"torch\.export could not trace .*RuntimeError: boom \(the full"):
        bk.export(model, (torch.randn(2, 3),), tmp_path / "m.pt2")
    assert model.training


def test_export_compile_error_names_the_model(compilers, monkeypatch, tmp_path):
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", _Recorder(_raise(ValueError("no kernel"))))
    with pytest.raises(bk.ExportError, match=r"AOTInductor could not compile _Probe .*ValueError: no kernel") as e:
        bk.export(_Probe(), (torch.randn(2, 3),), tmp_path / "m.pt2")
    assert isinstance(e.value.__cause__, ValueError)


class _BranchAfterChildren(nn.Module):
    """Its children finish, then its own forward branches on values (which torch.export cannot trace)."""

    def __init__(self):
        super().__init__()
        self.conv, self.act = nn.Conv2d(3, 4, 3), nn.ReLU()

    def forward(self, x):
        y = self.act(self.conv(x))
        return y * 2 if y.sum() > 0 else y


def test_export_error_names_the_module_whose_own_code_failed(tmp_path):
    model = nn.Sequential(nn.Identity(), _BranchAfterChildren())
    with pytest.raises(bk.ExportError, match=r"module '1' \(_BranchAfterChildren\)"):
        bk.export(model, (torch.randn(2, 3, 8, 8),), tmp_path / "bad.pt2")


def test_export_inputs_on_two_devices(tmp_path):
    two = (torch.randn(2, 3), torch.empty(2, 3, device="meta"))
    with pytest.raises(ValueError, match="example_inputs must be on one device"):
        export_pt2._check_inputs(two)
