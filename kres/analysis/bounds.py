"""How much a network can stretch its input: Lipschitz bounds against measured sensitivity.

Three numbers for each unit and for the whole network, all in inference mode (BatchNorm on its
moving statistics, where the network is a fixed function):

- an upper bound: the product of its layers' spectral norms, summed over the two paths of a
  residual unit (``a * bound(shortcut) + h * bound(branch)``); global, from the weights alone;
- the spectral norm of its Jacobian at the given images (power iteration): the largest gain for
  an infinitesimal perturbation of any of those images;
- the measured sensitivity ``||f(x + d) - f(x)|| / ||d||`` for small perturbations ``d`` of the
  given images (random, and for the network also along the loss gradient).

A convolution's spectral norm is bounded exactly, without iteration: zero-padded, it is a piece of
a circular convolution on a grid of ``input + kernel - 1`` pixels, whose singular values are those
of the kernel's discrete Fourier transform at each frequency (Sedghi, Gupta & Long 2019, "The
Singular Values of Convolutional Layers").
"""

from __future__ import annotations

import math

import keras
import numpy as np

from kres.analysis.dynamics import classification_loss
from kres.analysis.units import (check_images, check_labels, check_tensorflow, find_units,
                                 has_units)
from kres.errors import KresError
from kres.models.layers import (DropPath, ResidualAdd, ReverseChannels, SymmetricMaxPool,
                                ZeroPadChannels)

# Layers that move values around without stretching them (gain at most 1), or the identity at
# inference.
_NON_EXPANSIVE = (keras.layers.InputLayer, keras.layers.ZeroPadding2D, keras.layers.Dropout,
                  keras.layers.Flatten, keras.layers.Reshape, keras.layers.ReLU,
                  keras.layers.GlobalMaxPooling2D, ZeroPadChannels, DropPath, ReverseChannels)
_ACTIVATION_GAIN = {"relu": 1.0, "linear": 1.0, "softmax": 1.0, "sigmoid": 0.25, "tanh": 1.0}


def lipschitz(model, images, labels=None, *, eps=1e-3, jacobians=True, iterations=20,
              jacobian_images=8, seed=0):
    """Upper bounds, Jacobian norms and measured sensitivity, per unit and for the network.

    Args:
        model: a kres (or any functional) classifier with a fixed input size; the input is what
            the model takes (raw pixels when it was built with ``include_preprocessing``).
        images: a batch of real inputs.
        labels: class indices for the gradient direction (default: the model's predictions).
        eps: size of each perturbation relative to the perturbed input, per image.
        jacobians: compute the Jacobian norms (the slow part: one traced graph of every unit
            and the network); ``False`` leaves them NaN.
        iterations: power-iteration steps for the Jacobian norms.
        jacobian_images: how many of the images (the first ones) the Jacobian norms look at;
            each costs about ``iterations`` forward and backward passes.

    Returns a dict: ``units``; per unit ``unit_bounds``, ``unit_jacobian_norms`` and
    ``unit_sensitivity`` (mean over images, random ``d``); for the network ``bound`` (which is
    the stem's bound x the product of ``unit_bounds`` x the head's), ``jacobian_norm``,
    ``sensitivity_random`` and ``sensitivity_gradient`` (one value per image), and
    ``unbounded_layers`` (names of layers with no known bound: their bound is inf).
    Jacobians use TensorFlow (``tf.autodiff.ForwardAccumulator`` and ``tf.GradientTape``).

    >>> x, y = kres.data.arrays("digits", "test", limit=32)
    >>> model = kres.build("resnet20", input_shape=(32, 32, 1), include_preprocessing=True)
    >>> report = lipschitz(model, x, y)
    >>> report["sensitivity_random"].mean() <= report["jacobian_norm"] <= report["bound"]
    True
    """
    check_tensorflow("lipschitz")
    images, labels = _checked_inputs(model, images, labels)
    units, pieces, inputs = _pieces(model, images)
    functions = [p.function() for p in pieces]
    rng = np.random.default_rng(seed)
    norms = (jacobian_norms(functions, [x[:jacobian_images] for x in inputs], iterations, rng)
             if jacobians else [math.nan] * len(pieces))
    gains, unbounded = {}, []
    bounds = [p.bound(gains, unbounded) for p in pieces]
    random = [sensitivity(f, x, _random_directions(x, rng), eps)
              for f, x in zip(functions, inputs)]
    gradient = _loss_gradient(model, images, labels)
    return {
        "model": model.name,
        "units": [u.name for u in units],
        "unit_bounds": np.array(bounds[:-1]),
        "unit_jacobian_norms": np.array(norms[:-1]),
        "unit_sensitivity": np.array([s.mean() for s in random[:-1]]),
        "bound": bounds[-1],
        "jacobian_norm": norms[-1],
        "sensitivity_random": random[-1],
        "sensitivity_gradient": sensitivity(functions[-1], images, gradient, eps),
        "unbounded_layers": sorted(set(unbounded)),
        "eps": eps,
    }


