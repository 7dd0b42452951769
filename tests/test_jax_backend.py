"""The same kres model, with the same weights, gives the same outputs on JAX as on TensorFlow."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import kres
import randomise  # tests/ helper

HELPER = os.path.join(os.path.dirname(__file__), "helpers", "jax_forward.py")
# A representative sample: every block type, stem, shortcut and attention kind, SE, groups,
# GroupNorm, weight standardisation, BlurPool, dilation, custom layers.
CASES = [
    ("resnet20", {"drop_path_rate": 0.2, "shortcut_scale": "1/L"}),
    ("plain20", {}),
    ("preact_resnet164", {}),
    ("wrn16_4", {"dropout": 0.3}),
    ("resnet18d", {"input_shape": (64, 64, 3)}),
    ("seresnext50_32x4d", {"input_shape": (64, 64, 3)}),
    ("resnetv2_50", {"input_shape": (64, 64, 3)}),
    ("keras_resnet50", {"input_shape": (64, 64, 3), "include_preprocessing": True}),
    ("keras_resnet50v2", {"input_shape": (64, 64, 3)}),
    ("resnetv2_50x1_bit", {"input_shape": (64, 64, 3), "output_stride": 16}),
    ("ecaresnet50d", {"input_shape": (64, 64, 3), "output_stride": 8}),
    ("resnetblur18", {"input_shape": (64, 64, 3)}),
    ("resnetrs50", {"input_shape": (64, 64, 3)}),
    ("highway20", {}),
]


@pytest.mark.slow
def test_jax_outputs_match_tensorflow(tmp_path):
    rng = np.random.default_rng(0)
    cases, expected = [], {}
    for i, (name, kwargs) in enumerate(CASES):
        model = kres.build(name, **kwargs)
        randomise.keras_norms(model, rng)
        x = rng.uniform(0, 1, (2, *model.input_shape[1:])).astype("float32")
        model.save_weights(tmp_path / f"{i}.weights.h5")
        np.save(tmp_path / f"{i}.x.npy", x)
        expected[str(i)] = keras.ops.convert_to_numpy(model(x, training=False))
        json_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
        cases.append({"id": str(i), "name": name, "kwargs": json_kwargs,
                      "weights": f"{i}.weights.h5", "inputs": f"{i}.x.npy"})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    # generous: the JAX compile of every case took 300 s alone on a loaded 2-core host, and hit
    # 600 s with the suite and three other jobs sharing the cores
    done = subprocess.run([sys.executable, HELPER, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    for case in cases:
        got = np.load(tmp_path / f"{case['id']}.jax.npy")
        ref = expected[case["id"]]
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, atol=1e-4 * scale, rtol=0, err_msg=case["name"])
