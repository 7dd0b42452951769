"""Runs the gradient-taking analyses on the JAX backend: ``python jax_analysis.py DIR`` builds
resnet20 for the digits, loads DIR/model.weights.h5, and writes DIR/jax.npz with refinement's
cosines, robustness's accuracies and lesion's unit errors on DIR/x.npy and DIR/y.npy."""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kres  # noqa: E402
from kres.analysis import lesion, refinement, robustness  # noqa: E402

assert keras.backend.backend() == "jax"
folder = sys.argv[1]
model = kres.build("resnet20", input_shape=(32, 32, 1), include_preprocessing=True)
model.load_weights(os.path.join(folder, "model.weights.h5"))
x, y = np.load(os.path.join(folder, "x.npy")), np.load(os.path.join(folder, "y.npy"))
attack = robustness(model, x, y, epsilons=(0, 4), steps=2)
np.savez(os.path.join(folder, "jax.npz"), cosines=refinement(model, x, y)["cosines"],
         fgsm=attack["fgsm"], pgd=attack["pgd"],
         unit_errors=lesion(model, x, y, counts=(0,))["unit_errors"])
