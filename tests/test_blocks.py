"""Residual units, shortcuts and the plug-in pieces, one behaviour per test."""

import numpy as np

import keras
import kres
from kres.models.layers import BatchNormalization as KresBatchNorm, DropPath, ResidualAdd


def layers_of(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


def test_drop_path_is_identity_at_inference():
    x = np.random.default_rng(0).normal(size=(64, 4, 4, 8)).astype("float32")
    out = keras.ops.convert_to_numpy(DropPath(0.5)(x, training=False))
    np.testing.assert_array_equal(out, x)


def test_drop_path_model_is_deterministic_and_equals_the_undropped_model_at_inference():
    plain = kres.build("resnet20")
    dropped = kres.build("resnet20", drop_path_rate=0.5)
    dropped.set_weights(plain.get_weights())
    x = np.random.default_rng(1).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    a, b = dropped.predict(x, verbose=0), dropped.predict(x, verbose=0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, plain.predict(x, verbose=0))


def test_drop_path_rates_rise_linearly_with_depth():
    model = kres.build("resnet20", drop_path_rate=0.2)
    rates = [layer.rate for layer in layers_of(model, DropPath)]
    # 9 units: unit 0 never drops (rate 0, no layer), unit i drops with 0.2 * i / 8.
    np.testing.assert_allclose(rates, [0.2 * i / 8 for i in range(1, 9)], rtol=1e-12)


def test_measured_drop_frequency_matches_scheduled_rate_per_unit():
    model = kres.build("resnet32", drop_path_rate=0.3)
    n = 20_000
    ones = np.ones((n, 1, 1, 1), "float32")
    for layer in layers_of(model, DropPath):
        out = keras.ops.convert_to_numpy(layer(ones, training=True))
        dropped = float(np.mean(out == 0))
        sigma = np.sqrt(layer.rate * (1 - layer.rate) / n)
        assert abs(dropped - layer.rate) < 5 * sigma + 1e-9, (layer.name, dropped, layer.rate)
        # survivors are rescaled so the expectation is unchanged
        np.testing.assert_allclose(out[out != 0], 1 / (1 - layer.rate), rtol=1e-6)


def test_residual_scaling_one_over_l_and_step_size():
    model = kres.build("resnet20", shortcut_scale="1/L", step_size=0.5)
    adds = layers_of(model, ResidualAdd)
    assert len(adds) == 9 and {(a.alpha, a.step) for a in adds} == {(1 / 9, 0.5)}
    x, f = np.full((1, 2), 3.0, "float32"), np.full((1, 2), 4.0, "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(adds[0]([x, f])), 3 / 9 + 2.0)


def test_default_units_use_a_plain_add():
    model = kres.build("resnet18")
    assert not layers_of(model, ResidualAdd)
    assert len(layers_of(model, keras.layers.Add)) == 8


def test_zero_init_last_zeroes_the_last_gamma_of_every_branch():
    model = kres.build("resnet50")  # on by default, as in timm
    last = [l for l in model.layers if l.name.endswith("_3_bn")]
    assert len(last) == 16
    assert all(not np.any(l.gamma.numpy()) for l in last)
    assert np.all(model.get_layer("conv2_block1_2_bn").gamma.numpy() == 1)
    off = kres.build("resnet50", zero_init_last=False)
    assert np.all(off.get_layer("conv2_block1_3_bn").gamma.numpy() == 1)


def test_zero_init_last_defaults_imagenet_on_cifar_off_but_for_the_deepest():
    get = kres.models.get_spec
    assert get("resnet50").zero_init_last and get("resnetv2_50").zero_init_last
    assert not get("resnet20").zero_init_last and not get("wrn28_10").zero_init_last
    assert not get("keras_resnet50").zero_init_last
    assert get("resnet1202").zero_init_last and get("preact_resnet1001").zero_init_last


def test_zero_init_last_makes_every_unit_start_as_the_identity():
    model = kres.build("preact_resnet110", zero_init_last=True)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype("float32")
    probe = keras.Model(model.input, [model.get_layer("conv2_block1_preact_bn").input,
                                      model.get_layer("conv2_block18_out").output])
    first, last = (keras.ops.convert_to_numpy(t) for t in probe(x))
    np.testing.assert_array_equal(first, last)


def test_option_a_shortcut_has_no_parameters():
    model = kres.build("resnet20")
    assert not [l for l in model.layers if l.name.endswith("_0_conv")]
    assert [l.name for l in model.layers if l.name.endswith("_0_zeropad")] == [
        "conv3_block1_0_zeropad", "conv4_block1_0_zeropad"]


def test_resnet_d_shortcut_average_pools_before_projection():
    model = kres.build("resnet50d")
    pool = model.get_layer("conv3_block1_0_pool")
    assert isinstance(pool, keras.layers.AveragePooling2D) and pool.strides == (2, 2)
    assert model.get_layer("conv3_block1_0_conv").strides == (1, 1)
    assert [l.name for l in model.layers if l.name.startswith("conv1_")][:3] == [
        "conv1_1_pad", "conv1_1_conv", "conv1_1_bn"]


def test_plain_networks_have_no_shortcuts():
    for name in ("plain20", "plain34"):
        model = kres.build(name)
        assert not layers_of(model, keras.layers.Add)
        assert not [l for l in model.layers if "_0_" in l.name]


def test_squeeze_excitation_plugs_into_any_unit():
    for name in ("resnet20", "wrn16_4", "resnetv2_50"):
        model = kres.build(name, se_ratio=0.25)
        excite = [l for l in model.layers if l.name.endswith("_se_excite")]
        assert len(excite) == kres.models.get_spec(name).num_units
    # timm's rounding: 256 channels / 16 -> 16
    model = kres.build("seresnet50")
    assert model.get_layer("conv2_block1_se_reduce").kernel.shape == (1, 1, 256, 16)


def test_grouped_and_wide_widths_follow_one_formula():
    x50 = kres.build("resnext50_32x4d")
    assert x50.get_layer("conv2_block1_2_conv").groups == 32
    assert x50.get_layer("conv2_block1_2_conv").kernel.shape == (3, 3, 4, 128)  # 64*4/64*32
    wide = kres.build("wide_resnet50_2")
    assert wide.get_layer("conv2_block1_2_conv").kernel.shape == (3, 3, 128, 128)
    assert wide.get_layer("conv2_block1_3_conv").kernel.shape == (1, 1, 128, 256)


def test_wide_resnet_dropout_sits_between_the_convs():
    model = kres.build("wrn16_4", dropout=0.3)
    dropout = model.get_layer("conv2_block1_dropout")
    assert dropout.input is model.get_layer("conv2_block1_1_relu").output
    assert model.get_layer("conv2_block1_2_conv").input is dropout.output
    assert dropout.rate == 0.3


def test_preactivation_unit_leaves_the_identity_path_untouched():
    model = kres.build("preact_resnet110")
    add = model.get_layer("conv2_block2_out")
    assert add.input[0] is model.get_layer("conv2_block1_out").output
    assert model.get_layer("post_bn") and model.get_layer("post_relu")


def test_every_kernel_starts_with_its_own_random_values():
    model = kres.build("resnet50")
    kernels = [l.kernel.numpy() for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    seen = set()
    for k in kernels:
        if np.any(k):  # zero-initialised last convs of pre-activation units excepted
            key = k.tobytes()
            assert key not in seen
            seen.add(key)
    assert len(seen) == 53  # 1 stem + 16 * 3 unit + 4 shortcut convolutions


def _batchnorm_step(layer, x, gamma, beta):
    """One training step of ``layer`` on ``x``: its outputs, the gradients of a fixed loss with
    respect to x, gamma and beta, and the moving statistics afterwards."""
    import tensorflow as tf

    layer.build(x.shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt, training=True)
        loss = tf.reduce_sum(y * tf.sin(xt))
    grads = tape.gradient(loss, [xt, layer.gamma, layer.beta])
    return [t.numpy() for t in (y, *grads, layer.moving_mean, layer.moving_variance)]


def test_batchnorm_training_step_matches_keras_batchnormalization():
    """kres' BatchNormalization (TensorFlow's fused kernel in training) gives what Keras' own
    layer gives: outputs, gradients and moving averages, including Keras' biased variance."""
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (8, 6, 5, 7)).astype("float32")
    gamma = rng.normal(1.0, 0.2, 7).astype("float32")
    beta = rng.normal(0.0, 0.2, 7).astype("float32")
    for epsilon in (1e-3, 1e-5):
        want = _batchnorm_step(keras.layers.BatchNormalization(epsilon=epsilon, momentum=0.9),
                               x, gamma, beta)
        got = _batchnorm_step(KresBatchNorm(epsilon=epsilon, momentum=0.9), x, gamma, beta)
        for name, w, g in zip(("y", "dx", "dgamma", "dbeta", "moving_mean", "moving_variance"),
                              want, got):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-5 * np.abs(w).max(),
                                       err_msg=f"{name}, epsilon {epsilon}")


def test_batchnorm_runs_the_fused_kernel_in_training_only():
    import tensorflow as tf

    layer = KresBatchNorm()
    layer.build((None, 4, 4, 3))

    def ops_of(training):
        fn = tf.function(lambda x: layer(x, training=training))
        graph = fn.get_concrete_function(tf.TensorSpec((2, 4, 4, 3))).graph
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in ops_of(True)
    assert not any(t.startswith("FusedBatchNorm") for t in ops_of(False))
    frozen = KresBatchNorm(trainable=False)  # a frozen layer runs in inference mode
    frozen.build((None, 4, 4, 3))
    fn = tf.function(lambda x: frozen(x, training=True))
    graph = fn.get_concrete_function(tf.TensorSpec((2, 4, 4, 3))).graph
    assert not any(op.type.startswith("FusedBatchNorm") for op in graph.get_operations())


def test_every_batchnorm_of_a_model_is_kres_batchnorm_and_reloads(tmp_path):
    model = kres.build("resnet20", input_shape=(16, 16, 1), depths=(1, 1, 1))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(type(layer) is KresBatchNorm for layer in norms)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert {type(layer) for layer in loaded.layers if "bn" in layer.name} == {KresBatchNorm}


def test_weights_saved_with_keras_batchnormalization_load_into_kres_models(tmp_path, monkeypatch):
    """Checkpoints and weight files of models built with Keras' own layer (earlier kres
    versions) load: Keras keys a weight file's layers by class name, which kres' layer shares."""
    import kres.models.blocks

    with monkeypatch.context() as patch:
        patch.setattr(kres.models.blocks, "BatchNormalization", keras.layers.BatchNormalization)
        earlier = kres.build("resnet20", input_shape=(16, 16, 1), depths=(1, 1, 1))
    assert not any(isinstance(layer, KresBatchNorm) for layer in earlier.layers)
    for layer in earlier.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-1, 1, layer.moving_mean.shape[0]))
    earlier.save_weights(tmp_path / "earlier.weights.h5")
    model = kres.build("resnet20", input_shape=(16, 16, 1), depths=(1, 1, 1))
    model.load_weights(tmp_path / "earlier.weights.h5")
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)).astype("float32")
    np.testing.assert_array_equal(model(x), earlier(x))
