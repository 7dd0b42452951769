"""The ODE view of residual networks: a unit ``y = x + h F(x)`` is one step of Euler's method for
``dx/dt = F(x)`` (E 2017, "A Proposal on Machine Learning via Dynamical Systems"; Haber &
Ruthotto 2017; Chen et al. 2018, "Neural Ordinary Differential Equations"). ``step_size`` (h)
and ``shortcut_scale`` (a, in ``y = a x + h F(x)``) are fields of every spec.
"""

from __future__ import annotations

import re

import keras
import numpy as np

from kres.analysis.units import check_images, find_units
from kres.errors import KresError
from kres.models import build, get_spec

_UNIT_LAYER = re.compile(r"^conv2_block\d+_")


def ode_convergence(name, images, depths=(1, 2, 4, 8, 16, 32, 64), *, seed=0,
                    include_preprocessing=False, **overrides):
    """The same network at depths L with step h = 1/L: outputs converge as L grows.

    For each L in ``depths``, builds model ``name`` as one stage of L units (the first stage's
    width, stride 1, identity shortcuts) with ``step_size=1/L``, every unit sharing one residual
    branch's weights. The stage is then Euler's method with L steps for ``dx/dt = F(x)`` over
    ``t`` in [0, 1]; stem, branch and head keep the same weights (drawn with ``seed``) at every
    depth, so the networks differ only in how finely they follow one flow. Outputs are taken in
    inference mode. ``overrides`` are spec fields (``block="preact_basic"``, ...).

    Returns a dict: ``depths``, ``step_sizes``, ``outputs`` (the model's outputs on ``images``,
    one array per depth), ``distances`` (``||f_L(x) - f_deepest(x)|| / ||f_deepest(x)||`` over
    the batch) and ``changes`` (the same between each depth and the next).

    >>> x, _ = kres.data.arrays("digits", "test", limit=32)
    >>> result = ode_convergence("resnet20", x, depths=(1, 2, 4, 8), include_preprocessing=True)
    >>> result["distances"]   # shrinking roughly like 1/L; the last is 0
    """
    depths = _check_depths(depths)
    base = get_spec(name, **overrides)
    images = np.asarray(images, "float32")
    spec = base.replace(depths=(1,), widths=base.widths[:1], strides=(1,), shortcut_scale=1.0,
                        input_shape=images.shape[1:])
    keras.utils.set_random_seed(seed)
    reference = build(spec, include_preprocessing=include_preprocessing)
    check_images(reference, images)
    _check_identity_units(reference, base.name)
    outputs = []
    for depth in depths:
        model = build(spec.replace(depths=(depth,), step_size=1.0 / depth),
                      include_preprocessing=include_preprocessing)
        _share_weights(model, reference)
        outputs.append(keras.ops.convert_to_numpy(model(images, training=False)))
    deepest = outputs[-1]
    return {
        "model": base.name,
        "depths": np.array(depths),
        "step_sizes": 1.0 / np.array(depths, "float64"),
        "outputs": outputs,
        "distances": np.array([_relative(o, deepest) for o in outputs]),
        "changes": np.array([_relative(a, b) for a, b in zip(outputs, outputs[1:])]),
    }


def _check_depths(depths):
    depths = list(depths) if isinstance(depths, (list, tuple, np.ndarray)) else None
    if (not depths or len(depths) < 2
            or any(not isinstance(d, (int, np.integer)) or d < 1 for d in depths)
            or sorted(set(depths)) != depths):
        raise KresError(f"invalid depths {depths!r}: accepted are at least two increasing "
                        "positive integers, e.g. (1, 2, 4, 8)")
    return [int(d) for d in depths]


def _check_identity_units(model, name):
    (unit,) = find_units(model)
    if unit.shortcut is not unit.input:
        raise KresError(f"model {name!r} cannot be built as an ODE stage: its first-stage units "
                        "change the width (or have no shortcut), so x + h*F(x) is not a step "
                        "of one flow; accepted: models whose first stage keeps the stem's width "
                        "with identity shortcuts (the CIFAR ResNets and preact_resnet110)")


def _share_weights(model, reference):
    """Every unit of ``model`` gets the reference's one unit's weights; the rest the same."""
    for layer in model.layers:
        if layer.weights:
            source = _UNIT_LAYER.sub("conv2_block1_", layer.name)
            layer.set_weights(reference.get_layer(source).get_weights())


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
