"""Loading a ``.keras`` file that holds a kres model, float or QAT.

Keras finds a saved model's custom layers by the names they registered when their modules were
imported; this module imports all of kres' (the models' and the QAT layers), so it stands above
both, and :mod:`kres.files` below everything does the reading.
"""

from __future__ import annotations

import kres.models  # noqa: F401  (registers the models' custom layers)
import kres.quantize.layers  # noqa: F401  (and the QAT layers)
from kres.files import load_keras_archive


def load_keras_model(path: str, compile: bool = False):
    """A ``.keras`` file as a Keras model (kres' layers registered), with one clear error for a
    file that is missing, not a .keras archive, or not loadable by this Keras.

    >>> from kres.saving import load_keras_model
    >>> model = load_keras_model("runs/digits-resnet20/best.keras")
    """
    return load_keras_archive(path, compile=compile)
