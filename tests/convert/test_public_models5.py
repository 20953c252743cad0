"""convert() on a fifth set of public BNN idioms and on models in the forms deployment tools hand it
(tests/convert/models_public5.py). Each test that guards a fix of convert() says what it used to do.
Converted layers are checked on fresh inputs (integer part exact, float within rounding, other
batch and spatial sizes); layers that must stay float are asserted to, with the reason, and
strict=True raises naming them."""

import copy
import sys

import pytest
import torch
import torch.fx
from torch import nn

from bnn_kernels import ConversionError, convert
from bnn_kernels.nn import BinaryConv1d, BinaryConv2d

from . import models_public5 as P
from .test_public_models import _check_on_fresh_inputs, _fresh, _random_bn, _x
from .test_public_models2 import _stays_float

pytestmark = [
    pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad:UserWarning"),  # checkpoint in eval
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning"),  # the x86 QAT qconfig
]

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


@pytest.mark.parametrize("how", ["fx", "export"])
def test_traced_binary_conv_child_converts(how):
    """One binary conv module traced on its own (its graph module a child of the model, making the
    one call): packed like the module it was traced from, exact on fresh inputs. The exported one
    calls ATen operators, which convert did not see before."""
    model = _resnet()
    traced = copy.deepcopy(model)
    conv = traced.b1.conv
    x = _x(4, 8, 8, 8)  # export fixes the shapes: the examples' and the first fresh ones
    traced.b1.conv = torch.fx.symbolic_trace(conv) if how == "fx" else torch.export.export(conv, (x,)).module()
    cm, rep = convert(traced, (_x(4, 3, 8, 8),))
    assert rep.converted == ["b1.conv", "b2.conv"], str(rep)
    _same_outputs(cm, model, _SHAPES[:1] if how == "export" else _SHAPES)


def _channels_last(t):
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


@pytest.mark.parametrize(
    "form", ["float64", "channels_last", "requires_grad", "train_mode", "quant_stub", "checkpoint"]
)
def test_model_forms_convert_exactly(form):
    """float64 weights, channels_last weights and inputs, example inputs that require grad, a model
    handed over in train() mode (convert runs a copy in eval mode, the original stays in train
    mode), QuantStub / DeQuantStub at float, torch.utils.checkpoint in the forward: the binary convs pack and the model is exact on fresh
    inputs (float64: within float32 rounding, the packed epilogue's multiplier and bias are float32)."""
    model = {"quant_stub": P.QuantStubNet, "checkpoint": P.CheckpointedResNet}.get(form, P.TinyXnorResNet)()
    model = _random_bn(model)
    x, dtype, to = _x(4, 3, 8, 8), torch.float32, {}
    if form == "float64":
        model, x, dtype = model.double(), x.double(), torch.float64
    elif form == "channels_last":
        model, x, to = (
            model.to(memory_format=torch.channels_last),
            _channels_last(x),
            {"memory_format": torch.channels_last},
        )
    elif form == "requires_grad":
        x.requires_grad_()
    elif form == "train_mode":
        model.train()
    cm, rep = convert(model, (x,))
    prefix = "net." if form == "quant_stub" else ""
    assert rep.converted == [f"{prefix}b1.conv", f"{prefix}b2.conv"], str(rep)
    assert model.training == (form == "train_mode") and not cm.training
    _same_outputs(cm, model.eval(), _SHAPES, dtype=dtype, tol=1e-6 if dtype == torch.float64 else 1e-5, **to)


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


# --- layer forms ---------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["after", "before"])
def test_tensorflow_same_padding_stays_float(where):
    """A larq / TensorFlow model ported with padding="same", stride 2: F.pad(.., (0, 1, 0, 1)) of the
    binarized (or real) input before a conv without padding. The packed convs pad symmetrically:
    the layer stays float, reported as padded asymmetrically."""
    model = _random_bn(P.FloatThenBinary(P.SamePadXnorConv(8, 8, where), 8, 8))
    _stays_float(model, _x(4, 8, 7, 7), "layer", "asymmetric F.pad", P.SamePadXnorConv)