def _checked_inputs(model, images, labels):
    """The images and labels as lipschitz measures them; the model needs a fixed input size."""
    images = check_images(model, images)
    if None in model.inputs[0].shape[1:]:
        raise KresError(f"model {model.name!r} takes inputs of shape {model.inputs[0].shape}; "
                        "lipschitz needs a fixed input size (build with a full input_shape)")
    return images, None if labels is None else check_labels(model, images, labels)


def _pieces(model, images):
    """The model's residual units, then the pieces lipschitz measures (each unit, and last the
    whole network) with the values each one reads at ``images``."""
    units = find_units(model) if has_units(model) else []
    pieces = [_Piece(u.input, u.output, u.layers) for u in units]
    pieces.append(_Piece(model.inputs[0], model.outputs[0], model.layers))
    return units, pieces, _values(model, [u.input for u in units], images) + [images]


def _values(model, tensors, images):
    if not tensors:
        return []
    probe = keras.Model(model.inputs[0], list(tensors))
    return [keras.ops.convert_to_numpy(t) for t in probe(images, training=False)]


class _Piece:
    """A part of the graph from one tensor to another: its layers, its bound, its function."""

    def __init__(self, source, target, layers):
        self.source, self.target, self.layers = source, target, list(layers)

    def bound(self, gains, unbounded):
        """Product of spectral norms along every path, summed where paths join."""
        bound = {id(self.source): 1.0}
        for layer in self.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            inputs = [bound[id(t)] for t in keras.tree.flatten(layer.input)]
            bound[id(layer.output)] = _combine(layer, inputs, gains, unbounded)
        return float(bound[id(self.target)])

    def function(self):
        model = keras.Model(self.source, self.target)
        return lambda x: model(x, training=False)


def _combine(layer, inputs, gains, unbounded):
    if isinstance(layer, ResidualAdd):
        return layer.alpha * inputs[0] + layer.step * inputs[1]
    if isinstance(layer, keras.layers.Add):
        return sum(inputs)
    if isinstance(layer, keras.layers.Concatenate):
        return math.sqrt(sum(b * b for b in inputs))
    if len(inputs) != 1:  # products of signals (squeeze-excitation) have no bound this simple
        unbounded.append(layer.name)
        return math.inf
    if id(layer) not in gains:
        gains[id(layer)] = layer_gain(layer)
        if gains[id(layer)] == math.inf:
            unbounded.append(layer.name)
    return gains[id(layer)] * inputs[0]


