"""The residual units of a built model, found from its own layer names and graph.

A unit is the group of layers named ``conv{stage}_block{n}_*`` (keras.applications' names, which
every kres model uses, plain twins and ``keras_*`` layouts included). Its input is the one tensor
its layers consume but do not make; its output is ``conv{stage}_block{n}_out``. A residual unit
also has a merge layer (``..._add``, or ``..._out`` for pre-activation units) that computes
``y = a * shortcut + h * branch``; a plain unit has none.
"""

from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np

from kres.errors import KresError
from kres.models.layers import ResidualAdd

UNIT_NAME = re.compile(r"^(conv(\d+)_block(\d+))_")


@dataclasses.dataclass(frozen=True)
class ResidualUnit:
    """One unit of a model: its layers (in the model's order) and the symbolic tensors that
    enter and leave it. ``shortcut`` and ``branch`` are the two terms its merge adds, scaled by
    ``alpha`` and ``step`` (both None for a plain unit, which has no shortcut)."""

    name: str
    layers: tuple
    input: object
    output: object
    shortcut: object = None
    branch: object = None
    alpha: float = 1.0
    step: float = 1.0

    @property
    def residual(self):
        return self.shortcut is not None

    @property
    def kernels(self):
        """The unit's convolution and dense kernels (trainable weights of rank > 1)."""
        return [w for layer in self.layers for w in layer.trainable_weights if len(w.shape) > 1]


def has_units(model):
    """Whether any layer of ``model`` is named like a unit's (``conv{stage}_block{n}_...``)."""
    return any(UNIT_NAME.match(layer.name) for layer in model.layers)


def find_units(model):
    """The units of ``model``, stem to head.

    >>> units = find_units(kres.build("resnet20"))
    >>> [u.name for u in units][:2], units[0].residual
    (['conv2_block1', 'conv2_block2'], True)
    """
    check_model(model)
    groups = {}
    for layer in model.layers:
        match = UNIT_NAME.match(layer.name)
        if match:
            groups.setdefault(match.group(1), []).append(layer)
    if not groups:
        raise KresError(
            f"model {model.name!r} has no residual units: expected layers named "
            "conv{stage}_block{n}_... ending in conv{stage}_block{n}_out, as kres and "
            "keras.applications name them")
    order = sorted(groups, key=lambda n: tuple(int(g) for g in re.findall(r"\d+", n)))
    return [_unit(model, name, groups[name]) for name in order]


def _unit(model, name, layers):
    names = {layer.name for layer in layers}
    try:
        output = model.get_layer(f"{name}_out").output
    except ValueError:
        raise KresError(f"unit {name!r} of model {model.name!r} has no {name}_out layer; "
                        "every unit must end in one") from None
    outside = {}
    for layer in layers:
        for tensor in keras.tree.flatten(layer.input):
            if tensor._keras_history.operation.name not in names:
                outside[id(tensor)] = tensor
    if len(outside) != 1:
        raise KresError(f"unit {name!r} of model {model.name!r} takes {len(outside)} tensors "
                        "from outside it; accepted: exactly one (the previous unit's output)")
    (unit_input,) = outside.values()
    merge = _merge_layer(name, layers)
    if merge is None:
        return ResidualUnit(name, tuple(layers), unit_input, output)
    first, second = merge.input
    shortcut, branch = (second, first) if _made_by_branch(first, name) else (first, second)
    alpha, step = (merge.alpha, merge.step) if isinstance(merge, ResidualAdd) else (1.0, 1.0)
    return ResidualUnit(name, tuple(layers), unit_input, output, shortcut, branch, alpha, step)


def _merge_layer(name, layers):
    for layer in layers:
        if layer.name in (f"{name}_add", f"{name}_out") and isinstance(
                layer, (keras.layers.Add, ResidualAdd)):
            return layer
    return None


def _made_by_branch(tensor, name):
    """Branch layers are numbered from 1 (``{name}_1_conv``); shortcut layers are ``{name}_0_*``
    or absent (identity)."""
    maker = tensor._keras_history.operation.name
    return maker.startswith(f"{name}_") and not maker.startswith(f"{name}_0_")


# ---------------------------------------------------------------------------------------------
# Checking what the analysis functions are given


def check_model(model):
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise KresError(f"model must be a functional keras.Model (as kres.build returns); got "
                        f"{type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise KresError(f"model {model.name!r} has {len(model.inputs)} inputs and "
                        f"{len(model.outputs)} outputs; accepted: one of each (an image "
                        "classifier, as kres.build returns)")


def check_images(model, images):
    """``images`` as a float32 NumPy batch of the model's input shape."""
    images = np.asarray(images, dtype="float32")
    expected = tuple(model.inputs[0].shape[1:])
    fits = images.ndim == len(expected) + 1 and all(
        e is None or e == g for e, g in zip(expected, images.shape[1:]))
    if not fits or len(images) == 0:
        raise KresError(f"images have shape {images.shape}; model {model.name!r} takes a "
                        f"non-empty batch of shape (batch, {', '.join(map(str, expected))})")
    return images


def check_labels(model, images, labels):
    """``labels`` as an int array of one class index per image."""
    classes = model.outputs[0].shape[-1]
    labels = np.asarray(labels)
    if (labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer)
            or labels.min() < 0 or labels.max() >= classes):
        raise KresError(f"labels have shape {labels.shape} and dtype {labels.dtype}; accepted: "
                        f"{len(images)} integer class indices in [0, {classes - 1}], one per image")
    return labels.astype("int32")


def check_tensorflow(what):
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise KresError(f"{what} takes gradients with tf.GradientTape and needs the TensorFlow "
                        f"backend; KERAS_BACKEND is {backend!r}: set KERAS_BACKEND=tensorflow "
                        "before Keras is imported")
