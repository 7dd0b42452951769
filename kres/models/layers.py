"""The few layers Keras does not ship. Pure Keras 3 (keras.ops), so they run on every backend,
and registered under the ``kres`` package so saved models load with ``safe_mode=True``."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kres")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``rate``.

    Survivors are scaled by ``1 / (1 - rate)`` so the expected output is unchanged; at inference
    the layer is the exact identity (Huang et al. 2016, "Deep Networks with Stochastic Depth").
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        mask = ops.cast(noise < keep, x.dtype)
        return x * mask / ops.cast(keep, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kres")
class ZeroPadChannels(keras.layers.Layer):
    """Adds ``pad`` all-zero channels, split evenly front and back: the parameter-free
    "option A" shortcut of the CIFAR ResNets (He et al. 2015)."""

    def __init__(self, pad, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        front = self.pad // 2
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [front, self.pad - front]])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + self.pad,)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="kres")
class ResidualAdd(keras.layers.Layer):
    """``y = alpha * shortcut + step * branch``: residual scaling and the ODE step size."""

    def __init__(self, alpha=1.0, step=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.step = float(step)

    def call(self, inputs):
        shortcut, branch = inputs
        return shortcut * ops.cast(self.alpha, shortcut.dtype) + branch * ops.cast(
            self.step, branch.dtype
        )

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "step": self.step}


@keras.saving.register_keras_serializable(package="kres")
class SymmetricMaxPool(keras.layers.Layer):
    """Max pooling with PyTorch's symmetric ``padding=1`` (pads with -inf, not zeros), for stems
    whose input to the pool can be negative (pre-activation nets)."""

    def __init__(self, pool_size=3, strides=2, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = int(pool_size), int(strides), int(padding)

    def call(self, x):
        p = self.padding
        x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=float("-inf"))
        return ops.max_pool(x, self.pool_size, self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else (n + 2 * self.padding - self.pool_size) // self.strides + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="kres")
class ReverseChannels(keras.layers.Layer):
    """RGB <-> BGR, for weights trained on Caffe-style BGR input."""

    def call(self, x):
        return ops.flip(x, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kres")
class StdConv2D(keras.layers.Conv2D):
    """Conv2D with weight standardisation (Qiao et al. 2019, arXiv:1903.10520): each output
    filter is shifted and scaled to zero mean and unit variance before it is applied. BiT pairs it
    with GroupNorm (Kolesnikov et al. 2020); ``epsilon`` 1e-8 is timm's value for BiT
    (timm/models/resnetv2.py, ``_create_resnetv2_bit``)."""

    def __init__(self, *args, epsilon=1e-8, **kwargs):
        super().__init__(*args, **kwargs)
        self.epsilon = float(epsilon)

    def convolution_op(self, inputs, kernel):
        # kernel: (kh, kw, in / groups, out); statistics per output filter, biased variance, in
        # float32 (epsilon underflows in float16)
        k = ops.cast(kernel, "float32")
        mean = ops.mean(k, axis=(0, 1, 2), keepdims=True)
        var = ops.var(k, axis=(0, 1, 2), keepdims=True)
        k = (k - mean) / ops.sqrt(var + self.epsilon)
        return super().convolution_op(inputs, ops.cast(k, kernel.dtype))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="kres")
class BlurPool2D(keras.layers.Layer):
    """Anti-aliased downsampling (Zhang 2019, "Making Convolutional Networks Shift-Invariant
    Again", arXiv:1904.11486): reflect-pad, blur every channel with the binomial filter
    [1, 2, 1] x [1, 2, 1] / 16, then subsample by ``strides``. No weights (timm's BlurPool2d)."""

    def __init__(self, strides=2, **kwargs):
        super().__init__(**kwargs)
        self.strides = int(strides)

    def build(self, input_shape):
        taps = np.array([1.0, 2.0, 1.0]) / 4.0
        blur = np.outer(taps, taps).astype("float32")[:, :, None, None]
        self.filter = np.tile(blur, (1, 1, input_shape[-1], 1))  # depthwise: (3, 3, C, 1)

    def call(self, x):
        x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        kernel = ops.cast(self.filter, x.dtype)
        return ops.depthwise_conv(x, kernel, strides=self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else (n - 1) // self.strides + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "strides": self.strides}


@keras.saving.register_keras_serializable(package="kres")
class HighwayMix(keras.layers.Layer):
    """``[carry, branch, gate] -> gate * branch + (1 - gate) * carry``: the highway layer of
    Srivastava et al. 2015 ("Highway Networks", arXiv:1505.00387), with the transform gate
    ``gate = sigmoid(W_T x + b_T)`` computed beside it."""

    def call(self, inputs):
        carry, branch, gate = inputs
        return carry + gate * (branch - carry)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="kres")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step runs TensorFlow's fused kernel.

    It keeps Keras' class name on purpose: Keras' weight files (``.weights.h5``, the checkpoints
    a run resumes from) key each layer by its class name, so files written with Keras' layer load
    into kres models and the other way round.

    Keras 3 computes a training step's batch statistics and normalisation as separate
    element-wise ops on every backend; on TensorFlow they were a third of resnet20's training op
    time on CPU, and ``tf.nn.fused_batch_norm`` (one kernel forward, one backward, the kernel
    tf.keras 2 used) trains it about 1.2x faster. Same variables, same outputs (to float
    rounding), same moving averages (the kernel's Bessel-corrected batch variance is scaled back
    to Keras' biased one); its epsilon is at least 1.001e-5, the kernel's floor. Inference,
    other backends, masks, synchronised, renormalised or frozen layers run Keras' own code.
    """

    def call(self, inputs, training=None, mask=None):
        if (training and self.trainable and mask is None and not self.synchronized
                and not self.renorm and self.scale and self.center and len(inputs.shape) == 4
                and self.axis in (-1, 3) and keras.backend.backend() == "tensorflow"):
            return self._fused_training_step(inputs)
        return super().call(inputs, training=training, mask=mask)

    def _fused_training_step(self, inputs):
        import tensorflow as tf  # the TensorFlow backend is running

        x = tf.cast(inputs, "float32")  # as Keras does: statistics in float32
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"),
            epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)  # biased, as Keras keeps it
        momentum = tf.cast(self.momentum, "float32")
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum
                                    + variance * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)
