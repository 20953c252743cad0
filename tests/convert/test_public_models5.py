"""convert() on a fifth set of public BNN idioms and on models in the forms deployment tools hand it
(tests/convert/models_public5.py). Each test that guards a fix of convert() says what it used to do.
Converted layers are checked on fresh inputs (integer part exact, float within rounding, other
batch and spatial sizes); layers that must stay float are asserted to, with the reason, and
strict=True raises naming them."""

import copy

import pytest
import torch
import torch.fx
from torch import nn

from bnn_kernels import ConversionError, convert

from . import models_public5 as P
from .test_public_models import _check_on_fresh_inputs, _fresh, _random_bn, _x
from .test_public_models2 import _stays_float

_SHAPES = [(4, 3, 8, 8), (1, 3, 11, 7), (5, 3, 6, 9)]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _same_outputs(a, b, shapes, dtype=torch.float32, tol=1e-5, **to):
    """a(x) equals b(x) within tol (relative to the largest output) on fresh inputs of the shapes."""
    for i, shape in enumerate(shapes):
        x = _fresh(shape, 30 + i).to(dtype=dtype, **to)
        with torch.no_grad():
            want, got = b(x), a(x)
        assert float((got - want).abs().max()) <= tol * float(want.abs().max()), (shape, dtype)


def _resnet():
    return _random_bn(P.TinyXnorResNet())


# --- deployment plumbing -----------------------------------------------------------------------
@pytest.mark.parametrize("where", ["root", "child"])
def test_torch_compile_wrapper_is_converted_uncompiled(where):
    """torch.compile's OptimizedModule, around the model or one of its blocks: convert used to run it
    under its tracing mode and crash inside TorchDynamo (InternalTorchDynamoError: NameError:
    ___get_torch_function_mode_stack_at). The module it wraps is now converted, returned uncompiled,
    and the report says so."""
    model = _resnet()
    wrapped = copy.deepcopy(model)
    if where == "root":
        wrapped = torch.compile(wrapped)
    else:
        wrapped.b1 = torch.compile(wrapped.b1)
    cm, rep = convert(wrapped, (_x(4, 3, 8, 8),))
    ref, ref_rep = convert(model, (_x(4, 3, 8, 8),))
    assert rep.converted == ref_rep.converted == ["b1.conv", "b2.conv"], str(rep)
    assert type(cm) is P.TinyXnorResNet and type(cm.b1) is P.XnorBlock
    assert "torch.compile wrapper" in rep.notes["<root>" if where == "root" else "b1"][0]
    _same_outputs(cm, ref, _SHAPES, tol=0)
    _same_outputs(cm, model, _SHAPES)
    if where == "child":
        assert isinstance(wrapped.b1, torch._dynamo.eval_frame.OptimizedModule)  # the original is left as it is


@pytest.mark.parametrize("how", ["fx", "export"])
def test_traced_graph_modules_are_reported(how):
    """torch.fx.symbolic_trace and torch.export(...).module() inline every layer's code into the graph
    module's forward, so no submodule makes a call. convert used to say "wrap the layer in a
    submodule" for the fx one and, for the exported one (whose graph calls ATen operators,
    torch.ops.aten.conv2d.default...), saw no call at all: an empty report, and strict=True did
    not raise. Both are now reported as graph modules (convert the module they were traced from),
    strict=True raises, and the model is unchanged."""
    model = _resnet()
    x = _x(4, 3, 8, 8)
    graph = torch.fx.symbolic_trace(model) if how == "fx" else torch.export.export(model, (x,)).module()
    cm, rep = convert(graph, (x,))
    assert rep.converted == [] and "torch.fx GraphModule" in rep.skipped["<root>"], str(rep)
    _same_outputs(cm, model, _SHAPES[:1], tol=0)
    with pytest.raises(ConversionError, match="<root>: the calls are made by a torch.fx GraphModule"):
        convert(graph, (x,), strict=True)


# --- BatchNorm with batch statistics ---------------------------------------------------------------
def test_batch_statistics_inside_the_conv_module_stay_float():
    """F.batch_norm(training=True) on the call's output normalizes with the batch: not the packed
    per-channel epilogue. convert used to take batch_norm for affine whatever its training flag and
    left the layer in float only because its verification on derived inputs failed ("the packed
    output deviates"); the reason now names the batch statistics."""
    model = _random_bn(P.BatchStatNet(where="inside"))
    for n in (1, 4):
        _stays_float(model, _x(n, 8, 6, 6), "conv", "batch_norm with batch statistics", P.BatchStatConv)


def test_batchnorm_without_running_stats_after_the_conv_is_not_folded():
    """nn.BatchNorm2d(track_running_stats=False) normalizes with the batch in eval mode too: the conv
    before it packs, the BatchNorm stays a module of its own."""
    model = _random_bn(P.BatchStatNet(where="after"))
    cm, rep = _check_on_fresh_inputs(model, _x(4, 8, 6, 6), (4, 8, 6, 6), ["conv"])
    assert rep.fused == {} and type(cm.bn) is nn.BatchNorm2d, str(rep)
    _same_outputs(cm, model, [(3, 8, 6, 6), (1, 8, 7, 5)])
