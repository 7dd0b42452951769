"""Residual units, shortcuts and stems: small functions over Keras tensors (``x -> x``).

Each unit takes the tensor, a :class:`Unit` (its filters, stride, dilation, name and drop-path
rate) and the :class:`Pieces` made from the spec (conv, norm, activation, attention, downsampling,
shortcut, merge). Options such as squeeze-excitation or ECA, GroupNorm, weight standardisation,
BlurPool, highway gates, stochastic depth or residual scaling live in the pieces, so the units stay
the textbook diagrams. Layer names follow keras.applications (``conv4_block6_out``), so features can
be tapped by name in every model.

Each unit registers itself in :data:`BLOCKS` (``@block``) and each stem in :data:`STEMS`
(``@stem``) with what the spec needs to know about it (a unit's expansion, a stem's stride), so a
spec's ``block`` and ``stem`` are the keys of these tables.
"""

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import keras
from keras import layers

from kres.models.layers import (BatchNormalization, BlurPool2D, DropPath, HighwayMix,
                                ResidualAdd, StdConv2D, SymmetricMaxPool, ZeroPadChannels)

# Highway gates start biased towards carrying the input: b_T < 0, "e.g. -1, -3" (Srivastava et al.
# 2015, "Highway Networks", arXiv:1505.00387, Section 2.2).
HIGHWAY_GATE_BIAS = -1.0


@dataclass(frozen=True)
class Unit:
    planes: int
    stride: int
    name: str
    drop_path: float = 0.0
    dilation: int = 1  # of the unit's 3x3 convolutions (output_stride turned strides into it)
    first_dilation: int = 1  # of its first 3x3 conv: the previous unit's dilation (timm's rule)