def layer_gain(layer):
    """An upper bound on the spectral norm (Lipschitz constant in the L2 norm) of one layer in
    inference mode; ``inf`` for a layer kres does not know how to bound.

    >>> layer_gain(keras.layers.ReLU())
    1.0
    """
    if isinstance(layer, _NON_EXPANSIVE):
        return 1.0
    if isinstance(layer, keras.layers.Conv2D):
        return conv_gain(layer) * _activation_gain(layer)
    if isinstance(layer, keras.layers.Dense):
        kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
        return float(np.linalg.norm(kernel, 2)) * _activation_gain(layer)
    if isinstance(layer, keras.layers.BatchNormalization):
        variance = keras.ops.convert_to_numpy(layer.moving_variance).astype("float64")
        gamma = 1.0 if layer.gamma is None else keras.ops.convert_to_numpy(layer.gamma)
        return float(np.max(np.abs(gamma) / np.sqrt(variance + layer.epsilon)))
    if isinstance(layer, keras.layers.Normalization):
        return float(np.max(1.0 / np.sqrt(keras.ops.convert_to_numpy(layer.variance))))
    if isinstance(layer, keras.layers.Activation):
        return _activation_gain(layer)
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
                          SymmetricMaxPool)):
        return _pool_gain(layer)
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        h, w = layer.input.shape[1:3]
        return 1.0 / math.sqrt(h * w) if h and w else 1.0
    return math.inf


def _activation_gain(layer):
    name = getattr(layer.activation, "__name__", str(layer.activation))
    return _ACTIVATION_GAIN.get(name, math.inf)


def _pool_gain(layer):
    """Each input pixel falls in at most ceil(k/s) x ceil(k/s) windows; a max (or a mean) over a
    window changes by at most the window's L2 change. A mean over k x k unpadded pixels also
    divides by k."""
    pool = layer.pool_size if hasattr(layer, "pool_size") else (layer.pool_size,) * 2
    pool = (pool, pool) if isinstance(pool, int) else tuple(pool)
    strides = layer.strides if isinstance(layer.strides, (tuple, list)) else (layer.strides,) * 2
    overlap = math.ceil(pool[0] / strides[0]) * math.ceil(pool[1] / strides[1])
    gain = math.sqrt(overlap)
    if isinstance(layer, keras.layers.AveragePooling2D) and layer.padding == "valid":
        gain /= math.sqrt(pool[0] * pool[1])
    return gain


def conv_gain(layer, input_size=None):
    """An upper bound on a Conv2D's spectral norm at its input size (exact for stride 1 up to
    the zero padding): the largest singular value of the kernel's 2-D DFT on a grid of
    ``input + dilated kernel - 1`` pixels, over frequencies and groups. A stride only drops
    outputs, so it can only lower the norm. ``input_size`` (height, width) defaults to the size
    the layer was called on.

    >>> conv = keras.layers.Conv2D(4, 1, use_bias=False); conv.build((None, 8, 8, 4))
    >>> conv_gain(conv, (8, 8)) == np.linalg.norm(conv.kernel.numpy()[0, 0], 2)
    True
    """
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
    kh, kw, cin, cout = kernel.shape
    dh, dw = layer.dilation_rate
    if (dh, dw) != (1, 1):
        dilated = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1, cin, cout))
        dilated[::dh, ::dw] = kernel
        kernel, (kh, kw) = dilated, dilated.shape[:2]
    groups = getattr(layer, "groups", 1)
    per_group = np.split(kernel, groups, axis=3)
    if kh == kw == 1:
        return max(float(np.linalg.norm(k[0, 0], 2)) for k in per_group)
    h, w = input_size or layer.input.shape[1:3]
    grid = (h + kh - 1, w + kw - 1)
    return max(_largest_singular_value(np.fft.rfft2(k, s=grid, axes=(0, 1))) for k in per_group)


def _largest_singular_value(symbol):
    matrices = symbol.reshape(-1, *symbol.shape[2:])
    return float(np.max(np.linalg.svd(matrices, compute_uv=False)))


# ---------------------------------------------------------------------------------------------
# Measured on images (TensorFlow autodiff)


