"""What a ResNet is, as data: the :class:`ResNetSpec` dataclass and its validation."""

import dataclasses
import math
from dataclasses import dataclass, field

from kres.errors import KresError, suggest
from kres.models.blocks import BLOCKS, STEMS
from kres.pixels import MODES

SHORTCUTS = ("projection", "avgpool", "zeropad", "subsample", "highway", "none")
PREPROCESSING = tuple(MODES)
NORMS = ("batch", "group")
CONVS = ("plain", "weight_std")
ATTENTIONS = ("se", "eca", "none")
DOWNSAMPLES = ("stride", "blur")
STEM_POOLS = (None, "max", "blur", "conv")


@dataclass(frozen=True)
class ResNetSpec:
    """One residual network, fully described. ``kres.build`` turns any spec into a Keras model;
    ``kres.build(name, **overrides)`` replaces fields of a registered spec."""

    name: str
    family: str  # "imagenet" or "cifar": sets the default input size, classes and preprocessing
    architecture: str  # human family name for tables ("ResNeXt", "Wide ResNet", ...)
    reference: str  # the paper
    block: str  # a key of kres.models.blocks.BLOCKS
    depths: tuple  # units per stage
    widths: tuple  # "planes" per stage; a unit outputs planes * expansion channels
    strides: tuple = (1, 2, 2, 2)
    stem: str = "imagenet"  # a key of kres.models.blocks.STEMS
    stem_width: int = 64
    # How a downsampling stem halves its output: None (its own max-pool), "max", "blur"
    # (stride-1 max-pool then BlurPool, Zhang 2019) or "conv" (a strided 3x3 conv-norm-act, as
    # ResNet-RS replaces the pool).
    stem_pool: object = None
    shortcut: str = "projection"  # "highway": a learned gate mixes T*F(x) + (1-T)*x
    cardinality: int = 1  # groups of the 3x3 conv (ResNeXt)
    base_width: int = 64  # bottleneck width = floor(planes * base_width / 64) * cardinality
    se_ratio: float = 0.0  # squeeze-and-excitation reduction ratio, 0 = off
    # Channel attention after the last norm of a branch: "se" (squeeze-excitation, on when
    # se_ratio > 0), "eca" (Wang et al. 2020: one k-tap convolution across channels) or "none".
    attention: str = "se"
    # How strided units downsample: "stride" (the strided 3x3 conv) or "blur" (the conv at
    # stride 1, then BlurPool after its activation: anti-aliased, Zhang 2019).
    downsample: str = "stride"
    norm: str = "batch"  # "batch" or "group" (GroupNorm with norm_groups groups)
    norm_groups: int = 32
    conv: str = "plain"  # "plain" or "weight_std" (weight-standardised, Qiao et al. 2019)
    # Stride of the last feature map: None keeps the network's own; smaller values (8, 16 on
    # ImageNet models) turn the later strides into dilations, as DeepLab does.
    output_stride: object = None
    dropout: float = 0.0  # dropout between the two convs of a unit (Wide ResNet)
    drop_path_rate: float = 0.0  # stochastic depth of the last unit, linear from 0
    shortcut_scale: object = 1.0  # "a" in y = a*x + h*F(x); a number or "1/L"
    step_size: float = 1.0  # "h" in y = a*x + h*F(x)
    # Zero the last BN gamma (pre-activation: the last conv) of each residual branch, so every
    # unit starts as the identity (timm's default; Goyal et al. 2017). Without it, an untrained
    # ResNet-1202 overflows to NaN at inference.
    zero_init_last: bool = True
    sync_bn: bool = False  # BatchNormalization(synchronized=True) across replicas
    conv_bias: bool = False
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9
    stride_in_last_unit: bool = False  # keras.applications' v2 layout strides in the last unit
    head_dropout: float = 0.0
    preprocessing: str = "imagenet"
    input_shape: tuple = (224, 224, 3)
    num_classes: int = 1000
    tags: tuple = field(default=(), compare=False)

    @property
    def expansion(self):
        return BLOCKS[self.block].expansion

    @property
    def preact(self):
        return BLOCKS[self.block].preact

    @property
    def num_units(self):
        return sum(self.depths)

    @property
    def out_channels(self):
        return tuple(w * self.expansion for w in self.widths)

    @property
    def stem_stride(self):
        return STEMS[self.stem].stride

    @property
    def natural_stride(self):
        """Input pixels per pixel of the last feature map without dilation."""
        total = self.stem_stride
        for s in self.strides:
            total *= s
        return total

    @property
    def total_stride(self):
        """Input pixels per pixel of the last feature map (output_stride caps it)."""
        return self.natural_stride if self.output_stride is None else self.output_stride

    def stage_strides(self):
        """Input pixels per feature pixel at the end of each stage: once output_stride is
        reached, the remaining strides become dilations."""
        out, total = [], self.stem_stride
        for s in self.strides:
            total *= s
            out.append(min(total, self.total_stride))
        return tuple(out)

    def feature_info(self):
        """Channels and stride (input pixels per feature pixel) of each feature level, with the
        name a ``features_only`` model gives its output: ``stem``, then ``stage1``, ``stage2``...
        (``output_stride`` caps the stride)."""
        stem = STEMS[self.stem]
        info = [{"index": 0, "name": "stem", "channels": self.stem_width * stem.widen,
                 "stride": stem.tap_stride}]
        for i, (c, s) in enumerate(zip(self.out_channels, self.stage_strides())):
            info.append({"index": i + 1, "name": f"stage{i + 1}", "channels": c, "stride": s})
        return info

    def output_strides(self):
        """The output_stride values this network accepts: powers of two from its stem's stride
        to its natural stride (8, 16 and 32 for ImageNet models, as DeepLab uses)."""
        values, s = [], self.stem_stride
        while s <= self.natural_stride:
            values.append(s)
            s *= 2
        return tuple(values)

    def inner_width(self, planes):
        """Channels of a unit's inner 3x3 conv: ``planes`` for basic units; for bottlenecks
        floor(planes * base_width / 64) * cardinality (ResNeXt's and Wide ResNet's widths,
        torchvision's formula)."""
        if self.expansion == 1:
            return planes
        return math.floor(planes * self.base_width / 64) * self.cardinality

    def normalised_channels(self):
        """Every channel count a norm layer sees (GroupNorm needs each divisible by its groups)."""
        channels = {self.stem_width, self.stem_width * STEMS[self.stem].widen}
        for planes in self.widths:
            channels.add(planes * self.expansion)
            channels.add(self.inner_width(planes))
        return sorted(channels)

    def replace(self, **overrides):
        """A copy with ``overrides`` applied; unknown fields and bad values raise KresError."""
        names = [f.name for f in dataclasses.fields(self) if f.name not in ("name", "tags")]
        for key in overrides:
            if key not in names:
                raise KresError(
                    f"unknown option {key!r} for model {self.name!r}; did you mean: "
                    f"{suggest(key, names)}? Valid options: {', '.join(sorted(names))}"
                )
        for key in ("depths", "widths", "strides", "input_shape"):
            if key in overrides and overrides[key] is not None:
                overrides[key] = tuple(overrides[key])
        spec = dataclasses.replace(self, **overrides)
        spec.validate()
        return spec

    def validate(self):
        """Raises KresError for the first field, or combination of fields, out of range."""
        self._check_names()
        self._check_stages()
        self._check_combinations()
        self._check_norm_groups()
        self._check_numbers()
        self._check_shapes()

    def _bad(self, what, got, accepted):
        raise KresError(f"{what} for model {self.name!r}: got {got!r}; accepted: {accepted}")

    def _check_names(self):
        """Every named choice is one the tables know."""
        for key, accepted in (("block", BLOCKS), ("stem", STEMS), ("shortcut", SHORTCUTS),
                              ("preprocessing", PREPROCESSING)):
            if getattr(self, key) not in accepted:
                self._bad(f"unknown {key}", getattr(self, key), ", ".join(accepted))

    def _check_stages(self):
        if not (len(self.depths) == len(self.widths) == len(self.strides)) or not self.depths:
            self._bad("depths, widths and strides must have one entry per stage",
                      (self.depths, self.widths, self.strides),
                      "three tuples of equal, non-zero length")
        if any(int(d) < 1 for d in self.depths):
            self._bad("invalid depths", self.depths, "at least one unit per stage")
        if any(int(w) < 1 for w in self.widths):
            self._bad("invalid widths", self.widths, "positive integers")
        if any(s not in (1, 2) for s in self.strides):
            self._bad("invalid strides", self.strides, "1 or 2 per stage")

    def _check_combinations(self):
        """The pieces' choices, and the pairs of choices that cannot go together."""
        choices = (("norm", NORMS), ("conv", CONVS), ("attention", ATTENTIONS),
                   ("downsample", DOWNSAMPLES), ("stem_pool", STEM_POOLS))
        for key, accepted in choices:
            if getattr(self, key) not in accepted:
                self._bad(f"unknown {key}", getattr(self, key), ", ".join(map(repr, accepted)))
        if self.stem_pool is not None and not STEMS[self.stem].downsamples:
            self._bad(f"stem_pool (the {self.stem!r} stem has no pooling to replace)",
                      self.stem_pool, "None")
        if BLOCKS[self.block].keras_layout and (self.conv, self.downsample) != ("plain", "stride"):
            self._bad(f"(conv, downsample) (the {self.block!r} block builds its own convolutions)",
                      (self.conv, self.downsample), "('plain', 'stride')")
        if self.conv == "weight_std" and self.preact and self.zero_init_last:
            # A zero kernel standardises to zero with a gradient scaled by 1/sqrt(eps).
            self._bad("zero_init_last (weight standardisation cannot train the zeroed last "
                      "convolution of pre-activation units)", self.zero_init_last,
                      "False with conv='weight_std'")
        if self.shortcut == "highway" and (self.shortcut_scale, self.step_size) != (1.0, 1.0):
            self._bad("(shortcut_scale, step_size) (a highway gate sets the mix itself)",
                      (self.shortcut_scale, self.step_size), "(1.0, 1.0) with shortcut='highway'")

    def _check_norm_groups(self):
        if not isinstance(self.norm_groups, int) or self.norm_groups < 1:
            self._bad("invalid norm_groups", self.norm_groups, "a positive integer")
        if self.norm == "group":
            odd = [c for c in self.normalised_channels() if c % self.norm_groups]
            if odd:
                self._bad(f"norm_groups (GroupNorm splits channels {odd} into equal groups)",
                          self.norm_groups, "a divisor of every channel count")

    def _check_numbers(self):
        """Output stride, groups, rates and scales."""
        if self.output_stride is not None and (
                isinstance(self.output_stride, bool)
                or self.output_stride not in self.output_strides()):
            self._bad("invalid output_stride", self.output_stride,
                      f"None or one of {', '.join(map(str, self.output_strides()))}")
        if self.cardinality < 1 or self.base_width < 1:
            self._bad("invalid cardinality/base_width", (self.cardinality, self.base_width),
                      "positive integers")
        if self.expansion == 1 and (self.cardinality, self.base_width) != (1, 64):
            self._bad("basic units have no groups", (self.cardinality, self.base_width),
                      "cardinality=1 and base_width=64 (use a bottleneck block for ResNeXt)")
        for key in ("drop_path_rate", "dropout", "head_dropout"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                self._bad(f"invalid {key}", value, "a number in [0, 1)")
        if not isinstance(self.se_ratio, (int, float)) or not 0.0 <= self.se_ratio <= 1.0:
            self._bad("invalid se_ratio", self.se_ratio, "a number in [0, 1] (0 turns SE off)")
        if not (self.shortcut_scale == "1/L" or (
                isinstance(self.shortcut_scale, (int, float)) and self.shortcut_scale > 0)):
            self._bad("invalid shortcut_scale", self.shortcut_scale, 'a positive number or "1/L"')
        if not isinstance(self.step_size, (int, float)) or self.step_size <= 0:
            self._bad("invalid step_size", self.step_size, "a positive number")

    def _check_shapes(self):
        """The number of classes and the input shape."""
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) \
                or self.num_classes < 1:
            self._bad("invalid num_classes", self.num_classes, "a positive integer")
        shape = self.input_shape
        if len(shape) != 3 or (shape[2] is None or int(shape[2]) < 1):
            self._bad("invalid input_shape", shape,
                      "(height, width, channels) with channels >= 1")
        for n in shape[:2]:
            if n is not None and (not isinstance(n, int) or n < self.total_stride):
                self._bad("input_shape too small", shape,
                          f"height and width of at least {self.total_stride} (the network's "
                          f"total stride) or None")