class Gated(NamedTuple):
    """A highway shortcut: the carried input and the transform gate T(x)."""

    carry: object
    gate: object


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
        self.keras_layout = BLOCKS[spec.block].keras_layout

    def kernel_init(self):
        """torchvision / timm: He-normal, fan-out; keras.applications keeps Keras' default.
        A new initializer per layer: Keras 3 gives every layer sharing one unseeded
        initializer instance the same values."""
        if self.keras_layout:
            return "glorot_uniform"
        return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")

    def conv(self, x, filters, kernel, name, stride=1, groups=1, zero_init=False, dilation=1):
        """Convolution with PyTorch-style symmetric padding (explicit ZeroPadding2D when strided),
        so ported weights give identical outputs; weight-standardised with conv='weight_std'."""
        if kernel > 1 and stride > 1:
            x = layers.ZeroPadding2D(dilation * (kernel // 2),
                                     name=name.replace("_conv", "_pad"))(x)
            padding = "valid"
        else:
            padding = "same" if kernel > 1 else "valid"
        return self.conv_layer(
            filters, kernel, strides=stride, padding=padding, groups=groups,
            dilation_rate=dilation, use_bias=self.spec.conv_bias, name=name,
            kernel_initializer="zeros" if zero_init else self.kernel_init(),
        )(x)

    def conv_layer(self, filters, kernel, **kwargs):
        if self.spec.conv == "weight_std":
            return StdConv2D(filters, kernel, **kwargs)
        return layers.Conv2D(filters, kernel, **kwargs)

    def norm(self, x, name, zero_init=False):
        """BatchNorm (``*_bn``) or, with norm='group', GroupNorm (``*_gn``)."""
        gamma = "zeros" if zero_init else "ones"
        if self.spec.norm == "group":
            return layers.GroupNormalization(
                self.spec.norm_groups, epsilon=self.spec.bn_epsilon, gamma_initializer=gamma,
                name=name.removesuffix("_bn") + "_gn")(x)
        return BatchNormalization(  # kres' own: fused on TensorFlow in training
            epsilon=self.spec.bn_epsilon, momentum=self.spec.bn_momentum,
            synchronized=self.spec.sync_bn, gamma_initializer=gamma, name=name,
        )(x)

    def act(self, x, name):
        return layers.Activation("relu", name=name)(x)

    def conv_norm_act(self, x, filters, kernel, name, stride=1, groups=1, dilation=1):
        x = self.conv(x, filters, kernel, f"{name}_conv", stride, groups, dilation=dilation)
        return self.act(self.norm(x, f"{name}_bn"), f"{name}_relu")

    def spatial(self, x, filters, name, unit, groups=1):
        """A unit's first 3x3 conv-norm-act, which carries its stride and dilation. With
        downsample='blur' the conv runs at stride 1 and BlurPool subsamples after the
        activation (timm's ``aa_layer``; it also blurs, at stride 1, where a dilated stage
        begins)."""
        blur = self.spec.downsample == "blur" and (
            unit.stride > 1 or unit.first_dilation != unit.dilation)
        x = self.conv_norm_act(x, filters, 3, name, 1 if blur else unit.stride, groups,
                               dilation=unit.first_dilation)
        return BlurPool2D(unit.stride, name=f"{name}_blur")(x) if blur else x

    def attention(self, x, name):
        """Channel attention: squeeze-and-excitation (Hu et al. 2018) when ``se_ratio`` > 0,
        ECA (Wang et al. 2020), or nothing."""
        kind = self.spec.attention
        if kind == "eca":
            return _eca(x, name)
        if kind == "se" and self.spec.se_ratio:
            return _se(x, name, self.spec.se_ratio)
        return x

    def stem_pool(self, x, pad="zeros"):
        """The stem's 2x downsampling after its convolution(s): a 3x3/2 max-pool (zero-padded,
        or -inf-padded as PyTorch pads where the input can be negative), stride-1 max-pool +
        BlurPool, or a strided 3x3 conv-norm-act (ResNet-RS)."""
        kind = self.spec.stem_pool or "max"
        if kind == "conv":
            return self.conv_norm_act(x, x.shape[-1], 3, "pool1", stride=2)
        if kind == "blur":  # "same" max-pooling ignores the padding, as PyTorch's -inf does
            x = layers.MaxPooling2D(3, strides=1, padding="same", name="pool1_pool")(x)
            return BlurPool2D(2, name="pool1_blur")(x)
        if pad == "-inf":
            return SymmetricMaxPool(3, 2, 1, name="pool1_pool")(x)
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    def shortcut(self, x, out_channels, stride, name, preact_input=None, dilation=1):
        """The identity path: identity, option A (zero-pad), option B (projection), ResNet-D
        (average-pool + projection), keras' v2 subsampling or a highway gate (carrying x
        through option A where the shape changes). ``None`` for plain networks."""
        kind, in_channels = self.spec.shortcut, x.shape[-1]
        if kind == "none":
            return None
        if kind == "highway":
            gate = layers.Conv2D(
                out_channels, 1, strides=stride, activation="sigmoid",
                kernel_initializer=self.kernel_init(),
                bias_initializer=keras.initializers.Constant(HIGHWAY_GATE_BIAS),
                name=f"{name}_gate")(x)
            return Gated(self._zeropad(x, out_channels, stride, name), gate)
        if stride == 1 and in_channels == out_channels:
            return x
        if kind == "zeropad":
            return self._zeropad(x, out_channels, stride, name)
        if kind == "subsample" and in_channels == out_channels:
            return layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
        source = x if preact_input is None else preact_input
        if kind == "avgpool" and stride > 1:
            source = layers.AveragePooling2D(2, strides=stride, padding="same",
                                             name=f"{name}_0_pool")(source)
            stride = 1
        elif kind == "avgpool" and dilation > 1:
            # timm's AvgPool2dSame(2, stride=1) where output_stride removed the stride: zero-pad
            # bottom and right, and count the zeros in the average.
            source = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_0_pad")(source)
            source = layers.AveragePooling2D(2, strides=1, name=f"{name}_0_pool")(source)
        y = self.conv_layer(out_channels, 1, strides=stride, use_bias=self.spec.conv_bias,
                            kernel_initializer=self.kernel_init(), name=f"{name}_0_conv")(source)
        return y if preact_input is not None else self.norm(y, f"{name}_0_bn")

    def _zeropad(self, x, out_channels, stride, name):
        if stride > 1:
            x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
        if out_channels != x.shape[-1]:
            x = ZeroPadChannels(out_channels - x.shape[-1], name=f"{name}_0_zeropad")(x)
        return x

    def merge(self, shortcut, branch, unit, post_act=True):
        """shortcut + branch (with drop-path and residual scaling), or the highway mix, then
        ReLU for post-activation units. Plain networks have no shortcut: just the activation."""
        if shortcut is None:
            return self.act(branch, f"{unit.name}_out") if post_act else branch
        if unit.drop_path > 0:
            branch = DropPath(unit.drop_path, name=f"{unit.name}_drop_path")(branch)
        out_name = f"{unit.name}_add" if post_act else f"{unit.name}_out"
        if isinstance(shortcut, Gated):
            x = HighwayMix(name=out_name)([shortcut.carry, branch, shortcut.gate])
        elif self.alpha == 1.0 and self.spec.step_size == 1.0:
            x = layers.Add(name=out_name)([shortcut, branch])
        else:
            x = ResidualAdd(self.alpha, self.spec.step_size, name=out_name)([shortcut, branch])
        return self.act(x, f"{unit.name}_out") if post_act else x

    def dropout(self, x, name):
        return layers.Dropout(self.spec.dropout, name=name)(x) if self.spec.dropout else x


def _se(x, name, ratio):
    channels = x.shape[-1]
    reduced = make_divisible(channels * ratio)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    s = layers.Conv2D(reduced, 1, activation="relu", name=f"{name}_se_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return layers.Multiply(name=f"{name}_se_excite")([x, s])


def eca_kernel_size(channels, gamma=2, beta=1):
    """ECA's kernel size from the channel count: |log2(C) / gamma + beta / gamma|, odd, >= 3
    (Wang et al. 2020, Eq. 12; timm's EcaModule)."""
    t = int(abs(math.log2(channels) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def _eca(x, name):
    """Efficient channel attention (Wang et al. 2020, arXiv:1910.03151): global average pool,
    one bias-free k-tap convolution across neighbouring channels, sigmoid, rescale."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(name=f"{name}_eca_squeeze")(x)
    s = layers.Reshape((channels, 1), name=f"{name}_eca_channels")(s)
    s = layers.Conv1D(1, eca_kernel_size(channels), padding="same", use_bias=False,
                      activation="sigmoid", name=f"{name}_eca_conv")(s)
    s = layers.Reshape((1, 1, channels), name=f"{name}_eca_gate")(s)
    return layers.Multiply(name=f"{name}_eca_excite")([x, s])


# ---------------------------------------------------------------------------------------------
# Residual units


class Block(NamedTuple):
    """A residual unit and what a spec needs to know about it."""

    fn: Callable  # (x, Unit, Pieces) -> x
    expansion: int  # the unit outputs planes * expansion channels
    preact: bool  # BN-ReLU before the convolutions: the network ends with its own BN-ReLU
    # keras.applications' layout: builds some convolutions itself (no conv/blur choice) and
    # keeps Keras' default initializer.
    keras_layout: bool


BLOCKS = {}  # spec.block -> Block, in the order the units are defined


def block(expansion, *, preact=False, keras_layout=False):
    """Registers the decorated unit as the block named after it."""

    def register(fn):
        BLOCKS[fn.__name__] = Block(fn, expansion, preact, keras_layout)
        return fn

    return register


@block(expansion=1)
def basic(x, u, p):
    """Two 3x3 convolutions (He et al. 2015, Fig. 2 left)."""
    out = u.planes
    shortcut = p.shortcut(x, out, u.stride, u.name, dilation=u.dilation)
    y = p.spatial(x, u.planes, f"{u.name}_1", u)
    y = p.dropout(y, f"{u.name}_dropout")
    y = p.conv(y, out, 3, f"{u.name}_2_conv", dilation=u.dilation)
    y = p.norm(y, f"{u.name}_2_bn", zero_init=p.spec.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u)


@block(expansion=4)
def bottleneck(x, u, p):
    """1x1 reduce, 3x3 (grouped for ResNeXt, strided: the "v1.5" layout), 1x1 expand."""
    s = p.spec
    width, out = s.inner_width(u.planes), u.planes * s.expansion
    shortcut = p.shortcut(x, out, u.stride, u.name, dilation=u.dilation)
    y = p.conv_norm_act(x, width, 1, f"{u.name}_1")
    y = p.spatial(y, width, f"{u.name}_2", u, groups=s.cardinality)
    y = p.conv(y, out, 1, f"{u.name}_3_conv")
    y = p.norm(y, f"{u.name}_3_bn", zero_init=s.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u)


def _preact(x, u, p):
    y = p.act(p.norm(x, f"{u.name}_preact_bn"), f"{u.name}_preact_relu")
    return y


@block(expansion=1, preact=True)
def preact_basic(x, u, p):
    """BN-ReLU before each conv, identity path untouched (He et al. 2016); Wide ResNet units
    put dropout between the two convolutions (Zagoruyko & Komodakis 2016)."""
    pre = _preact(x, u, p)
    shortcut = p.shortcut(x, u.planes, u.stride, u.name, preact_input=pre, dilation=u.dilation)
    y = p.spatial(pre, u.planes, f"{u.name}_1", u)
    y = p.dropout(y, f"{u.name}_dropout")
    y = p.conv(y, u.planes, 3, f"{u.name}_2_conv", zero_init=p.spec.zero_init_last,
               dilation=u.dilation)
    return p.merge(shortcut, p.attention(y, u.name), u, post_act=False)


@block(expansion=4, preact=True)
def preact_bottleneck(x, u, p):
    """Pre-activation bottleneck (He et al. 2016; timm's PreActBottleneck)."""
    s = p.spec
    width, out = s.inner_width(u.planes), u.planes * s.expansion
    pre = _preact(x, u, p)
    shortcut = p.shortcut(x, out, u.stride, u.name, preact_input=pre, dilation=u.dilation)
    y = p.conv_norm_act(pre, width, 1, f"{u.name}_1")
    y = p.spatial(y, width, f"{u.name}_2", u, groups=s.cardinality)
    y = p.conv(y, out, 1, f"{u.name}_3_conv", zero_init=s.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u, post_act=False)


@block(expansion=4, keras_layout=True)
def keras_v1(x, u, p):
    """keras.applications' ResNet v1 unit: the stride sits in the first 1x1 conv."""
    out = u.planes * p.spec.expansion
    shortcut = p.shortcut(x, out, u.stride, u.name, dilation=u.dilation)
    y = layers.Conv2D(u.planes, 1, strides=u.stride, name=f"{u.name}_1_conv")(x)
    y = p.act(p.norm(y, f"{u.name}_1_bn"), f"{u.name}_1_relu")
    y = p.conv_norm_act(y, u.planes, 3, f"{u.name}_2", dilation=u.first_dilation)
    y = p.norm(p.conv(y, out, 1, f"{u.name}_3_conv"), f"{u.name}_3_bn",
               zero_init=p.spec.zero_init_last)
    return p.merge(shortcut, p.attention(y, u.name), u)


@block(expansion=4, preact=True, keras_layout=True)
def keras_v2(x, u, p):
    """keras.applications' ResNet v2 unit (bias-free inner convs, strided 3x3 padded explicitly)."""
    out = u.planes * p.spec.expansion
    pre = _preact(x, u, p)
    shortcut = p.shortcut(x, out, u.stride, u.name, preact_input=pre, dilation=u.dilation)
    y = layers.Conv2D(u.planes, 1, use_bias=False, name=f"{u.name}_1_conv")(pre)
    y = p.act(p.norm(y, f"{u.name}_1_bn"), f"{u.name}_1_relu")
    y = layers.ZeroPadding2D(u.first_dilation, name=f"{u.name}_2_pad")(y)
    y = layers.Conv2D(u.planes, 3, strides=u.stride, dilation_rate=u.first_dilation,
                      use_bias=False, name=f"{u.name}_2_conv")(y)
    y = p.act(p.norm(y, f"{u.name}_2_bn"), f"{u.name}_2_relu")
    y = layers.Conv2D(out, 1, name=f"{u.name}_3_conv",
                      kernel_initializer="zeros" if p.spec.zero_init_last else "glorot_uniform")(y)
    return p.merge(shortcut, p.attention(y, u.name), u, post_act=False)


# ---------------------------------------------------------------------------------------------
# Stems: each returns (output, feature tap)


class Stem(NamedTuple):
    """A stem and what a spec needs to know about it."""

    fn: Callable  # (x, Pieces) -> (output, feature tap)
    downsamples: bool  # a stride-2 convolution, then a 2x pool (which stem_pool can replace)
    widen: int  # the stem outputs stem_width * widen channels

    @property
    def stride(self):
        """Input pixels per output pixel."""
        return 4 if self.downsamples else 1

    @property
    def tap_stride(self):
        """Input pixels per pixel of the feature tap (taken before the pool)."""
        return 2 if self.downsamples else 1


STEMS = {}  # spec.stem -> Stem, in the order the stems are defined


def stem(*names, downsamples, widen=1):
    """Registers the decorated stem under each of ``names``."""

    def register(fn):
        for name in names:
            STEMS[name] = Stem(fn, downsamples, widen)
        return fn

    return register


@stem("imagenet", downsamples=True)
def imagenet_stem(x, p):
    """7x7/2 conv, BN, ReLU, 3x3/2 max-pool (keras.applications' names)."""
    x = p.conv_norm_act(x, p.spec.stem_width, 7, "conv1", stride=2)
    return p.stem_pool(x), x


@stem("deep", downsamples=True, widen=2)
def deep_stem(x, p):
    """Three 3x3 convs instead of the 7x7 (ResNet-C/D, Bag of Tricks; timm's "deep" stem)."""
    w = p.spec.stem_width
    x = p.conv_norm_act(x, w, 3, "conv1_1", stride=2)
    x = p.conv_norm_act(x, w, 3, "conv1_2")
    x = p.conv_norm_act(x, w * 2, 3, "conv1")
    return p.stem_pool(x), x


@stem("preact", downsamples=True)
def preact_stem(x, p):
    """Conv only, then max-pool padded with -inf (the input to the pool can be negative)."""
    x = p.conv(x, p.spec.stem_width, 7, "conv1_conv", stride=2)
    return p.stem_pool(x, pad="-inf"), x


@stem("keras_v2", "bit", downsamples=True)
def keras_v2_stem(x, p):
    """Conv only, then a max-pool padded with zeros: keras.applications' ResNetV2 and BiT's
    "fixed" stem (timm/models/resnetv2.py, ``stem_type='fixed'``)."""
    x = p.conv(x, p.spec.stem_width, 7, "conv1_conv", stride=2)
    return p.stem_pool(x), x


@stem("cifar", downsamples=False)
def cifar_stem(x, p):
    x = p.conv_norm_act(x, p.spec.stem_width, 3, "conv1")
    return x, x


@stem("cifar_preact", downsamples=False)
def cifar_preact_stem(x, p):
    x = p.conv(x, p.spec.stem_width, 3, "conv1_conv")
    return x, x
