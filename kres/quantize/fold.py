"""BatchNorm folded into the convolution before it, as the TFLite and ONNX converters fold it.

At inference BatchNorm is an affine map per channel with its moving statistics,
``y = gamma * (z - mean) / sqrt(var + eps) + beta``; after a convolution ``z = W * x + b`` it is the
convolution with ``W' = W * s`` and ``b' = (b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)``
per output channel. Folding once, with the trained moving statistics, and fine-tuning the folded
weights is QAT with frozen BatchNorm statistics, the setting Krishnamoorthi 2018 recommends for
fine-tuning ("Quantizing deep convolutional networks for efficient inference: A whitepaper",
arXiv:1806.08342, section 3.2): the network then trains exactly the weights int8 will hold.
"""

from __future__ import annotations

import numpy as np


def batchnorm_scale_shift(bn):
    """(scale, shift) per channel of a Keras BatchNormalization layer at inference."""
    weights = {w.path.rsplit("/", 1)[-1]: np.asarray(w.numpy(), np.float64) for w in bn.weights}
    channels = weights["moving_mean"].shape[0]
    gamma = weights.get("gamma", np.ones(channels))
    beta = weights.get("beta", np.zeros(channels))
    scale = gamma / np.sqrt(weights["moving_variance"] + bn.epsilon)
    return scale, beta - weights["moving_mean"] * scale


def fold(kernel, bias, bn=None):
    """Kernel (output channels last) and bias with ``bn`` folded in; unchanged without it."""
    kernel = np.asarray(kernel, np.float64)
    bias = np.zeros(kernel.shape[-1]) if bias is None else np.asarray(bias, np.float64)
    if bn is not None:
        scale, shift = batchnorm_scale_shift(bn)
        kernel, bias = kernel * scale, bias * scale + shift
    return kernel.astype(np.float32), bias.astype(np.float32)
