"""PyTorch checkpoints (timm / torchvision parameter names) -> kres layers, in NumPy.

Two naming schemes cover the ImageNet models:

* timm ``ResNet`` (= torchvision): ``conv1``/``bn1`` (deep stem: ``conv1.0/.1/.3/.4/.6``),
  ResNet-RS's strided conv in place of the stem pool ``maxpool.0``/``.1``,
  ``layer{s}.{b}.conv{k}``/``bn{k}``, shortcut ``downsample.0``/``.1`` (ResNet-D: ``.1``/``.2``
  after the average pool), attention ``se.fc1``/``se.fc2`` (SE) or ``se.conv`` (ECA), classifier
  ``fc``. BlurPool has no parameters.
* timm ``ResNetV2`` (pre-activation, BatchNorm or BiT's GroupNorm + weight-standardised convs):
  ``stem.conv``, ``stages.{s}.blocks.{b}.norm1/conv1/norm2/conv2/norm3/conv3``,
  ``downsample.conv``, final ``norm``, classifier ``head.fc`` (a 1x1 conv).

PyTorch kernels are OIHW (grouped: ``(out, in/groups, kh, kw)``), Keras' are HWIO
(``(kh, kw, in/groups, out)``): one transpose covers both; 1-D (ECA) kernels go from
``(out, in, k)`` to ``(k, in, out)``. GroupNorm layers (``*_gn``) take the names of the BatchNorm
layers they replace.
"""

import math
import re

import numpy as np

from kres.errors import KresError

_UNIT = re.compile(r"^conv(\d+)_block(\d+)_(.+)$")
_V1 = {"1_conv": "conv1", "1_bn": "bn1", "2_conv": "conv2", "2_bn": "bn2", "3_conv": "conv3",
       "3_bn": "bn3", "se_reduce": "se.fc1", "se_expand": "se.fc2", "eca_conv": "se.conv"}
_V2 = {"preact_bn": "norm1", "1_conv": "conv1", "1_bn": "norm2", "2_conv": "conv2",
       "2_bn": "norm3", "3_conv": "conv3", "0_conv": "downsample.conv"}
_DEEP_STEM = {"conv1_1_conv": "conv1.0", "conv1_1_bn": "conv1.1", "conv1_2_conv": "conv1.3",
              "conv1_2_bn": "conv1.4", "conv1_conv": "conv1.6", "conv1_bn": "bn1"}
_RS_STEM_POOL = {"pool1_conv": "maxpool.0", "pool1_bn": "maxpool.1"}
STEM_CONVS = ("conv1_conv", "conv1_1_conv")  # the convolutions that see the image
CLASSIFIER = "predictions"


def scheme(spec):
    """"resnet" (timm ResNet / torchvision) or "resnetv2" (timm ResNetV2), or None."""
    if spec.block in ("basic", "bottleneck") and spec.stem in ("imagenet", "deep"):
        return "resnet"
    if spec.block in ("preact_basic", "preact_bottleneck") and spec.stem in ("preact", "bit"):
        return "resnetv2"
    return None


def torch_prefix(layer_name, spec):
    """The timm/torchvision module name of the kres layer ``layer_name`` (None if unknown)."""
    kind = scheme(spec)
    if layer_name.endswith("_gn"):
        layer_name = layer_name[:-3] + "_bn"
    if layer_name == CLASSIFIER:
        return "fc" if kind == "resnet" else "head.fc"
    if kind == "resnet":
        if spec.stem == "deep" and layer_name in _DEEP_STEM:
            return _DEEP_STEM[layer_name]
        if layer_name in ("conv1_conv", "conv1_bn"):
            return {"conv1_conv": "conv1", "conv1_bn": "bn1"}[layer_name]
        if spec.stem_pool == "conv" and layer_name in _RS_STEM_POOL:
            return _RS_STEM_POOL[layer_name]
    elif kind == "resnetv2":
        if layer_name == "conv1_conv":
            return "stem.conv"
        if layer_name == "post_bn":
            return "norm"
    m = _UNIT.match(layer_name)
    if not m or kind is None:
        return None
    stage, block, part = int(m.group(1)), int(m.group(2)), m.group(3)
    if kind == "resnet":
        down = 1 if spec.shortcut == "avgpool" else 0  # ResNet-D: index 0 is the pool
        table = dict(_V1, **{"0_conv": f"downsample.{down}", "0_bn": f"downsample.{down + 1}"})
        return f"layer{stage - 1}.{block - 1}.{table[part]}" if part in table else None
    return f"stages.{stage - 2}.blocks.{block - 1}.{_V2[part]}" if part in _V2 else None


def layer_arrays(layer, prefix, state):
    """The checkpoint arrays for one Keras layer, converted to Keras layout, in the order of
    ``layer.weights``, as ``[(keras variable, array, checkpoint key)]``. Missing keys raise."""
    kind = type(layer).__name__
    out = []
    for var in layer.weights:
        vname = var.name.split("/")[-1].split(":")[0]
        suffix = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                  "moving_mean": "running_mean", "moving_variance": "running_var"}.get(vname)
        key = f"{prefix}.{suffix}"
        if suffix is None or key not in state:
            raise KresError(f"the checkpoint has no parameter {key!r} for kres layer "
                            f"{layer.name!r} ({vname}); it is not a checkpoint of this "
                            f"architecture")
        value = np.asarray(state[key])
        if vname == "kernel" and kind == "Dense":
            value = value.reshape(value.shape[0], -1).T  # Linear (out, in) or 1x1 conv head
        elif vname == "kernel" and value.ndim == 4:  # Conv2D, StdConv2D
            value = value.transpose(2, 3, 1, 0)
        elif vname == "kernel" and value.ndim == 3:  # Conv1D (ECA)
            value = value.transpose(2, 1, 0)
        out.append((var, value, key))
    return out


def adapt_input_conv(kernel, in_chans):
    """timm's ``adapt_input_conv`` for an HWIO kernel: 1 channel sums the RGB filters; more than
    3 repeats them and rescales by 3 / channels, so the response to a grey image is unchanged."""
    have = kernel.shape[2]
    if have == in_chans:
        return kernel
    if have != 3:
        raise KresError(f"cannot adapt a stem convolution with {have} input channels to "
                        f"{in_chans} (only 3-channel checkpoints can be adapted)")
    if in_chans == 1:
        return kernel.sum(axis=2, keepdims=True)
    repeat = math.ceil(in_chans / 3)
    return (np.tile(kernel, (1, 1, repeat, 1))[:, :, :in_chans, :] * (3.0 / in_chans)).astype(
        kernel.dtype)