@pytest.mark.parametrize(
    "conv,shape,op",
    [
        (lambda: nn.Conv1d(8, 12, 5, padding=2, bias=False), (4, 8, 20), "conv1d"),
        (lambda: nn.ConvTranspose2d(8, 6, 2, stride=2, bias=False), (4, 8, 5, 5), "conv_transpose2d"),
    ],
)
def test_conv1d_packs_and_transposed_binary_layers_stay_float(conv, shape, op):
    """A keyword-spotting BNN's binary Conv1d used to stay float ("it computes its layer with
    conv1d, which is not packed"): it is now a BinaryConv1d (the conv2d of height 1) with its
    BatchNorm1d folded, also under strict=True, and equal to the model on fresh inputs of other
    batch sizes and lengths. A segmentation decoder's binary ConvTranspose2d stays float, reported
    with the product; strict=True names it."""
    layer = conv()
    model = _random_bn(P.FloatThenBinary(P.XnorConvNd(layer), 8, layer.out_channels, dims=len(shape) - 2))
    if op == "conv_transpose2d":
        _stays_float(model, _x(*shape), "layer", f"it computes its layer with {op}", P.XnorConvNd)
        return
    cm, rep = convert(model, (_x(*shape),), strict=True)
    assert rep.converted == ["layer"] and rep.fused == {"bn": "layer"}, str(rep)
    assert type(cm.layer) is BinaryConv1d and cm.layer.kernel_size == (1, 5) and cm.layer.padding == (0, 2)
    _same_outputs(cm, model, [(1, 8, 13), (5, 8, 27)])


@pytest.mark.parametrize("cin,groups,dilation", [(36, 4, 2), (24, 8, 3), (12, 12, 2)])
def test_grouped_and_dilated_binary_convs_of_odd_group_width(cin, groups, dilation):
    """Groups of 9 or 3 channels (not a multiple of 32 bits), depthwise, dilation 2 and 3: packed,
    exact on fresh inputs of other sizes."""
    layer = nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=groups, bias=False)
    model = _random_bn(P.FloatThenBinary(P.XnorConvNd(layer), cin, cin))
    cm, rep = _check_on_fresh_inputs(model, _x(3, cin, 7, 6), (3, cin, 7, 6), ["layer"])
    assert type(cm.layer) is BinaryConv2d and cm.layer.groups == groups, str(rep)
    _same_outputs(cm, model, [(1, cin, 9, 5), (4, cin, 6, 8)])


# --- data-dependent scaling around the binary conv -------------------------------------------------
def test_xnor_k_map_in_the_caller():
    """XNOR-Net's K map computed in the caller: the conv module is binary and packs (from several
    examples; the caller's factor stays float); from a single example it cannot tell sign(x) from a
    per-sample scale and stays float, the report saying so."""
    model = _random_bn(P.XnorKMapBlock(8))
    cm, rep = _check_on_fresh_inputs(model, _x(4, 8, 6, 6), (4, 8, 6, 6), ["conv"])
    _same_outputs(cm, model, [(1, 8, 9, 5), (3, 8, 6, 6)])
    _, rep1 = convert(model, (_x(1, 8, 6, 6),))
    assert rep1.converted == [] and "convert with several examples" in rep1.skipped["conv"], str(rep1)


def test_pokebnn_block():
    """PokeBNN-style block (sign(x * s), DPReLU, shifted ReLU, three residuals): both binary convs pack
    and the block is exact on fresh inputs; also with a negative learned s (sign(x * s) = -sign(x):
    packed with the weights negated, tests/convert/test_negated_inputs.py)."""
    for scale in (0.7, -0.7):
        model = _random_bn(P.PokeBlock(8, scale))
        cm, rep = _check_on_fresh_inputs(model, _x(4, 8, 6, 6), (4, 8, 6, 6), ["c1", "c2"])
        _same_outputs(cm, model, [(1, 8, 9, 5)])
        assert ("decreasing" in rep.layers["c1"]["kind"]) == (scale < 0), rep.layers["c1"]


