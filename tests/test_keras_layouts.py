"""keras_* models are keras.applications' architectures: parameters, layer names, outputs."""

import numpy as np
import pytest

import keras
import kres
import randomise  # tests/ helper

KERAS_APPS = {
    "keras_resnet50": keras.applications.ResNet50,
    "keras_resnet101": keras.applications.ResNet101,
    "keras_resnet152": keras.applications.ResNet152,
    "keras_resnet50v2": keras.applications.ResNet50V2,
    "keras_resnet101v2": keras.applications.ResNet101V2,
    "keras_resnet152v2": keras.applications.ResNet152V2,
}
# keras.applications' count_params() (includes BN moving statistics), Keras 3.15.
PUBLISHED_COUNT = {"keras_resnet50": 25_636_712, "keras_resnet101": 44_707_176,
                   "keras_resnet152": 60_419_944, "keras_resnet50v2": 25_613_800}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if "50" not in n else n
                                  for n in KERAS_APPS])
def test_keras_layout_matches_keras_applications(name):
    rng = np.random.default_rng(0)
    reference = KERAS_APPS[name](weights=None, classifier_activation=None)
    model = kres.build(name)
    assert model.count_params() == reference.count_params()
    if name in PUBLISHED_COUNT:
        assert model.count_params() == PUBLISHED_COUNT[name]

    # Every named layer of keras.applications exists in kres under the same name (keras leaves
    # the weightless 1x1 max-pools of v2 shortcuts unnamed).
    ours = {layer.name for layer in model.layers}
    named = {l.name for l in reference.layers
             if not l.name.startswith(("input_layer", "max_pooling2d"))}
    assert named <= ours
    assert "conv4_block6_out" in ours

    randomise.keras_norms(reference, rng)
    for layer in reference.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    x = rng.uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(reference(x))
    got = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
