"""Activation ranges measured on real images, to start QAT from (or to export without it)."""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from kres.errors import DataError
from kres.quantize.layers import ActivationQuantizer


def quantizers(model):
    """The model's ActivationQuantizer layers, in graph order."""
    return [layer for layer in model.layers if isinstance(layer, ActivationQuantizer)]


@contextlib.contextmanager
def _observing(layers):
    for layer in layers:
        layer.observing = True
    try:
        yield
    finally:
        for layer in layers:
            layer.observing = False


def observe(model, images, batch_size=64):
    """Set every activation range of the QAT ``model`` to the minimum and maximum its tensor
    takes on ``images`` (real images, as the model takes them), with every activation quantiser
    passing float values through meanwhile and weights already int8: the ranges post-training
    calibration of the int8-weight network would give. Returns {quantiser name: (min, max)}."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise DataError(f"observe needs a batch of images (N, H, W, C); got shape {images.shape}")
    layers = quantizers(model)
    with _observing(layers):
        # A new model over the quantisers' inputs: it traces with the quantisers passing through.
        probe = keras.Model(model.inputs, [layer.input for layer in layers])
        low = np.full(len(layers), np.inf)
        high = np.full(len(layers), -np.inf)
        for start in range(0, len(images), batch_size):
            outputs = probe([images[start:start + batch_size]], training=False)
            for i, value in enumerate(outputs):
                value = keras.ops.convert_to_numpy(value)
                low[i], high[i] = min(low[i], value.min()), max(high[i], value.max())
    for layer, lo, hi in zip(layers, low, high):
        layer.range_min.assign(float(lo))
        layer.range_max.assign(float(hi))
    return {layer.name: (float(lo), float(hi)) for layer, lo, hi in zip(layers, low, high)}


def ranges(model):
    """{quantiser name: (min, max)} of a QAT model, as its int8 files should hold them."""
    return {layer.name: (float(layer.range_min.numpy()), float(layer.range_max.numpy()))
            for layer in quantizers(model)}