@pytest.mark.parametrize("t", [0.5, 1e-3, 10.0, -0.3])
def test_fracbnn_two_bit_activation_stays_float(t):
    """FracBNN's sign(x) + sign(x - t) in {-2, 0, 2}: never a +-a input, also where the examples show
    two of its values only (t = 10: all below t; t = 1e-3: hardly any between 0 and t)."""
    model = _random_bn(P.FloatThenBinary(P.FracConv(8, t), 8, 8))
    rep = _stays_float(model, _x(4, 8, 6, 6), "layer", "", P.FracConv)
    why = rep.skipped["layer"]  # zeros among the +-2 values, or a third value where the probes look
    assert "are exactly 0 on the examples" in why or "threshold not identified" in why, why


def test_boolnet_binary_features_between_blocks():
    """BoolNet-style blocks pass +-1 features (sign after BatchNorm and the binary residual in the
    block): the conv modules pack, the model is exact on fresh inputs."""
    model = _random_bn(P.BoolNet())
    cm, rep = _check_on_fresh_inputs(model, _x(4, 8, 6, 6), (4, 8, 6, 6), ["b1.conv", "b2.conv"])
    _same_outputs(cm, model, [(1, 8, 9, 5), (3, 8, 6, 6)], tol=0)


# --- state changed by the model's own forward ------------------------------------------------------
@pytest.mark.parametrize("make", ["observers", "running_peak"])
def test_buffers_the_forward_changes_come_back_as_they_were(make):
    """A model prepared for post-training quantization (MinMaxObserver after every float layer, with
    its calibrated min / max) or a module keeping a running peak in eval mode, before binary convs
    whose input is binarized upstream: convert runs the whole model on inputs derived from the
    examples (up to 256 times them) to check those convs, and used to return it
    with those buffers changed (the observers' ranges blown up, the peak 256 times larger: outputs
    off). They are now restored, and the report names them."""
    if make == "observers":
        model = P.observed(_random_bn(P.QuantStubNet(P.UpstreamSignResNet())))
    else:
        model = _random_bn(P.PeakNormResNet())
    x = _x(4, 3, 8, 8)
    with torch.no_grad():
        model(x)  # calibration
    before = {n: b.clone() for n, b in model.named_buffers()}
    twin = copy.deepcopy(model)
    cm, rep = convert(model, (x,))
    prefix = "net." if make == "observers" else ""
    assert rep.converted == [f"{prefix}b1.conv", f"{prefix}b2.conv"], str(rep)
    assert "restored to their values before conversion" in rep.notes["<model>"][0], str(rep)
    after = dict(cm.named_buffers())
    kept = [n for n in before if n in after]
    assert any("activation_post_process" in n or n == "norm.peak" for n in kept)
    for n in kept:
        assert torch.equal(after[n], before[n]), n
    for i, shape in enumerate(_SHAPES):  # the same state, then the same updates on the same inputs
        xf = _fresh(shape, 40 + i)
        with torch.no_grad():
            torch.testing.assert_close(cm(xf), twin(xf), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes (add_note) need Python 3.11")
def test_a_model_failing_on_its_examples_says_so():
    """Examples the model does not take (float64 for a float32 model): the model's own error,
    which used to reach the user alone, now carries a note that convert ran the model on
    example_inputs, with their dtypes and shapes (Python 3.10: the error as raised)."""
    with pytest.raises(RuntimeError) as info:
        convert(_resnet(), (_x(2, 3, 8, 8).double(),))
    assert "run on example_inputs (float64 (2, 3, 8, 8))" in "".join(getattr(info.value, "__notes__", [])), info.value


def test_autocast_in_the_forward_stays_float():
    """torch.autocast in the model's forward computes the convs from bfloat16 copies of float32
    weights. convert used to crash (RuntimeError: expected scalar type BFloat16 but found Float)
    when it probed a conv module alone, outside autocast, on the bfloat16 input it had recorded. A
    call whose input, weight, bias and output dtypes differ is now left in float, reported as
    running under autocast; strict=True names the binary layers; the model is unchanged."""
    model = _random_bn(P.AutocastResNet())
    x = _x(4, 3, 8, 8)
    cm, rep = convert(model, (x,))
    assert rep.converted == [] and "runs under torch.autocast" in rep.skipped["b1.conv"], str(rep)
    assert type(cm.b1.conv) is P.XnorConv2d
    _same_outputs(cm, model, _SHAPES, tol=0)
    with pytest.raises(ConversionError, match="b1.conv: its conv2d call mixes dtypes") as info:
        convert(model, (x,), strict=True)
    assert "b2.conv: " in str(info.value) and "stem" not in str(info.value)


@pytest.mark.parametrize("how", ["structured", "unstructured"])
def test_pruned_binary_conv_packs_ternary(how):
    """torch.nn.utils.prune's forward pre-hook only recomputes the weight (weight_orig * mask), as
    weight_norm's does: convert used to leave the pruned conv in float ("it has forward pre-hooks
    that may change the input"). It now packs, the pruned weights as ternary zeros, exact on fresh
    inputs. (A pruned model cannot be deep-copied: inplace=True.)"""
    model, twin = (P.pruned(_random_bn(P.TinyXnorResNet(), seed=1), how) for _ in range(2))
    twin.load_state_dict(model.state_dict())
    cm, rep = convert(model, (_x(4, 3, 8, 8),), inplace=True)
    assert rep.converted == ["b1.conv", "b2.conv"] and cm.b1.conv.ternary, str(rep)
    _same_outputs(cm, twin, _SHAPES)


def test_batchnorm_with_a_fake_quantize_hook_is_not_folded():
    """A BatchNorm prepared for quantization-aware training: its forward hook runs FakeQuantize (a
    submodule) on its output. convert used to fold it into the binary conv before it (its own ops
    are one eval batch_norm) and drop the rounding with the module: 3% off on fresh inputs. A
    BatchNorm folds only where its output is affine in its input through its hooks and
    submodules too; the conv still packs, the next block's plain BatchNorm still folds."""
    x = _x(4, 3, 8, 8)
    model = P.fake_quantized_bn(_resnet(), x)
    twin = copy.deepcopy(model)
    cm, rep = convert(model, (x,))
    assert rep.converted == ["b1.conv", "b2.conv"] and rep.fused == {"b2.bn": "b2.conv"}, str(rep)
    assert type(cm.b1.bn) is nn.BatchNorm2d
    for i, shape in enumerate(_SHAPES):  # FakeQuantize's observer updates in eval mode: the same inputs in turn
        xf = _fresh(shape, 50 + i)
        with torch.no_grad():
            torch.testing.assert_close(cm(xf), twin(xf), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("inplace", [False, True])
def test_uninitialized_lazy_modules_are_refused(inplace):
    """A model with Lazy modules not run yet has no weights. convert used to say it could not
    deep-copy it and to pass inplace=True, which would have converted randomly initialized
    weights. It is now refused like a meta-device model, naming the parameter; run once, the
    model converts."""
    model = P.LazyXnorNet().eval()
    with pytest.raises(ValueError, match="model: stem.weight is uninitialized"):
        convert(model, (_x(2, 3, 6, 6),), inplace=inplace)
    with torch.no_grad():
        model(_x(2, 3, 6, 6))
    cm, rep = convert(model, (_x(4, 3, 6, 6),))
    assert rep.converted == ["b1.conv"], str(rep)


def test_a_shared_buffer_the_forward_changes_comes_back_shared():
    """Two RunningPeakNorm modules sharing their peak buffer: restored to the same tensor (still
    shared, the value before conversion)."""
    model = _random_bn(P.PeakNormResNet())
    x = _x(4, 3, 8, 8)
    with torch.no_grad():
        model(x)
    model.norm2 = P.RunningPeakNorm()
    model.norm2.peak = model.norm.peak  # its forward reassigns its own: shared until the next call
    peak = model.norm.peak.clone()
    cm, rep = convert(model, (x,), inplace=True)
    assert rep.converted == ["b1.conv", "b2.conv"], str(rep)
    assert cm.norm.peak is cm.norm2.peak and torch.equal(cm.norm.peak, peak)