def jacobian_norm(function, x, iterations=20, rng=None):
    """The largest singular value of the Jacobian of ``function`` at the batch ``x``, by power
    iteration on J^T J; per-image functions make J block-diagonal, so this is the largest over
    the images. Converges from below.

    >>> round(jacobian_norm(lambda v: 3.0 * v, np.ones((2, 4), "float32")), 4)
    3.0
    """
    return jacobian_norms([function], [x], iterations, rng)[0]


def jacobian_norms(functions, inputs, iterations=20, rng=None):
    """:func:`jacobian_norm` of several functions at once, in one traced TensorFlow graph (one
    trace instead of one per function): J v by forward mode (``tf.autodiff.ForwardAccumulator``),
    then J^T (J v) by reverse mode (``tf.GradientTape``), from one forward pass."""
    import tensorflow as tf

    if not functions:
        return []
    rng = np.random.default_rng(0) if rng is None else rng
    xs = [tf.constant(x) for x in inputs]

    @tf.function
    def jtj(vs):
        gains, results = [], []
        for function, x, v in zip(functions, xs, vs):
            with tf.GradientTape() as tape:
                tape.watch(x)
                with tf.autodiff.ForwardAccumulator(primals=x, tangents=v) as accumulator:
                    y = function(x)
            jv = tf.stop_gradient(accumulator.jvp(y))
            gains.append(tf.norm(jv))
            results.append(tape.gradient(y, x, output_gradients=jv))
        return gains, results

    vs = [rng.standard_normal(x.shape).astype("float32") for x in inputs]
    vs = [tf.constant(v / np.linalg.norm(v)) for v in vs]
    sigmas = [0.0] * len(vs)
    for _ in range(iterations):
        gains, results = jtj(vs)
        sigmas = [float(g) for g in gains]
        sizes = [tf.norm(r) for r in results]
        vs = [r / s if float(s) > 0 else v for r, s, v in zip(results, sizes, vs)]
    return sigmas


def sensitivity(function, x, directions, eps=1e-3):
    """``||f(x + d) - f(x)|| / ||d||`` per image, with ``d`` along ``directions`` scaled to
    ``eps`` times each image's norm (``eps`` itself for an all-zero image)."""
    x = np.asarray(x, "float32")
    norms = _norms(x)
    scale = eps * np.where(norms > 0, norms, 1.0)
    d = directions / np.maximum(_norms(directions), 1e-30)[:, None] * scale[:, None]
    d = d.reshape(x.shape).astype("float32")
    before = keras.ops.convert_to_numpy(function(x)).astype("float64")
    after = keras.ops.convert_to_numpy(function(x + d)).astype("float64")
    return _norms(after - before) / _norms(d.astype("float64"))


def _norms(x):
    return np.sqrt(np.sum(np.square(np.reshape(x, (len(x), -1)), dtype="float64"), axis=1))


def _random_directions(x, rng):
    return rng.standard_normal((len(x), int(np.prod(x.shape[1:]))))


def _loss_gradient(model, images, labels):
    """Per image, the input direction in which the loss grows fastest: d loss / d input for a
    classifier (where the softmax has saturated in float32 and that gradient is exactly zero,
    the gradient of the predicted class's logit instead); for other outputs, of ||f(x)||^2."""
    import tensorflow as tf

    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outputs = model(x, training=False)
        if len(outputs.shape) != 2:
            objectives = [tf.reduce_sum(tf.square(outputs))]
        else:
            if labels is None:
                labels = np.argmax(keras.ops.convert_to_numpy(outputs), axis=-1)
            objectives = [classification_loss(model, labels, outputs),
                          tf.reduce_sum(tf.reduce_max(outputs, axis=-1))]
    flat = [tape.gradient(t, x).numpy().reshape(len(images), -1).astype("float64")
            for t in objectives]
    if len(flat) == 2:
        saturated = _norms(flat[0]) == 0
        flat[0][saturated] = flat[1][saturated]
    return flat[0]
