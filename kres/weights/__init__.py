"""Loading weights into kres models: local ``.keras`` and ``.weights.h5`` files."""

import os

import keras

from kres.models.spec import KresError


def load_into(model, weights, spec=None):
    """Loads ``weights`` (a path to a ``.keras`` or ``.weights.h5`` file of the same
    architecture) into ``model`` in place."""
    path = os.fspath(weights)
    if not (path.endswith(".keras") or path.endswith(".weights.h5")):
        raise KresError(f"invalid weights {weights!r}: accepted are None or a path to a "
                        "'.keras' or '.weights.h5' file")
    if not os.path.isfile(path):
        raise KresError(f"weights file not found: {path!r}")
    if path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except ValueError as e:
            raise KresError(f"weights file {path!r} does not fit {model.name!r}: {e}") from None
        return model
    source = keras.saving.load_model(path, compile=False)
    theirs, ours = source.weights, model.weights
    if len(theirs) != len(ours):
        raise KresError(f"weights file {path!r} holds {len(theirs)} weights; model "
                        f"{model.name!r} has {len(ours)}")
    for a, b in zip(ours, theirs):
        if tuple(a.shape) != tuple(b.shape):
            raise KresError(f"weights file {path!r} does not fit {model.name!r}: {a.path} has "
                            f"shape {tuple(a.shape)} in the model but {tuple(b.shape)} in the file")
    for a, b in zip(ours, theirs):
        a.assign(b)
    return model
