"""Residual units, shortcuts and stems: small functions over Keras tensors (``x -> x``).

Each unit takes the tensor, a :class:`Unit` (its filters, stride, name and drop-path rate) and the
:class:`Pieces` made from the spec (conv, norm, activation, attention, shortcut, merge). Options such
as squeeze-excitation, stochastic depth or residual scaling live in the pieces, so the units stay
the textbook diagrams. Layer names follow keras.applications (``conv4_block6_out``), so features can
be tapped by name in every model.
"""

import math
from dataclasses import dataclass

import keras
from keras import layers

from kres.models.layers import DropPath, ResidualAdd, SymmetricMaxPool, ZeroPadChannels


@dataclass(frozen=True)
class Unit:
    planes: int
    stride: int
    name: str
    drop_path: float = 0.0


def make_divisible(v, divisor=8, round_limit=0.0):
    """timm's channel rounding (its SEModule rounds with round_limit=0)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


class Pieces:
    """The layers a spec plugs into every unit."""

    def __init__(self, spec):
        self.spec = spec
        n = spec.num_units
        self.alpha = 1.0 / n if spec.shortcut_scale == "1/L" else float(spec.shortcut_scale)
        self.keras_layout = spec.block.startswith("keras")

    def kernel_init(self):
        """torchvision / timm: He-normal, fan-out; keras.applications keeps Keras' default.
        A new initializer per layer: Keras 3 gives every layer sharing one unseeded
        initializer instance the same values."""
        if self.keras_layout:
            return "glorot_uniform"
        return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")

    def conv(self, x, filters, kernel, name, stride=1, groups=1, zero_init=False):
        """Convolution with PyTorch-style symmetric padding (explicit ZeroPadding2D when strided),
        so ported weights give identical outputs."""
        if kernel > 1 and stride > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=name.replace("_conv", "_pad"))(x)
            padding = "valid"
        else:
            padding = "same" if kernel > 1 else "valid"
        return layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, groups=groups,
            use_bias=self.spec.conv_bias, name=name,
            kernel_initializer="zeros" if zero_init else self.kernel_init(),
        )(x)

    def norm(self, x, name, zero_init=False):
        return layers.BatchNormalization(
            epsilon=self.spec.bn_epsilon, momentum=self.spec.bn_momentum,
            synchronized=self.spec.sync_bn, gamma_initializer="zeros" if zero_init else "ones",
            name=name,
        )(x)

    def act(self, x, name):
        return layers.Activation("relu", name=name)(x)

    def conv_norm_act(self, x, filters, kernel, name, stride=1, groups=1):
        x = self.conv(x, filters, kernel, f"{name}_conv", stride, groups)
        return self.act(self.norm(x, f"{name}_bn"), f"{name}_relu")

    def attention(self, x, name):
        """Squeeze-and-excitation (Hu et al. 2018) when ``se_ratio`` > 0, else nothing."""
        if not self.spec.se_ratio:
            return x
        channels = x.shape[-1]
        reduced = make_divisible(channels * self.spec.se_ratio)
        s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
        s = layers.Conv2D(reduced, 1, activation="relu", name=f"{name}_se_reduce")(s)
        s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
        return layers.Multiply(name=f"{name}_se_excite")([x, s])

    def shortcut(self, x, out_channels, stride, name, preact_input=None):
        """The identity path: identity, option A (zero-pad), option B (projection), ResNet-D
        (average-pool + projection) or keras' v2 subsampling. ``None`` for plain networks."""
        kind, in_channels = self.spec.shortcut, x.shape[-1]
        if kind == "none":
            return None
        if stride == 1 and in_channels == out_channels:
            return x
        if kind == "zeropad":
            if stride > 1:
                x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
            if out_channels != in_channels:
                x = ZeroPadChannels(out_channels - in_channels, name=f"{name}_0_zeropad")(x)
            return x
        if kind == "subsample" and in_channels == out_channels:
            return layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
        source = x if preact_input is None else preact_input
        if kind == "avgpool" and stride > 1:
            source = layers.AveragePooling2D(2, strides=stride, padding="same",
                                             name=f"{name}_0_pool")(source)
            stride = 1
        y = layers.Conv2D(out_channels, 1, strides=stride, use_bias=self.spec.conv_bias,
                          kernel_initializer=self.kernel_init(), name=f"{name}_0_conv")(source)
        return y if preact_input is not None else self.norm(y, f"{name}_0_bn")

    def merge(self, shortcut, branch, unit, post_act=True):
        """shortcut + branch (with drop-path and residual scaling), then ReLU for post-activation
        units. Plain networks have no shortcut: just the activation."""
        if shortcut is None:
            return self.act(branch, f"{unit.name}_out") if post_act else branch
        if unit.drop_path > 0:
            branch = DropPath(unit.drop_path, name=f"{unit.name}_drop_path")(branch)
        out_name = f"{unit.name}_add" if post_act else f"{unit.name}_out"
        if self.alpha == 1.0 and self.spec.step_size == 1.0:
            x = layers.Add(name=out_name)([shortcut, branch])
        else:
            x = ResidualAdd(self.alpha, self.spec.step_size, name=out_name)([shortcut, branch])
        return self.act(x, f"{unit.name}_out") if post_act else x

    def dropout(self, x, name):
        return layers.Dropout(self.spec.dropout, name=name)(x) if self.spec.dropout else x


