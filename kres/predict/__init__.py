"""Use a model on your own pictures: ``kres.predict(source, images)``.

>>> result = kres.predict("runs/digits-resnet20", "my_digits/")          # a training run
>>> result = kres.predict("exports/digits-resnet20/resnet20_int8.tflite", ["a.png", "b.jpg"])
>>> result = kres.predict("resnet50", "photos/*.jpg", weights="a1_in1k")  # ImageNet names
>>> print(result.table()); result.to_csv("predictions.csv"); result.plot()
>>> print(kres.predict.compare(["runs/x/best.keras", "exports/x/resnet20_int8.tflite"],
...                            "my_digits/").table())

The source runs in its own runtime (``kres.export.load``); its pictures are prepared as was
recorded for it (:mod:`kres.predict.sources` says where each kind of source keeps that), by
``kres.data.evaluation_view``, so a .tflite file and the Keras model it came from see the same
pixels. ``kres.predict`` is this module, callable: ``kres.predict(...)`` is
:func:`predict`, and ``kres.predict.compare`` and the result classes live beside it.
``tools/predict.py`` is the command line.
"""

from __future__ import annotations

import sys
import time
import types

import numpy as np

from kres.predict.images import (Failure, ImageError, PredictError, Recipe, find, prepare)
from kres.predict.results import Comparison, Prediction, Predictions, top_k
from kres.predict.sources import Model, SourceError, open_source

BATCH_SIZE = 32

__all__ = ["BATCH_SIZE", "CompareError", "Comparison", "Failure", "ImageError", "Model",
           "PredictError", "Prediction", "Predictions", "Recipe", "SourceError", "compare",
           "open_source", "predict", "prepare"]


class CompareError(PredictError):
    """Sources that cannot be compared: another input size, channel count or class count."""


def predict(source, images, top_k=5, *, weights=None, batch_size=BATCH_SIZE, threads=None,
            progress=None) -> Predictions:
    """The top-``top_k`` classes of each picture in ``images`` according to ``source``.

    Args:
        source: a model name (built as ``kres.build(name, weights=weights)``), a ``.keras``
            file, a training run directory, an export directory (meaning its fp32 TFLite file;
            name another artifact by its path), a ``.tflite`` or ``.onnx`` file, a SavedModel
            directory, or a ``keras.Model``.
        images: image files, folders (searched recursively), glob patterns or arrays of raw
            0-255 pixels ((H, W), (H, W, C) or (N, H, W, C)), or a list of them. JPEG, PNG, BMP
            and GIF (first frame) files; grayscale, RGB and RGBA pictures are converted to the
            model's channels.
        top_k: how many classes to keep per picture.
        weights: for a model name: a pretrained tag, ``"imagenet"`` or a weights file.
        batch_size: pictures decoded and run at a time (memory holds two batches).
        threads: decoding threads and the runtime's threads (default: every core).
        progress: called as ``progress(done, total)`` after each batch.

    Returns a :class:`Predictions`: per picture its path, top-k indices, names and
    probabilities (softmax of the logits, unless the model outputs probabilities), the recipe
    applied, and the inputs that could not be read (``failed``). Raises :class:`ImageError`
    when none could, :class:`SourceError` when ``source`` is not a model.
    """
    model = source if isinstance(source, Model) else open_source(source, weights=weights,
                                                                   threads=threads)
    result = _run([model], images, top_k, batch_size, threads, progress)[0]
    return result


def compare(sources, images, top_k=5, *, weights=None, batch_size=BATCH_SIZE, threads=None,
            progress=None) -> Comparison:
    """The same pictures through several sources (``predict``'s kinds; ``weights`` applies to
    those given as model names), each against the first: top-1 agreement, the largest
    probability difference, and every picture on which they disagree with each one's answer.

    >>> print(kres.predict.compare(["runs/x/best.keras", "exports/x/resnet20_int8.tflite",
    ...                             "exports/x/resnet20_int8.onnx"], "pictures/").table())

    Raises :class:`CompareError` for a source with another input size, channel count or
    number of classes than the first.
    """
    if isinstance(sources, str) or len(sources) < 2:
        raise CompareError(f"compare needs at least two sources, got {sources!r}")
    models = [open_source(s, weights=weights if _is_name(s) else None, threads=threads)
              for s in sources]
    first = models[0]
    for model in models[1:]:
        if model.input_shape[2] != first.input_shape[2] or model.num_classes != first.num_classes:
            raise CompareError(
                f"cannot compare {model.source!r} with {first.source!r}: it takes "
                f"{_shape(model)} images and gives {model.num_classes} classes, the first "
                f"takes {_shape(first)} and gives {first.num_classes}; compare files of the "
                "same model")
        if model.input_shape != first.input_shape:
            raise CompareError(
                f"cannot compare {model.source!r} with {first.source!r}: it takes "
                f"{_shape(model)} images, the first {_shape(first)}; compare files of the same "
                "model")
    stats = {"agree": [0] * len(models), "difference": [0.0] * len(models), "disagree": []}
    results = _run(models, images, top_k, batch_size, threads, progress, stats)
    n = max(len(results[0].items), 1)
    return Comparison([m.source for m in models], results,
                      [a / n for a in stats["agree"]], stats["difference"], stats["disagree"])


def _run(models, images, k, batch_size, threads, progress, stats=None):
    """Every picture through every model, batch by batch: one :class:`Predictions` per model
    (and, with ``stats``, the comparison with the first model accumulated there)."""
    from kres.predict import images as pictures

    start = time.perf_counter()
    items, failures = find(images)
    results = [Predictions(m.source, m.recipe.describe(), m.labels_from, "") for m in models]
    done = 0
    for batch in pictures.batches(items, [m.recipe for m in models], batch_size, threads):
        failures += batch.failures
        if batch.items:
            probabilities = [m.probabilities(x) for m, x in zip(models, batch.pixels)]
            for model, result, p in zip(models, results, probabilities):
                result.items += top_k(model, batch.items, p, k)
            if stats is not None:
                _accumulate(stats, models, batch.items, probabilities)
        done += len(batch.items) + len(batch.failures)
        if progress is not None:
            progress(done, len(items))
    seconds = time.perf_counter() - start
    arrays = {item.name: item.array for item in items if item.array is not None}
    for model, result in zip(models, results):
        result.failed, result.seconds, result.scores = failures, seconds, model.scores()
        result.pictures = arrays
    if not results[0].items:
        raise ImageError(failures or [Failure(str(images), "no pictures given")])
    return results


def _accumulate(stats, models, items, probabilities):
    first = probabilities[0]
    tops = [p.argmax(-1) for p in probabilities]
    for s, (p, top) in enumerate(zip(probabilities, tops)):
        stats["agree"][s] += int((top == tops[0]).sum())
        stats["difference"][s] = max(stats["difference"][s], float(np.abs(p - first).max()))
    for i in np.flatnonzero(np.any(np.stack(tops) != tops[0], axis=0)):
        stats["disagree"].append((items[i].name, [
            (m.name_of(int(top[i])), float(p[i, top[i]]))
            for m, p, top in zip(models, probabilities, tops)]))


def _shape(model):
    return "x".join(map(str, model.input_shape))


def _is_name(source):
    import os

    return isinstance(source, str) and not os.path.exists(source) and os.sep not in source


class _CallableModule(types.ModuleType):
    """``kres.predict(...)`` calls :func:`predict`; ``kres.predict.compare`` and the rest are
    this module's names, whichever way it was imported."""

    def __call__(self, *args, **kwargs):
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
