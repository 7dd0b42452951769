"""The layers of a QAT model: convolutions and dense layers whose weights are fake-quantised
per output channel, and the quantiser that fake-quantises an activation per tensor.

Both use ``keras.quantizers.fake_quant_with_min_max_vars``: on the TensorFlow backend it is
``tf.quantization.fake_quant_with_min_max_vars[_per_channel]``, the op the TFLite converter
turns into int8 tensors with exactly those ranges; on other backends the same arithmetic in
``keras.ops`` with a straight-through gradient. Registered under the ``kres`` package so that QAT
models save and load as .keras files (``safe_mode=True``).
"""

from __future__ import annotations

import keras
from keras import ops

# The TFLite int8 specification: weights symmetric int8 in [-127, 127] (zero point 0) per output
# channel, activations asymmetric int8 in [-128, 127] per tensor.
NUM_BITS = 8


def quantize_weights(kernel, axis=-1):
    """``kernel`` fake-quantised symmetrically to [-127, 127] steps of max|w| / 127 (zero point
    0), per channel of ``axis`` or per tensor (``axis=None``), as int8 kernels store weights."""
    reduce = None if axis is None else [
        i for i in range(len(kernel.shape)) if i != axis % len(kernel.shape)]
    bound = ops.maximum(ops.max(ops.abs(kernel), axis=reduce), 1e-8)
    return keras.quantizers.fake_quant_with_min_max_vars(
        kernel, -bound, bound, num_bits=NUM_BITS, narrow_range=True, axis=axis)


@keras.saving.register_keras_serializable(package="kres")
class QuantConv2D(keras.layers.Conv2D):
    """Conv2D (BatchNorm already folded into its kernel and bias, ReLU as its activation) whose
    kernel is fake-quantised per output channel at every call."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, quantize_weights(kernel, axis=-1))


@keras.saving.register_keras_serializable(package="kres")
class QuantDense(keras.layers.Dense):
    """Dense whose kernel is fake-quantised per tensor at every call: the TFLite converter keeps
    FULLY_CONNECTED weights per tensor (per-unit ranges fail its conversion with "'tfl.transpose'
    op has mismatched quantized axes", measured with TensorFlow 2.21)."""

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, quantize_weights(self.kernel, axis=None))
        if self.use_bias:
            x = ops.add(x, self.bias)
        return self.activation(x)


@keras.saving.register_keras_serializable(package="kres")
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantises a tensor to int8 over ``[min, max]`` (asymmetric, per tensor; zero always
    inside the range so that padding and ReLU zeros are exact).

    The range starts where :func:`kres.quantize.observe` puts it (the minimum and maximum on
    real images) and, in training, follows an exponential moving average of each batch's
    minimum and maximum (``decay``), the moving-average quantiser of Jacob et al. 2018
    ("Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
    Inference", arXiv:1712.05877, section 3.1)."""

    def __init__(self, decay=0.999, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ActivationQuantizer decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.observing = False  # set by kres.quantize.observe: pass float values through

    def build(self, input_shape):
        common = dict(shape=(), trainable=False, aggregation="mean")
        self.range_min = self.add_weight(name="range_min", initializer="zeros", **common)
        self.range_max = self.add_weight(name="range_max", initializer="zeros", **common)

    def call(self, x, training=None):
        if self.observing:
            return x
        if training:
            decay = ops.cast(self.decay, "float32")
            x32 = ops.cast(x, "float32")
            self.range_min.assign(decay * self.range_min + (1 - decay) * ops.min(x32))
            self.range_max.assign(decay * self.range_max + (1 - decay) * ops.max(x32))
        low = ops.minimum(self.range_min, 0.0)
        high = ops.maximum(self.range_max, low + 1e-6)
        high = ops.maximum(high, 0.0)
        return keras.quantizers.fake_quant_with_min_max_vars(
            x, low, high, num_bits=NUM_BITS, narrow_range=False)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "decay": self.decay}
