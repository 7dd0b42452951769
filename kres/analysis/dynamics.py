"""How gradients and signals move through the units: gradient norms and residual ratios."""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from kres.analysis.units import (check_images, check_labels, check_tensorflow, find_units)
from kres.errors import KresError


def gradient_flow(model, images, labels, *, training=True):
    """The norm of the loss gradient with respect to each unit's output and to each unit's
    kernels, stem to head, for one batch.

    The loss is the batch's mean cross-entropy. ``training=True`` (the default) runs
    BatchNormalization on the batch's own statistics, as a training step does; the model's
    moving statistics are put back afterwards. Gradients are taken with TensorFlow's
    ``tf.GradientTape`` (the TensorFlow backend).

    Returns a dict: ``units`` (names), ``output_norms`` and ``kernel_norms`` (one float per
    unit: the Frobenius norm over the batch of dL/d(unit output), and over all the unit's
    kernels of dL/dK), ``output_ratio`` and ``kernel_ratio`` (first unit / last unit),
    ``loss`` and ``model`` (its name).

    >>> x, y = kres.data.arrays("digits", "train", limit=64)
    >>> plain = kres.build("plain56", input_shape=(32, 32, 1), include_preprocessing=True)
    >>> gradient_flow(plain, x, y)["output_ratio"]   # ~6e3; resnet56: ~30
    """
    check_tensorflow("gradient_flow")
    import tensorflow as tf

    units = find_units(model)
    images = check_images(model, images)
    labels = check_labels(model, images, labels)
    probe = keras.Model(model.inputs[0], [u.output for u in units] + [model.outputs[0]])
    kernels = [u.kernels for u in units]
    with restored_state(model):
        with tf.GradientTape() as tape:
            *outputs, predictions = probe(images, training=training)
            loss = classification_loss(model, labels, predictions)
        output_grads, kernel_grads = tape.gradient(loss, [outputs, kernels])
    output_norms = np.array([_norm([g]) for g in output_grads])
    kernel_norms = np.array([_norm(g) for g in kernel_grads])
    return {
        "model": model.name,
        "units": [u.name for u in units],
        "output_norms": output_norms,
        "kernel_norms": kernel_norms,
        "output_ratio": float(output_norms[0] / output_norms[-1]),
        "kernel_ratio": float(kernel_norms[0] / kernel_norms[-1]),
        "loss": float(loss),
    }


def residual_ratios(model, images, *, training=False):
    """``||h F(x)|| / ||a x||`` for each residual unit ``y = a x + h F(x)``: how much the
    branch changes the signal that the shortcut carries, on real inputs.

    Per image, the norm of the branch term over the norm of the shortcut term (for an identity
    shortcut and a = h = 1, simply ``||F(x)|| / ||x||``), averaged over the images.
    ``training=False`` (the default) uses the moving BatchNorm statistics, as inference does.

    Returns a dict: ``units``, ``ratios``, ``branch_norms`` and ``shortcut_norms`` (per-image
    means, one float per unit), ``model``.

    >>> x, _ = kres.data.arrays("digits", "test", limit=64)
    >>> model = kres.build("resnet20", input_shape=(32, 32, 1), include_preprocessing=True)
    >>> residual_ratios(model, x)["ratios"].shape
    (9,)
    """
    images = check_images(model, images)
    units = [u for u in find_units(model) if u.residual]
    if not units:
        raise KresError(f"model {model.name!r} has no residual units: its units have no "
                        "shortcut (a plain network), so there is no y = a*x + h*F(x) to measure")
    probe = keras.Model(model.inputs[0], [t for u in units for t in (u.shortcut, u.branch)])
    with restored_state(model):
        terms = [keras.ops.convert_to_numpy(t) for t in probe(images, training=training)]
    shortcut = np.stack([u.alpha * _per_image_norms(s) for u, s in zip(units, terms[::2])])
    branch = np.stack([u.step * _per_image_norms(b) for u, b in zip(units, terms[1::2])])
    return {
        "model": model.name,
        "units": [u.name for u in units],
        "ratios": (branch / shortcut).mean(axis=1),
        "branch_norms": branch.mean(axis=1),
        "shortcut_norms": shortcut.mean(axis=1),
    }


def classification_loss(model, labels, predictions):
    """Mean cross-entropy; from logits unless the model ends in a softmax."""
    activation = getattr(model.layers[-1], "activation", None)
    from_logits = getattr(activation, "__name__", "") != "softmax"
    losses = keras.losses.sparse_categorical_crossentropy(labels, predictions,
                                                           from_logits=from_logits)
    return keras.ops.mean(losses)


@contextlib.contextmanager
def restored_state(model):
    """Runs the block, then puts back the model's non-trainable variables (BatchNorm moving
    statistics, random-seed states), which a call with ``training=True`` updates."""
    saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    try:
        yield
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)


def _norm(tensors):
    return float(np.sqrt(sum(np.sum(np.square(keras.ops.convert_to_numpy(t), dtype="float64"))
                             for t in tensors)))


def _per_image_norms(x):
    return np.sqrt(np.sum(np.square(x, dtype="float64").reshape(len(x), -1), axis=1))
