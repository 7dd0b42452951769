"""Non-trivial normalisation statistics for reference comparisons: with BatchNorm at its
initial mean 0 / variance 1 / gamma 1 / beta 0, a mixed-up or missing BN layer goes unnoticed."""

import numpy as np


def keras_norms(model, rng):
    """Random gamma, beta and moving statistics in every Keras BatchNormalization layer."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                               rng.normal(0, 0.1, beta.shape).astype(np.float32),
                               rng.normal(0, 0.1, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, var.shape).astype(np.float32)])


def torch_norms(net, generator):
    """The same for a PyTorch network's BatchNorm2d (and GroupNorm affine) layers."""
    import torch
    from torch import nn

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                n = m.weight.shape[0]
                m.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
