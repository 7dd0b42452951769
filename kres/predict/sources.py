"""What ``kres.predict`` runs: a model name, a ``.keras`` file, a training run, an export directory
or one artifact, opened in its own runtime (``kres.export.load``) together with what was recorded
about it: how its pictures are prepared (:class:`~kres.predict.images.Recipe`) and its class
names. Where each kind keeps them:

- a model name with a pretrained tag: the tag's evaluation size, crop fraction and
  interpolation (``kres.preprocessing(name, tag)``); ImageNet-1k names for 1000 classes.
- a model name with a weights file: kres' evaluation view at the model's input size;
  ImageNet-1k names for 1000 classes (timm's, torchvision's and Keras' class order).
- a training run or a ``.keras`` file in one: its ``config.json`` (dataset, image size), the
  view its test split was evaluated with; the dataset's class names.
- an export directory: its fp32 TFLite file (else its first fp32 file; name another artifact
  by its path), read as that artifact.
- a ``.tflite``/``.onnx`` file or SavedModel directory: the ``manifest.json`` beside it
  (input shape, normalisation, the tag it was built from; ``labels.txt``), else the file's
  TFLite metadata (labels, normalisation), else its input shape alone (class indices).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from kres import rundir
from kres.errors import KresError, suggest
from kres.predict.images import PredictError, Recipe

EXPECTED = ("expected a model name (kres.list_models()), a .keras file, a training run "
            "directory, an export directory (with manifest.json), a .tflite or .onnx file or a "
            "SavedModel directory")
# An export directory means this artifact unless one is named: the file a phone runs, unquantised.
EXPORT_PREFERENCE = (("tflite", "fp32"), ("onnx", "fp32"), ("saved_model", "fp32"))
IMAGENET_CLASSES = 1000


class SourceError(PredictError):
    """The source is not a model ``kres.predict`` can run."""


@dataclasses.dataclass
class Model:
    """A source ready to run: its runtime (a ``kres.export.Runner``), the recipe its pictures are
    prepared with, and its class names (None: indices) with where they come from."""

    source: str
    runner: object
    recipe: Recipe
    num_classes: int
    labels: tuple | None
    labels_from: str
    gives_probabilities: bool | None = None  # decided on the first batch

    @property
    def input_shape(self):
        return (self.recipe.size, self.recipe.size, self.recipe.channels)

    def name_of(self, index) -> str:
        return self.labels[index] if self.labels else str(index)

    def probabilities(self, pixels) -> np.ndarray:
        """Class probabilities (N, classes) for prepared pixels: the softmax of the model's
        logits, or its outputs themselves when they already are probabilities (every row >= 0
        and summing to 1, as a softmax head's do)."""
        outputs = np.asarray(self.runner.predict(pixels, batch_size=max(len(pixels), 1)),
                             np.float64)
        if self.gives_probabilities is None:
            self.gives_probabilities = bool(
                (outputs >= 0).all() and np.allclose(outputs.sum(-1), 1.0, atol=0.02))
        if self.gives_probabilities:
            return outputs
        exp = np.exp(outputs - outputs.max(-1, keepdims=True))
        return exp / exp.sum(-1, keepdims=True)

    def scores(self) -> str:
        if self.gives_probabilities:
            return "the model's own probabilities (its outputs sum to 1)"
        return "softmax of the model's logits"


def open_source(source, *, weights=None, threads=None) -> Model:
    """The :class:`Model` for ``source`` (see the module's table). ``weights``: for a model name,
    anything ``kres.build(name, weights=...)`` takes."""
    import keras

    threads = threads or os.cpu_count() or 1
    if isinstance(source, keras.Model):
        return _from_keras(source, "<keras.Model in memory>", run=None)
    if not isinstance(source, (str, os.PathLike)):
        raise SourceError(f"source {source!r} is not a model: {EXPECTED}")
    text = os.fspath(source)
    if weights is not None and (os.path.exists(text) or os.sep in text):
        raise SourceError(f"weights={weights!r} applies to a model name; {text!r} brings its "
                          "own weights")
    if os.path.isdir(text):
        from kres.export.manifest import MANIFEST

        if os.path.exists(os.path.join(text, MANIFEST)):
            return _from_export(text, threads)
        if rundir.Run.is_run(text):
            return _from_keras_file(rundir.Run(text).best, threads)
        if os.path.exists(os.path.join(text, "saved_model.pb")):
            return _from_artifact(text, threads)
        raise SourceError(f"{text!r} is not a model: a folder with no manifest.json, "
                          f"{rundir.BEST} or saved_model.pb; {EXPECTED}")
    if os.path.isfile(text):
        extension = os.path.splitext(text)[1].lower()
        if extension == ".keras":
            return _from_keras_file(text, threads)
        if extension in (".tflite", ".onnx"):
            return _from_artifact(text, threads)
        raise SourceError(f"{text!r} is not a model: a {extension or 'extensionless'} file; "
                          f"{EXPECTED}")
    import kres

    models = kres.list_models()
    if text in models:
        return _from_name(text, weights)
    if os.sep in text or os.path.splitext(text)[1]:
        raise SourceError(f"no such file or folder: {text!r}; {EXPECTED}")
    raise SourceError(f"{text!r} is not a model: no such file or folder, and no model of that "
                      f"name (close: {suggest(text, models)}); {EXPECTED}")


# ------------------------------------------------------------------------------ each kind


def _from_name(name, weights):
    import kres
    from kres.weights import WEIGHT_SUFFIXES, pretrained_info

    if weights is None:
        model = kres.build(name, include_preprocessing=True)
        size, channels = _square(model.inputs[0].shape[1:], name)
        recipe = Recipe.default(size, channels, f"kres' evaluation view for {name}'s {size} px "
                                                "inputs (an untrained model: weights=None)")
        return _model(name, _keras_runner(model), recipe, None,
                      "class indices (an untrained model has no class names)")
    if str(weights).endswith(WEIGHT_SUFFIXES):
        model = kres.build(name, weights=weights, include_preprocessing=True)
        size, channels = _square(model.inputs[0].shape[1:], name)
        recipe = Recipe.default(size, channels, f"kres' evaluation view for {name}'s {size} px "
                                                "inputs (a weights file records no recipe)")
        return _imagenet_or_indices(f"{name} ({weights})", _keras_runner(model), recipe,
                                    f"weights file {weights}")
    entry = pretrained_info(name, weights)
    size = entry.eval_size
    model = kres.build(name, weights=weights, include_preprocessing=True,
                       input_shape=(size, size, 3))
    recipe = Recipe(size, 3, entry.eval_crop, entry.interpolation,
                    origin=f"pretrained weights {entry.name}: their evaluation size, crop "
                           "fraction and interpolation")
    return _imagenet_or_indices(entry.name, _keras_runner(model), recipe,
                                f"pretrained weights {entry.name}")


def _from_keras_file(path, threads):
    import kres.export

    runner = kres.export.load(path, threads=threads)
    return _from_keras(runner.model, path, run=rundir.Run(
        os.path.dirname(os.path.abspath(path))).saved, runner=runner)


def _from_keras(model, name, run, runner=None):
    runner = runner or _keras_runner(model)
    size, channels = _square(model.inputs[0].shape[1:], name)
    inside = any(layer.name == "preprocessing" for layer in model.layers)
    if run is not None:
        config = run.get("config", run)
        where = os.path.join(os.path.dirname(name), rundir.CONFIG)
        recipe = Recipe.default(size, channels, f"{where}: kres' evaluation view of the run's "
                                                f"{size} px images", normalises_inside=inside)
        labels, labels_from = _dataset_names(config.get("data"), config.get("data_dir"))
        return _model(name, runner, recipe, labels, labels_from)
    recipe = Recipe.default(size, channels, f"the model's {size} px input (no {rundir.CONFIG} "
                                            "beside it): kres' evaluation view",
                            normalises_inside=inside)
    return _model(name, runner, recipe, None, f"class indices (no {rundir.CONFIG} beside the "
                                              "model names its dataset)")


def _from_export(directory, threads):
    from kres.export import Manifest
    from kres.export.manifest import inside

    manifest = Manifest.read(directory)
    kinds = {(a["format"], a["quantization"]): a for a in manifest.artifacts}
    chosen = next((kinds[k] for k in EXPORT_PREFERENCE if k in kinds), None)
    if chosen is None:
        chosen = manifest.artifacts[0]
    path = inside(directory, chosen["path"], manifest.path)
    return _from_artifact(path, threads, manifest=manifest,
                          name=f"{directory.rstrip(os.sep)} ({chosen['path']})")


def _from_artifact(path, threads, manifest=None, name=None):
    import kres.export
    from kres.export import Manifest
    from kres.export.manifest import MANIFEST

    runner = kres.export.load(path, threads=threads)
    directory = os.path.dirname(os.path.abspath(path))
    if manifest is None and os.path.exists(os.path.join(directory, MANIFEST)):
        manifest = Manifest.read(directory)
    meta = kres.export.metadata.read(path) if path.endswith(".tflite") else None
    shape = runner.inputs[0]["shape"][1:]
    if manifest is not None and None in shape[:2]:
        shape = manifest.data["source"]["input_shape"]
    size, channels = _square(shape, path)
    name = name or path
    mean = std = None
    if meta and not _identity(meta["input"]["normalization"]):
        mean = tuple(meta["input"]["normalization"]["mean"])
        std = tuple(meta["input"]["normalization"]["std"])
    if manifest is None:
        inside = bool(meta)  # kres writes mean 0, std 1 for a model that normalises inside
        where = "its TFLite metadata and input shape" if meta else \
            f"its input shape only, no {MANIFEST} beside it"
        recipe = Recipe.default(size, channels, f"{where}: kres' evaluation view", mean=mean,
                                std=std, normalises_inside=inside)
        if meta and meta["labels"]:
            return _model(name, runner, recipe, tuple(meta["labels"]), "the file's TFLite metadata")
        return _model(name, runner, recipe, None, f"class indices (no {MANIFEST} or TFLite "
                                                  "metadata names the classes)")
    data = manifest.data
    inside = bool(data["preprocessing"]["inside_model"])
    source = data["source"]
    tag = _tag(source)
    if tag is not None:
        recipe = Recipe(size, channels, tag.eval_crop, tag.interpolation, mean=mean, std=std,
                        normalises_inside=inside,
                        origin=f"{manifest.path}: pretrained weights {tag.name}, their "
                               "evaluation crop fraction and interpolation")
    else:
        recipe = Recipe.default(size, channels, f"{manifest.path}: kres' evaluation view of "
                                                f"the model's {size} px input", mean=mean, std=std,
                                normalises_inside=inside)
    labels_file = os.path.join(directory, data["labels"]) if data.get("labels") else None
    if labels_file and os.path.exists(labels_file):
        with open(labels_file) as f:
            return _model(name, runner, recipe, tuple(f.read().splitlines()), labels_file)
    if meta and meta["labels"]:
        return _model(name, runner, recipe, tuple(meta["labels"]), "the file's TFLite metadata")
    if source.get("weights") is not None:
        return _imagenet_or_indices(name, runner, recipe, f"weights {source['weights']}")
    return _model(name, runner, recipe, None, f"class indices ({MANIFEST} names no classes)")


# ------------------------------------------------------------------------------ helpers


def _model(name, runner, recipe, labels, labels_from):
    outputs = runner.outputs
    if len(outputs) != 1 or len(outputs[0]["shape"]) != 2 or outputs[0]["shape"][1] is None:
        described = ", ".join(f"{o['name']} {o['shape']}" for o in outputs)
        raise SourceError(f"{name!r} is not an image classifier: its outputs are {described}; "
                          "kres.predict needs one output of class scores (N, classes)")
    num_classes = int(outputs[0]["shape"][1])
    if labels is not None and len(labels) != num_classes:
        labels_from = (f"class indices ({labels_from} names {len(labels)} classes, the model "
                       f"has {num_classes})")
        labels = None
    return Model(name, runner, recipe, num_classes, labels, labels_from)


def _imagenet_or_indices(name, runner, recipe, weights):
    from kres.data.imagenet import CLASSES_FILE, imagenet1k_classes

    classes = runner.outputs[0]["shape"][-1]
    if classes == IMAGENET_CLASSES:
        return _model(name, runner, recipe, imagenet1k_classes(),
                      f"ImageNet-1k ({weights} has 1000 classes; names from kres/data/"
                      f"{CLASSES_FILE})")
    return _model(name, runner, recipe, None,
                  f"class indices ({weights} has {classes} classes; kres ships class names for "
                  "ImageNet-1k only, so ImageNet-21k or other classes come as indices)")


def _dataset_names(data, data_dir):
    if not data:
        return None, "class indices (the run's config.json names no dataset)"
    import kres.data

    try:
        return tuple(kres.data.info(data, data_dir).class_names), f"the run's dataset {data!r}"
    except KresError as error:
        return None, f"class indices (the run's dataset {data!r} cannot be read here: {error})"


def _tag(source):
    """The pretrained-table entry an export was built from (``kres.build(name, weights=tag)``),
    or None."""
    from kres.weights import WEIGHT_SUFFIXES, pretrained_info

    weights = source.get("weights")
    if source.get("from") != "kres.build" or not weights or str(weights).endswith(
            WEIGHT_SUFFIXES):
        return None
    try:
        return pretrained_info(source["model"], weights)
    except KresError:
        return None


def _identity(normalization):
    return all(m == 0 for m in normalization["mean"]) and all(s == 1 for s in
                                                              normalization["std"])


def _square(shape, name):
    height, width, channels = (None if d is None else int(d) for d in shape)
    if height is None:
        height = width = 224  # a free input size: the ImageNet default
    if height != width:
        raise SourceError(f"{name!r} takes {height}x{width} images; kres.predict prepares "
                          "square inputs (kres' evaluation view)")
    return height, channels


def _keras_runner(model):
    from kres.export.runners import KerasRunner

    return KerasRunner(model)
