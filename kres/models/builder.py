"""One builder: any :class:`ResNetSpec` becomes a Keras functional model."""

import dataclasses
import fnmatch
import sys

import keras
import numpy as np
from keras import layers

from kres.models.blocks import BLOCKS, STEMS, Pieces, Unit
from kres.models.layers import ReverseChannels
from kres.models.registry import REGISTRY
from kres import weights as weights_lib
from kres.errors import KresError, suggest
from kres.pixels import MODES
from kres.models.spec import ResNetSpec

@keras.saving.register_keras_serializable(package="kres")
class KresModel(keras.Model):
    """A functional Keras model that knows the :class:`ResNetSpec` it was built from
    (``model.kres_spec``), also after a ``.keras`` save and load (the spec travels in the
    model's config; loading needs ``import kres``, as for any registered Keras class)."""

    def __init__(self, *args, spec=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.kres_spec = spec

    def get_config(self):
        config = super().get_config()
        if self.kres_spec is not None:
            config["kres_spec"] = dataclasses.asdict(self.kres_spec)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        spec = config.pop("kres_spec", None)
        model = super().from_config(config, custom_objects=custom_objects)
        if spec is not None:  # JSON made the tuples lists
            model.kres_spec = ResNetSpec(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in spec.items()})
        return model


def get_spec(name, **overrides):
    """The registered spec called ``name`` with ``overrides`` applied."""
    if isinstance(name, ResNetSpec):
        spec = name
    elif not isinstance(name, str) or name not in REGISTRY:
        raise KresError(
            f"unknown model {name!r}; closest names: {suggest(name, REGISTRY)}. "
            f"kres.list_models() lists all {len(REGISTRY)}."
        )
    else:
        spec = REGISTRY[name]
    return spec.replace(**overrides) if overrides else spec


def list_models(pattern="*"):
    """Sorted names of the registered models matching an fnmatch ``pattern``.

    >>> kres.list_models("resnext*")
    ['resnext101_32x8d', 'resnext101_64x4d', 'resnext50_32x4d']
    """
    return sorted(n for n in REGISTRY if fnmatch.fnmatch(n, pattern))


def preprocessing(name, tag=None):
    """The input preprocessing of a model (or of one of its pretrained tags): a dict with ``mean``
    and ``std`` per channel in pixel units (RGB, 0-255), and ``channel_order``."""
    spec = get_spec(name)
    if tag is not None:  # the checkpoint's own: mean/std, input size, crop, interpolation
        info = weights_lib.pretrained_info(spec.name, tag).as_dict()
        keys = ("tag", "preprocessing", "mean", "std", "channel_order", "input_size", "crop_pct",
                "eval_size", "eval_crop", "interpolation")
        out = {k: info[k] for k in keys}
        out["mode"] = out.pop("preprocessing")
        return {**out, "input_range": [0, 255]}
    stats = MODES[spec.preprocessing]
    return {"mode": spec.preprocessing, "mean": list(stats.mean), "std": list(stats.std),
            "channel_order": stats.channel_order, "input_range": [0, 255]}


def _preprocessing_layer(x, spec, channels):
    stats = MODES[spec.preprocessing]
    mean, std = (np.asarray(v, "float32") for v in (stats.mean, stats.std))
    if channels != 3:  # grey or multispectral input: the mean statistics of the RGB channels
        mean = np.full(channels, mean.mean(), "float32")
        std = np.full(channels, std.mean(), "float32")
    x = layers.Normalization(mean=mean, variance=std**2, name="preprocessing")(x)
    if stats.channel_order == "BGR" and channels == 3:
        x = ReverseChannels(name="rgb_to_bgr")(x)
    return x


def build_from_spec(spec, *, include_top=True, pooling=None, features_only=False,
                    out_indices=None, classifier_activation=None, include_preprocessing=False):
    """Builds the Keras functional model described by ``spec`` (see :func:`build`)."""
    p = Pieces(spec)
    # Keras walks the functional graph recursively: ResNet-1202 needs a deeper stack than the
    # default 1000 frames.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 40 * spec.num_units + 2000))
    inputs = keras.Input(shape=spec.input_shape, name="images")
    x = inputs
    if include_preprocessing:
        x = _preprocessing_layer(x, spec, spec.input_shape[-1])
    x, stem_tap = STEMS[spec.stem].fn(x, p)
    taps = [stem_tap]
    for stage_units in _units(spec):
        for unit in stage_units:
            x = BLOCKS[spec.block].fn(x, unit, p)
        taps.append(x)
    if spec.preact:  # pre-activation nets end with the BN-ReLU their last unit left out
        x = p.act(p.norm(x, "post_bn"), "post_relu")
        taps[-1] = x

    if features_only:  # taps[i] is the spec's feature level i
        levels = _selected_levels(spec.feature_info(), out_indices)
        outputs = [_named(taps[level["index"]], level["name"]) for level in levels]
        return KresModel(inputs, outputs, name=spec.name, spec=spec)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if spec.head_dropout:
            x = layers.Dropout(spec.head_dropout, name="head_dropout")(x)
        x = layers.Dense(spec.num_classes, activation=classifier_activation, dtype="float32",
                         name="predictions")(x)
    elif pooling == "avg":
        x = _float32(layers.GlobalAveragePooling2D(name="avg_pool")(x), "features")
    elif pooling == "max":
        x = _float32(layers.GlobalMaxPooling2D(name="max_pool")(x), "features")
    else:
        x = _float32(x, "features")
    return KresModel(inputs, x, name=spec.name, spec=spec)


