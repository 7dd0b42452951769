"""What users expect of kres.build: shapes, options, precision, saving, and clear errors."""

import numpy as np
import pytest

import keras
import kres
from kres import KresError


def run(model, x):
    out = model(x, training=False)
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def test_defaults_follow_the_family():
    assert kres.build("resnet18").input_shape == (None, 224, 224, 3)
    assert kres.build("resnet18").output_shape == (None, 1000)
    assert kres.build("resnet20").input_shape == (None, 32, 32, 3)
    assert kres.build("resnet20").output_shape == (None, 10)


def test_features_only_returns_stem_and_stage_outputs_with_feature_info_channels():
    info = kres.model_info("resnet18")["feature_info"]
    model = kres.build("resnet18", features_only=True, input_shape=(64, 64, 3))
    outs = run(model, np.zeros((1, 64, 64, 3), "float32"))
    assert [o.shape for o in outs] == [(1, 64 // f["stride"], 64 // f["stride"], f["channels"])
                                       for f in info]
    picked = kres.build("resnet18", features_only=True, out_indices=(2, 4), input_shape=(64, 64, 3))
    assert [tuple(o.shape) for o in picked.outputs] == [(None, 8, 8, 128), (None, 2, 2, 512)]


def test_none_spatial_dimensions_without_top():
    model = kres.build("resnet18", include_top=False, pooling="avg", input_shape=(None, None, 3))
    assert run(model, np.zeros((2, 96, 64, 3), "float32")).shape == (2, 512)
    assert run(model, np.zeros((1, 40, 40, 3), "float32")).shape == (1, 512)


@pytest.mark.parametrize("pooling,shape", [(None, (1, 2, 2, 512)), ("avg", (1, 512)),
                                           ("max", (1, 512))])
def test_pooling(pooling, shape):
    model = kres.build("resnet18", include_top=False, pooling=pooling, input_shape=(64, 64, 3))
    assert run(model, np.ones((1, 64, 64, 3), "float32")).shape == shape


def test_softmax_classifier_sums_to_one():
    model = kres.build("resnet20", classifier_activation="softmax", num_classes=7)
    p = run(model, np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype("float32"))
    assert p.shape == (3, 7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("channels", [1, 4])
def test_any_channel_count(channels):
    model = kres.build("resnet18", input_shape=(64, 64, channels), num_classes=3)
    assert model.get_layer("conv1_conv").kernel.shape == (7, 7, channels, 64)
    assert run(model, np.zeros((1, 64, 64, channels), "float32")).shape == (1, 3)


def test_include_preprocessing_normalises_raw_pixels_inside_the_model():
    raw = kres.build("resnet20", include_preprocessing=True, input_shape=(32, 32, 1))
    bare = kres.build("resnet20", input_shape=(32, 32, 1))
    bare.set_weights(raw.get_weights())  # a Normalization with given statistics has no weights
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    mean, std = kres.preprocessing("resnet20")["mean"], kres.preprocessing("resnet20")["std"]
    normalised = (pixels - np.mean(mean)) / np.mean(std)
    np.testing.assert_allclose(run(raw, pixels), run(bare, normalised), atol=1e-4)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_low_and_outputs_float32(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = kres.build("resnet20")
        features = kres.build("resnet20", features_only=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("conv2_block1_1_conv").compute_dtype == policy.split("_")[1]
    assert model.output.dtype == "float32"
    assert all(o.dtype == "float32" for o in features.outputs)
    assert np.all(np.isfinite(run(model, np.ones((1, 32, 32, 3), "float32"))))


@pytest.mark.parametrize("name,overrides", [
    ("resnet20", {"drop_path_rate": 0.1}),
    # preact_resnet164's units and options, 6 units instead of 54 (the round trip is the same).
    ("preact_resnet164", {"depths": (2, 2, 2), "shortcut_scale": "1/L", "se_ratio": 0.25}),
    ("resnetv2_50", {"input_shape": (64, 64, 3)}),
    ("keras_resnet50", {"input_shape": (64, 64, 3)}),
])
def test_keras_file_round_trip_gives_identical_outputs(tmp_path, name, overrides):
    model = kres.build(name, include_preprocessing=True, **overrides)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (2, *model.input_shape[1:])).astype("float32")
    np.testing.assert_array_equal(run(loaded, x), run(model, x))
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(run(clone, x), run(model, x))


def test_weights_from_a_file_of_the_same_architecture(tmp_path):
    source = kres.build("resnet20")
    source.save_weights(tmp_path / "w.weights.h5")
    source.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype("float32")
    for path in ("w.weights.h5", "m.keras"):
        model = kres.build("resnet20", weights=str(tmp_path / path))
        np.testing.assert_array_equal(run(model, x), run(source, x))
    with pytest.raises(KresError, match=r"m\.keras.*resnet32"):
        kres.build("resnet32", weights=str(tmp_path / "m.keras"))


# ---- bad input: a KresError (a ValueError) that names the problem and what is accepted


def test_unknown_model_names_close_matches():
    with pytest.raises(KresError) as e:
        kres.build("resnet5")
    message = str(e.value)
    assert "unknown model 'resnet5'" in message and "resnet50" in message
    assert message.count(",") <= 4  # at most five suggestions


def test_unknown_override_names_the_field_and_lists_valid_ones():
    with pytest.raises(KresError, match="unknown option 'drop_rate'.*drop_path_rate.*"
                                        "Valid options:.*se_ratio"):
        kres.build("resnet50", drop_rate=0.1)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"drop_path_rate": -0.1}, r"invalid drop_path_rate.*got -0.1.*\[0, 1\)"),
    ({"pooling": "mean", "include_top": False}, r"invalid pooling 'mean'.*'avg' and 'max'"),
    ({"num_classes": 0}, r"invalid num_classes.*got 0.*positive integer"),
    ({"input_shape": (16, 16, 3)}, r"input_shape too small.*\(16, 16, 3\).*at least 32"),
    ({"input_shape": (224, 224)}, r"invalid input_shape.*\(height, width, channels\)"),
    ({"se_ratio": 2}, r"invalid se_ratio.*got 2"),
    ({"stem": "huge"}, r"unknown stem.*got 'huge'.*deep"),
    ({"classifier_activation": "relu"}, r"invalid classifier_activation 'relu'"),
    ({"out_indices": (7,), "features_only": True}, r"invalid out_indices.*\[0, 4\]"),
    ({"input_shape": (None, None, 3)}, r"None spatial size.*include_top=False"),
])
def test_invalid_values_say_what_they_got_and_accept(kwargs, pattern):
    with pytest.raises(KresError, match=pattern):
        kres.build("resnet18", **kwargs)


def test_kres_error_is_a_value_error():
    assert issubclass(KresError, ValueError)


@pytest.mark.parametrize("name,overrides", [
    ("resnet20", {}),
    ("resnet50d", {"output_stride": 16, "num_classes": 7, "input_shape": (64, 64, 3)}),
    ("resnet18", {"features_only": True, "input_shape": (64, 64, 3)}),
])
def test_keras_file_reloads_with_its_spec(tmp_path, name, overrides):
    model = kres.build(name, **overrides)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.kres_spec == model.kres_spec
    assert loaded.kres_spec.name == name and isinstance(loaded.kres_spec.depths, tuple)
    assert loaded.output_names == model.output_names
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    if name == "resnet20":
        images = images[:, :32, :32]
    for got, want in zip(keras.tree.flatten(loaded(images)), keras.tree.flatten(model(images))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_kres_model_clones_like_any_functional_model():
    # keras.models.clone_model rebuilds the graph through the class' constructor; the spec is
    # not a constructor argument there, so a clone has none (the export then reads no metadata).
    model = kres.build("resnet20")
    clone = keras.models.clone_model(model)
    assert type(clone) is type(model) and clone.kres_spec is None
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