# ---------------------------------------------------------------------------------------------
# Residual units


def basic(x, u, p):
    """Two 3x3 convolutions (He et al. 2015, Fig. 2 left)."""
    out = u.planes
    shortcut = p.shortcut(x, out, u.stride, u.name)
    y = p.conv_norm_act(x, u.planes, 3, f"{u.name}_1", u.stride)
    y = p.dropout(y, f"{u.name}_dropout")
    y = p.conv(y, out, 3, f"{u.name}_2_conv")
    y = p.norm(y, f"{u.name}_2_bn", zero_init=p.spec.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u)


def bottleneck(x, u, p):
    """1x1 reduce, 3x3 (grouped for ResNeXt, strided: the "v1.5" layout), 1x1 expand."""
    s = p.spec
    width = math.floor(u.planes * s.base_width / 64) * s.cardinality
    out = u.planes * 4
    shortcut = p.shortcut(x, out, u.stride, u.name)
    y = p.conv_norm_act(x, width, 1, f"{u.name}_1")
    y = p.conv_norm_act(y, width, 3, f"{u.name}_2", u.stride, groups=s.cardinality)
    y = p.conv(y, out, 1, f"{u.name}_3_conv")
    y = p.norm(y, f"{u.name}_3_bn", zero_init=s.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u)


def _preact(x, u, p):
    y = p.act(p.norm(x, f"{u.name}_preact_bn"), f"{u.name}_preact_relu")
    return y


def preact_basic(x, u, p):
    """BN-ReLU before each conv, identity path untouched (He et al. 2016); Wide ResNet units
    put dropout between the two convolutions (Zagoruyko & Komodakis 2016)."""
    pre = _preact(x, u, p)
    shortcut = p.shortcut(x, u.planes, u.stride, u.name, preact_input=pre)
    y = p.conv_norm_act(pre, u.planes, 3, f"{u.name}_1", u.stride)
    y = p.dropout(y, f"{u.name}_dropout")
    y = p.conv(y, u.planes, 3, f"{u.name}_2_conv", zero_init=p.spec.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u, post_act=False)


def preact_bottleneck(x, u, p):
    """Pre-activation bottleneck (He et al. 2016; timm's PreActBottleneck)."""
    s = p.spec
    width = math.floor(u.planes * s.base_width / 64) * s.cardinality
    out = u.planes * 4
    pre = _preact(x, u, p)
    shortcut = p.shortcut(x, out, u.stride, u.name, preact_input=pre)
    y = p.conv_norm_act(pre, width, 1, f"{u.name}_1")
    y = p.conv_norm_act(y, width, 3, f"{u.name}_2", u.stride, groups=s.cardinality)
    y = p.conv(y, out, 1, f"{u.name}_3_conv", zero_init=s.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u, post_act=False)


