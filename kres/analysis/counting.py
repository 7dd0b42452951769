"""Counting what a built model costs: parameters, multiply-accumulates and feature levels."""

import keras
import numpy as np

from kres.models import build, get_spec


def count_params(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def count_macs(model):
    """Multiply-accumulates of one forward pass of one image, counted from the model's own
    Conv2D and Dense layers (torchvision's and fvcore's convention: normalisation, pooling,
    activations and additions are not counted)."""
    return int(sum(layer_macs(layer) for layer in _all_layers(model)))


def layer_macs(layer) -> int:
    """Multiply-accumulates of one layer for one image: a Conv2D's or a Dense layer's, else 0."""
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, cout = layer.output.shape
        kh, kw, cin_per_group, _ = layer.kernel.shape
        if h is None or w is None:
            raise ValueError("MACs need a fixed input size; build with a full input_shape")
        return h * w * kh * kw * cin_per_group * cout
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(layer.kernel.shape))
    return 0


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def describe(model, spec):
    """The numbers of a built model as a plain dict."""
    return {
        "trainable_params": count_params(model.trainable_weights),
        "total_params": count_params(model.weights),
        "macs": count_macs(model),
        "feature_info": spec.feature_info(),
    }


def model_info(name, **overrides):
    """What a model is and costs, counted from the built model at its default input size.

    >>> kres.model_info("resnet50")["trainable_params"]
    25557032
    """
    build_args = {k: overrides.pop(k) for k in ("input_shape", "num_classes") if k in overrides}
    spec = get_spec(name, **overrides)
    spec = spec.replace(**build_args) if build_args else spec
    model = build(spec)
    info = {
        "name": spec.name,
        "family": spec.family,
        "architecture": spec.architecture,
        "reference": spec.reference,
        "input_shape": tuple(spec.input_shape),
        "num_classes": spec.num_classes,
        "block": spec.block,
        "depths": tuple(spec.depths),
        **describe(model, spec),
    }
    return info