def _units(spec):
    """Per stage, its :class:`Unit` list: names, strides, the linear drop-path schedule, and
    the dilations that replace strides once ``output_stride`` is reached (timm's
    ``make_blocks``: a unit's first 3x3 keeps the previous unit's dilation)."""
    index, last = 0, spec.num_units - 1
    net_stride, dilation = spec.stem_stride, 1
    stages = []
    for stage, (depth, planes, stride) in enumerate(zip(spec.depths, spec.widths, spec.strides)):
        units = []
        for b in range(depth):
            strided = b == (depth - 1 if spec.stride_in_last_unit else 0)
            unit_stride, first_dilation = stride if strided else 1, dilation
            if unit_stride > 1 and net_stride >= spec.total_stride:
                dilation *= unit_stride
                unit_stride = 1
            net_stride *= unit_stride
            rate = spec.drop_path_rate * index / last if last else 0.0
            units.append(Unit(planes, unit_stride, f"conv{stage + 2}_block{b + 1}", rate,
                              dilation=dilation, first_dilation=first_dilation))
            index += 1
        stages.append(units)
    return stages


def _float32(x, name):
    """Outputs are float32 under mixed precision too."""
    if x.dtype == "float32":
        return x
    return layers.Activation("linear", dtype="float32", name=name)(x)


def _named(x, name):
    """``x`` as a float32 output named ``name`` (what exported files call it too)."""
    return layers.Activation("linear", dtype="float32", name=name)(x)


def _selected_levels(levels, out_indices):
    """The feature levels ``out_indices`` picks (all of them for None)."""
    if out_indices is None:
        return list(levels)
    n, indices = len(levels), list(out_indices)
    if not indices or any(not isinstance(i, int) or not -n <= i < n for i in indices):
        raise KresError(f"invalid out_indices {out_indices!r}: accepted are integers in "
                        f"[0, {n - 1}] (0 is the stem, 1..{n - 1} the stages)")
    return [levels[i % n] for i in indices]


def build(name, *, input_shape=None, num_classes=None, include_top=True, pooling=None,
          weights=None, features_only=False, out_indices=None, classifier_activation=None,
          include_preprocessing=False, **overrides):
    """Builds a registered residual network as a Keras functional model.

    Args:
        name: a registered name (see :func:`list_models`) or a :class:`ResNetSpec`.
        input_shape: ``(height, width, channels)``; defaults to the family's (224x224x3 for
            ImageNet models, 32x32x3 for CIFAR models). Height and width may be ``None`` when
            ``include_top=False`` or ``features_only=True``.
        num_classes: classifier outputs (default 1000 for ImageNet, 10 for CIFAR models).
        include_top: keep the global-pool + dense classifier.
        pooling: with ``include_top=False``: ``None`` (feature map), ``"avg"`` or ``"max"``.
        weights: ``None`` (random init); ``"imagenet"`` (the default checkpoint: Keras
            Applications' for keras_* models, timm's on the Hugging Face Hub for the others, see
            :func:`kres.list_pretrained`); a tag such as ``"a1_in1k"``; or a path to a
            ``.keras``, ``.weights.h5``, ``.h5`` or timm/torchvision ``.safetensors`` file.
            Another ``num_classes`` or channel count keeps everything else (transfer learning).
        features_only: return the stem and stage outputs (for detection and segmentation).
        out_indices: which of those outputs (0 = stem, 1.. = stages).
        classifier_activation: ``None`` (logits) or ``"softmax"``.
        include_preprocessing: put the input normalisation inside the model, so it takes raw
            pixels in [0, 255].
        **overrides: any field of the model's spec, e.g. ``se_ratio=0.25``,
            ``drop_path_rate=0.1``, ``stem="deep"``.

    Example:
        >>> model = kres.build("resnet50", num_classes=10, drop_path_rate=0.1)
        >>> features = kres.build("resnet50", features_only=True, input_shape=(None, None, 3))
    """
    if input_shape is not None:
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
            raise KresError(f"invalid input_shape {input_shape!r}: accepted is "
                            "(height, width, channels), e.g. (224, 224, 3)")
        overrides["input_shape"] = tuple(input_shape)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    spec = get_spec(name, **overrides)
    if pooling not in (None, "avg", "max"):
        raise KresError(f"invalid pooling {pooling!r}: accepted are None, 'avg' and 'max'")
    if classifier_activation not in (None, "softmax"):
        raise KresError(f"invalid classifier_activation {classifier_activation!r}: accepted are "
                        "None (logits) and 'softmax'")
    if include_top and not features_only and None in spec.input_shape[:2]:
        raise KresError(f"input_shape {spec.input_shape} has a None spatial size; that needs "
                        "include_top=False or features_only=True")
    if weights is not None:
        mode = weights_lib.preprocessing_mode(spec.name, weights)
        if mode is not None and mode != spec.preprocessing:  # the tag's own input statistics
            spec = spec.replace(preprocessing=mode)
    model = build_from_spec(
        spec, include_top=include_top, pooling=pooling, features_only=features_only,
        out_indices=out_indices, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing)
    model.kres_spec = spec  # with the weights tag's preprocessing, when it has its own
    if weights is not None:
        weights_lib.load_into(model, weights, spec=spec)
    return model
