"""Runs kres models on the JAX backend: ``python jax_forward.py DIR`` reads DIR/cases.json
(model name, build kwargs, weights file, input file) and writes DIR/<case>.jax.npy outputs."""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kres  # noqa: E402

assert keras.backend.backend() == "jax"
folder = sys.argv[1]
for case in json.load(open(os.path.join(folder, "cases.json"))):
    model = kres.build(case["name"], **case["kwargs"])
    model.load_weights(os.path.join(folder, case["weights"]))
    x = np.load(os.path.join(folder, case["inputs"]))
    y = keras.ops.convert_to_numpy(model(x, training=False))
    np.save(os.path.join(folder, case["id"] + ".jax.npy"), y)