def keras_v1(x, u, p):
    """keras.applications' ResNet v1 unit: the stride sits in the first 1x1 conv."""
    out = u.planes * 4
    shortcut = p.shortcut(x, out, u.stride, u.name)
    y = layers.Conv2D(u.planes, 1, strides=u.stride, name=f"{u.name}_1_conv")(x)
    y = p.act(p.norm(y, f"{u.name}_1_bn"), f"{u.name}_1_relu")
    y = p.conv_norm_act(y, u.planes, 3, f"{u.name}_2")
    y = p.norm(p.conv(y, out, 1, f"{u.name}_3_conv"), f"{u.name}_3_bn",
               zero_init=p.spec.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u)


def keras_v2(x, u, p):
    """keras.applications' ResNet v2 unit (bias-free inner convs, strided 3x3 padded explicitly)."""
    out = u.planes * 4
    pre = _preact(x, u, p)
    shortcut = p.shortcut(x, out, u.stride, u.name, preact_input=pre)
    y = layers.Conv2D(u.planes, 1, use_bias=False, name=f"{u.name}_1_conv")(pre)
    y = p.act(p.norm(y, f"{u.name}_1_bn"), f"{u.name}_1_relu")
    y = layers.ZeroPadding2D(1, name=f"{u.name}_2_pad")(y)
    y = layers.Conv2D(u.planes, 3, strides=u.stride, use_bias=False, name=f"{u.name}_2_conv")(y)
    y = p.act(p.norm(y, f"{u.name}_2_bn"), f"{u.name}_2_relu")
    y = layers.Conv2D(out, 1, name=f"{u.name}_3_conv",
                      kernel_initializer="zeros" if p.spec.zero_init_last else "glorot_uniform")(y)
    return p.merge(shortcut, p.attention(y, u.name), u, post_act=False)


UNITS = {
    "basic": basic,
    "bottleneck": bottleneck,
    "preact_basic": preact_basic,
    "preact_bottleneck": preact_bottleneck,
    "keras_v1": keras_v1,
    "keras_v2": keras_v2,
}


# ---------------------------------------------------------------------------------------------
# Stems: each returns (output, feature tap)


def _pool(x):
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)  # zeros are safe after a ReLU
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def imagenet_stem(x, p):
    """7x7/2 conv, BN, ReLU, 3x3/2 max-pool (keras.applications' names)."""
    x = p.conv_norm_act(x, p.spec.stem_width, 7, "conv1", stride=2)
    return _pool(x), x


def deep_stem(x, p):
    """Three 3x3 convs instead of the 7x7 (ResNet-C/D, Bag of Tricks; timm's "deep" stem)."""
    w = p.spec.stem_width
    x = p.conv_norm_act(x, w, 3, "conv1_1", stride=2)
    x = p.conv_norm_act(x, w, 3, "conv1_2")
    x = p.conv_norm_act(x, w * 2, 3, "conv1")
    return _pool(x), x


def preact_stem(x, p):
    """Conv only, then max-pool padded with -inf (the input to the pool can be negative)."""
    x = p.conv(x, p.spec.stem_width, 7, "conv1_conv", stride=2)
    return SymmetricMaxPool(3, 2, 1, name="pool1_pool")(x), x


def keras_v2_stem(x, p):
    x = p.conv(x, p.spec.stem_width, 7, "conv1_conv", stride=2)
    return _pool(x), x


def cifar_stem(x, p):
    x = p.conv_norm_act(x, p.spec.stem_width, 3, "conv1")
    return x, x


def cifar_preact_stem(x, p):
    x = p.conv(x, p.spec.stem_width, 3, "conv1_conv")
    return x, x


STEM_FNS = {
    "imagenet": imagenet_stem,
    "deep": deep_stem,
    "preact": preact_stem,
    "keras_v2": keras_v2_stem,
    "cifar": cifar_stem,
    "cifar_preact": cifar_preact_stem,
}
