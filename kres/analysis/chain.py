"""A model run unit by unit: the pieces between its units as Keras models of their own, so that a
unit can be replaced (by its shortcut alone, or by nothing) and a gradient taken at any unit's
input, on the TensorFlow and JAX backends alike.

A kres model is a chain: stem, then each unit taking the previous one's output (``find_units``
checks that each unit takes exactly one tensor from outside it), then the head. Each piece is a
functional ``keras.Model`` cut from the model's own graph between two of its tensors, so it shares
the model's weights.
"""

from __future__ import annotations

import keras
import numpy as np

from kres.analysis.units import find_units
from kres.errors import KresError


class Chain:
    """``model`` as ``stem -> units -> head``; call :meth:`run` with the units to replace."""

    def __init__(self, model):
        self.model = model
        self.units = find_units(model)
        tensors = [model.inputs[0]]
        for unit in self.units:
            tensors += [unit.input, unit.output]
        tensors.append(model.outputs[0])
        # links[0] is the stem, links[i] joins unit i-1's output to unit i's input, links[-1]
        # is the head; None where the two tensors are one (nothing between them).
        self.links = [_piece(a, b) for a, b in zip(tensors[::2], tensors[1::2])]
        self.bodies = [_piece(u.input, u.output) for u in self.units]
        self._shortcuts = {}

    def run(self, x, start=None, replace=None, training=False):
        """The model's output for ``x``, the image, or unit ``start``'s input, each unit
        ``i`` in ``replace`` run as ``replace[i]`` says: ``"shortcut"`` (the merge of the shortcut
        with a zero branch) or ``"skip"`` (the unit's input passed on unchanged)."""
        replace = replace or {}
        if start is None:
            start, x = 0, _call(self.links[0], x, training)
        for i in range(start, len(self.units)):
            if i > start:
                x = _call(self.links[i], x, training)
            how = replace.get(i)
            x = (x if how == "skip" else self.shortcut_only(i)(x, training) if how == "shortcut"
                 else _call(self.bodies[i], x, training))
        return _call(self.links[-1], x, training)

    def can_skip(self, i):
        unit = self.units[i]
        return tuple(unit.input.shape[1:]) == tuple(unit.output.shape[1:])

    def shortcut_only(self, i):
        """Unit ``i`` with its residual branch replaced by zeros: ``y = post(a * shortcut(x))``,
        the rest of the unit after its merge (a ReLU, for a post-activation unit) kept."""
        if i not in self._shortcuts:
            unit = self.units[i]
            if not unit.residual:
                raise KresError(f"unit {unit.name!r} has no shortcut to route through")
            to_shortcut = _piece(unit.input, unit.shortcut)
            merge = keras.Model([unit.shortcut, unit.branch], unit.output)
            branch_shape = tuple(unit.branch.shape[1:])

            def shortcut_only(x, training=False):
                s = _call(to_shortcut, x, training)
                zeros = keras.ops.zeros((keras.ops.shape(x)[0], *branch_shape), unit.branch.dtype)
                return merge([s, zeros], training=training)

            self._shortcuts[i] = shortcut_only
        return self._shortcuts[i]


def value_and_gradient(function, x):
    """``function(x)`` (a scalar built from Keras ops and model calls in inference mode) and its
    gradient with respect to ``x``, as NumPy: ``tf.GradientTape`` on TensorFlow,
    ``jax.value_and_grad`` on JAX."""
    backend = keras.backend.backend()
    x = keras.ops.convert_to_tensor(np.asarray(x, "float32"))
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x)
        gradient = tape.gradient(value, x)
    elif backend == "jax":
        import jax

        value, gradient = jax.value_and_grad(function)(x)
    else:
        raise KresError(f"gradients are taken on the TensorFlow or JAX backend; KERAS_BACKEND "
                        f"is {backend!r}: set KERAS_BACKEND=tensorflow or jax before Keras is "
                        "imported")
    return float(keras.ops.convert_to_numpy(value)), keras.ops.convert_to_numpy(gradient)


def _piece(source, target):
    return None if source is target else keras.Model(source, target)


def _call(piece, x, training):
    return x if piece is None else piece(x, training=training)
