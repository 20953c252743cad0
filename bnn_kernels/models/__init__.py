"""BNN definitions written the way training code writes them (plain PyTorch, no packing).

These are the float models ``bnn_kernels.convert`` is tested and benchmarked on: nothing here
knows about packed kernels. Train them, or load trained weights into them, then convert.

Layer families (``families``):
- ReActNet-style: RSign (learnable per-channel shift, then sign) and RPReLU modules around a
  binary conv whose weights are sign * mean|w| (ReActBlock); a variant whose conv applies the
  learnable shift and the sign inside its own forward (ShiftSignConv2d).
- Bi-Real-style: the conv binarizes its own input with the piecewise-polynomial STE written as
  ``out_forward.detach() - out3.detach() + out3``; real-valued shortcut around every conv.
- XNOR-Net-style: BN -> Sign module -> conv on sign weights, per-channel mean|w| applied to the
  conv's output (after the call), then ReLU.
- DoReFa-style: k-bit activation quantizer (separate module, or inside the conv's forward).
- Binary-weight-only (BinaryConnect / BWN): real activations, sign * mean|w| weights.

Whole networks: small ones per family (``small``: ReActNetSmall, BiRealSmall, XNORNetSmall,
DigitsBNN; DoReFaNet and BWNMLP sit with their family) and full-size ones (``full_size``:
``birealnet18()``, the ResNet-18 Bi-Real Net, ``reactnet_a()``, MobileNet-style, and
``bwn_resnet18()``, a ResNet-18 with binary weights and real activations).
``randomize_bn`` gives BatchNorm / RSign / RPReLU trained-looking values.
"""

from .families import (
    BWNMLP,
    BinaryConv2dSTE,
    BiRealBlock,
    BiRealConv2d,
    BWNConv2d,
    BWNLinear,
    DoReFaAct,
    DoReFaConv2d,
    DoReFaNet,
    DoReFaQConv2d,
    ReActBlock,
    RPReLU,
    RSign,
    ShiftSignConv2d,
    SignAct,
    XNORBlock,
    XNORConv2d,
    binary_weight,
    birealnet_sign,
    randomize_bn,
    sign_ste,
)
from .full_size import BiRealNet18, BWNResNet18, ReActNetA, birealnet18, bwn_resnet18, reactnet_a
from .small import BiRealSmall, DigitsBNN, ReActNetSmall, XNORNetSmall

__all__ = [
    "sign_ste",
    "binary_weight",
    "birealnet_sign",
    "RSign",
    "RPReLU",
    "BinaryConv2dSTE",
    "ShiftSignConv2d",
    "ReActBlock",
    "BiRealConv2d",
    "BiRealBlock",
    "SignAct",
    "XNORConv2d",
    "XNORBlock",
    "DoReFaAct",
    "DoReFaConv2d",
    "DoReFaQConv2d",
    "DoReFaNet",
    "BWNLinear",
    "BWNConv2d",
    "BWNMLP",
    "ReActNetSmall",
    "BiRealSmall",
    "XNORNetSmall",
    "DigitsBNN",
    "BiRealNet18",
    "ReActNetA",
    "birealnet18",
    "BWNResNet18",
    "bwn_resnet18",
    "reactnet_a",
    "randomize_bn",
]
