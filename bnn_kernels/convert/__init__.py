"""Trained float BNN -> packed model: ``convert(model, example_inputs)``.

How it works (no class names are looked at):

1. The model runs once on ``example_inputs`` (eval mode, no grad) under a TorchFunctionMode
   that intercepts every ``F.conv2d`` / ``torch.conv2d`` / ``F.conv1d`` / ``torch.conv1d`` / ``F.linear``
   call (also as the ATen operators a ``torch.export`` graph calls, ``torch.ops.aten.conv2d.default``,
   ``aten.conv1d.default``; a conv1d call is planned as the conv2d of height 1 it is and packed as the
   1-D module of its family, bnn_kernels.nn.conv1d, see _conv1d.py; and ``z @ W``,
   ``torch.matmul(z, W)``, ``torch.mm`` of data derived from the module's input with a 2-D W
   that is not: the linear call with weight W.t()) and records the
   tensors the call really used: its input Z, its effective weight W (after whatever sign /
   centring / scaling the training code applied), its bias and its output. Forward hooks on
   every module keep a module stack, so each call is attributed to the innermost module whose
   forward made it; the hooks also record that module's own input X and output O.
2. Each call is classified. The weight is *binary* when every output channel is +-alpha
   (any alpha: per layer or per channel, negative, learned...), *ternary* when some weights
   are exactly 0 besides (``torch.sign(0) = 0``: packed with ``ternary=True``, exact). The
   input Z is
   - +-a                 -> BinaryConv2d / BinaryLinear,
   - {0, a}              -> BitSerial*(act="step"),
   - a grid s * {0..2^k-1}, k <= 4 -> BitSerial*(act="round"),
   - beta +- alpha (AdaBin; weights beta_o +- alpha_o) -> OffsetBinaryConv2d,
   - anything else       -> BinaryWeightConv2d / BinaryWeightLinear (real input).
3. The packed module replaces the whole module that made the call, so it must reproduce the
   module's forward from X: the relation X -> Z is identified (identity, ``sign(x)``,
   ``sign(x - t)`` / ``sign(x + b)`` with t a parameter of the module or the zero crossing of an
   eval BatchNorm before the sign, Heaviside, DoReFa rounding; per input channel increasing, or
   decreasing as sign(-x) or sign(x * s) with s < 0: packed as the complement of x > t with that
   channel's weights negated, for +-a inputs only; a threshold candidate that fits the examples is checked by running the module on
   values across the interval the examples leave open around it, so that a small learned
   threshold is not taken for 0) and so is O <- Y (identity or a per-channel affine map, e.g. a scale applied
   after the call; every op the module applies to data derived from Y is checked to be
   affine in Y: add/sub/mul/div by other tensors, views, eval BatchNorm). Whether values
   exactly at the threshold map high (``x >= t``) or low (``x > t``, ``sign(relu(x))``) is
   probed by running the module on them. What cannot be identified is skipped with a reason.
   An output that combines data derived from the call's output with data derived from the
   module's input otherwise (a gate or scale computed from the real input, as in Real-to-Binary;
   a residual) is refused, whatever the examples show.
   Data-dependent binarization is refused: if anything but elementwise ops (a mean, std,
   norm, max over the sample, as in sign((a - mean(a)) / std(a))) lies between X and Z, or
   the module reads input values into Python before its call, the layer stays in float. A
   symmetric F.pad between them is the conv's padding (_padmode.py): a copying mode is the packed
   module's padding_mode; a constant whose border is 0 at the call is zero padding, +1 or -1 in
   every channel BinaryConv2d's pad_value; other pads leave the layer in float, with the reason.
4. Each new module is verified on the recorded examples, then on inputs derived from them
   (noise, rescaled, shifted per sample, and few-valued inputs resampled with another mix per
   sample) and on the examples at other shapes (one sample more, one sample, each dim one
   longer, where the module takes them: arithmetic that reads the input's shape, as
   y / y.shape[-1], is a constant at one shape): its integer part against the call's exact
   integer result, its float output against O (float rounding); folded neighbours and
   binarizers are checked at those shapes too; then the whole model runs on inputs derived
   from its examples
   and each new module is checked on the inputs its caller feeds it there (an input binarized
   upstream with a batch-dependent scale). Any disagreement leaves the layer in float. At the end the
   whole converted model is compared with the original on the examples.

strict=True raises ConversionError for every skipped layer with evidence of being binary
(binarizing ops such as sign, comparisons, where, round or clamp before its call, +-alpha
weights, or a binary input), naming the layer and the reason; real-valued layers are only
reported.

Fusion (``fuse=True``): a module that directly consumes the output of a converted module (and
nothing else reads that output) is folded into the packed module's per-channel multiplier and
bias, and replaced by ``bnn_kernels.nn.Folded``, when it is
- an eval-mode BatchNorm (its exact running statistics and affine parameters are used), or
- any per-channel scale + shift written as arithmetic (``x * s + b``...): every op on data
  derived from its input must be affine in it (add/sub/mul/div by tensors not derived from the
  input, views, batch_norm), which is tracked op by op; the per-channel a, b are then fitted on
  the examples and checked. ReLU, PReLU, ``x * x`` and the like are never folded.
One module is folded per packed module (a chain BN -> scale folds the BN only).
On the input side, a module that binarizes the input of packed binary modules (sign(x),
sign(x + b) with b a parameter of that module: RSign) and whose output nothing else reads is
folded into their per-channel thresholds, so the float sign is not computed. Its output may
have several readers (ReActNet-A's doubled blocks feed one RSign to two 1x1 convs): each is
checked on its own, and the module is folded only when every reader is a packed binary module
that takes the threshold; otherwise none is.

Semantics difference to keep in mind: where the module binarizes with ``torch.sign``, an
input exactly equal to the threshold packs as +1 (``torch.sign`` gives 0 there), and a {0, a}
binarizer giving a / 2 there (``(sign(x) + 1) / 2``) packs it as 0; a binarizer giving any other
third value at its threshold (``heaviside(x, 0.25)``) leaves the layer in float. Inputs of
exactly 0 already present among the call's +-a values on the examples leave the layer in float.
"""

from ._convert import convert
from ._report import ConversionError, ConversionReport

__all__ = ["convert", "ConversionReport", "ConversionError"]
