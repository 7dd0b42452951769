"""`export`: the plan. Convert, load back, verify, time, and only then move the artifacts and
manifest.json into place. Each step is a function here; converting is one module a format
(`savedmodel`, `tflite`, `onnx`; a QAT model's int8 files `qat`), the int8 search `precision`,
TFLite metadata `metadata`, running a file `runners`, the record `manifest`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import tempfile
from importlib import metadata as package_metadata

import numpy as np

import kres
from kres import data as kdata
from kres import rundir
from kres.errors import ExportError
from kres.export import onnx, precision, savedmodel, tflite
from kres.export import metadata as tflite_metadata
from kres.export import qat as qat_convert
from kres.export.common import check_choice
from kres.export.manifest import MANIFEST, Manifest
from kres.export.runners import KerasRunner, load
from kres.files import atomic_write_text, check_interrupted, sha256_of, size_of
from kres.machine import cpu_info
from kres.quantize import is_qat
from kres.saving import load_keras_model

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
APPLIES = {"saved_model": ("fp32",), "tflite": tflite.TFLITE_QUANTIZATIONS,
           "onnx": onnx.ONNX_QUANTIZATIONS}
CONVERTERS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert",
              "mediapipe")
GENERATED_SIZE = 224  # side of generated images for models with a free input size


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """When an artifact counts as the Keras model. fp32 files: outputs within ``max_abs_diff``,
    or ``max_rel_diff`` times the largest Keras output when that is more (a random-weight
    ResNet-50 has logits near 6000, where one float32 step is 5e-4). Quantised classifiers: top-1
    agreement of at least ``min_agreement`` on real held-out images. Quantised models with
    other outputs (feature maps): every output's relative error ||got - keras|| / ||keras|| at
    most ``max_quantized_error``."""

    max_abs_diff: float = 1e-4
    max_rel_diff: float = 1e-5
    min_agreement: float = 0.98
    max_quantized_error: float = 0.1

    def __post_init__(self):
        for name in ("max_abs_diff", "max_rel_diff", "max_quantized_error"):
            if not getattr(self, name) >= 0:
                raise ExportError(f"{name}={getattr(self, name)!r}: accepted is a number >= 0")
        if not 0 <= self.min_agreement <= 1:
            raise ExportError(f"min_agreement={self.min_agreement!r}: accepted is a fraction "
                              "in [0, 1], e.g. 0.98")

    def fp32_limit(self, expected):
        values = expected.values() if isinstance(expected, dict) else [expected]
        return max(self.max_abs_diff,
                   self.max_rel_diff * max(float(np.abs(v).max()) for v in values))


@dataclasses.dataclass
class HeldOut:
    """The images an export is checked on, and what calibrates its int8 files."""

    images: np.ndarray
    truth: np.ndarray | None  # labels, when the images are real
    source: str
    labels: list | None = None
    calibration: np.ndarray | None = None
    calibration_source: str | None = None
    float_reference: np.ndarray | None = None  # QAT models: the float model's outputs


def export(model, out, *, data=None, formats=FORMATS, quantize=None, io="float",
           calibration_samples=200, verify_samples=None, calibration=None, weights=None,
           data_dir=None, opset=17, threads=2, tolerances=None, latency_repeats=30,
           metadata=True):
    """Convert ``model`` to every requested format and quantisation, load each artifact back in
    its runtime, verify it against Keras, and only when all pass move them, manifest.json and
    labels.txt into ``out`` (replacing a previous export there in one rename).

    model: a keras.Model, a .keras file or training run directory (the run's config.json names
    the dataset when ``data`` is None), or a registered model name (``kres.build(name,
    weights=weights)``, shaped for ``data``'s images and classes when there are no weights).
    data: dataset for calibration (split "train", first ``calibration_samples`` images) and
    verification (split "test", ``verify_samples`` images or all); without data, verification
    runs on generated images and int8 is skipped (calibration needs real images).
    ``calibration`` overrides the calibration images. quantize: subset of fp32, fp16, dynamic,
    int8 (default all that apply: TFLite all four, ONNX fp32 and int8, SavedModel fp32).
    io: float, int8 or uint8 inputs and outputs of the int8 TFLite file. ``tolerances``: a
    :class:`Tolerances`. int8 files are searched for (`kres.export.precision`): the first
    setting that reaches ``tolerances.min_agreement`` is kept. ``metadata``: embed labels and
    input normalisation in the TFLite files for MediaPipe and the LiteRT task libraries.

    Raises ExportError naming every artifact that failed; ``out`` is then left as it was.

    >>> manifest = kres.export.export("runs/digits-resnet20", "exports/digits-resnet20")
    >>> print(manifest.table())
    """
    formats = _choices("formats", formats, FORMATS)
    explicit = quantize is not None
    quantize = _choices("quantize", quantize if explicit else QUANTIZATIONS, QUANTIZATIONS)
    check_choice("io", io, tflite.IO_TYPES)
    tolerances = tolerances or Tolerances()
    out = _check_out(out)

    data_info = kdata.info(data, data_dir) if data else None
    model, source = resolve_model(model, weights=weights, data_info=data_info)
    run = source.get("run_config") or {}
    if data is None and run.get("data"):
        data, data_dir = run["data"], data_dir or run.get("data_dir")
    held_out = held_out_images(model, data, data_dir, verify_samples=verify_samples,
                               calibration_samples=calibration_samples if "int8" in quantize
                               else 0, calibration=calibration)
    if not is_classifier(model):  # feature maps: class labels say nothing about them
        held_out.labels = held_out.truth = None
    plan = _plan(formats, quantize, explicit, held_out, io)
    reference = KerasRunner(model)
    expected = reference.predict(held_out.images)
    if is_qat(model):  # int8 from the model's own ranges; float model beside it
        plan = qat_convert.plan(plan, explicit, io)
        source["float_model"] = qat_convert.float_reference(source, held_out, expected)
    classifier = classifier_metadata(model, held_out.labels) if metadata else None

    with _staging(out) as staging:
        artifacts = [
            produce(model, fmt, q, staging, held_out, expected, tolerances, io=io, opset=opset,
                    threads=threads, classifier=classifier, latency_repeats=latency_repeats)
            for fmt, q in plan]
        failures = [f"{a['path']}: {a.pop('problem')}" for a in artifacts if a.get("problem")]
        if failures:
            raise ExportError(f"{len(failures)} artifact(s) failed verification, nothing was "
                              f"written to {out}:\n  " + "\n  ".join(failures))
        for a in artifacts:
            a.pop("problem", None)
        if held_out.labels:
            atomic_write_text(os.path.join(staging, "labels.txt"),
                              "\n".join(held_out.labels) + "\n")
        keras_entry = {"latency": reference.latency(held_out.images[:1], latency_repeats),
                       **_compare(expected, expected, held_out.truth)}
        record = _manifest(model, source, keras_entry, held_out, tolerances,
                           tolerances.fp32_limit(expected), latency_repeats, artifacts)
        atomic_write_text(os.path.join(staging, MANIFEST), json.dumps(record, indent=2))
    return Manifest.read(out)


# ------------------------------------------------------------------------------ the steps


def resolve_model(model, *, weights=None, data_info=None):
    """A keras.Model and a description of where it came from, for a model, a .keras path or
    training run directory, or a registered model name (built for ``data_info``'s image shape
    and classes when given and without ``weights``)."""
    import keras

    if isinstance(model, keras.Model):
        return model, {"model": model.name, "from": "memory"}
    source = os.fspath(model)
    if source.endswith(".keras") or os.sep in source or os.path.exists(source):
        if rundir.is_run(source):
            source = os.path.join(source, rundir.BEST)
        if not os.path.isfile(source):
            raise ExportError(f"model file not found: {source!r} (give a .keras file, a "
                              "training run directory or a model name)")
        loaded = _load(source)
        description = {"model": source, "from": "file", "sha256": sha256_of(source)}
        run = rundir.read_config(os.path.dirname(source))
        if run is not None:
            description["run_config"] = run.get("config", run)
        return loaded, description
    shape = {}
    if data_info is not None and weights is None:
        shape = {"input_shape": data_info.image_shape, "num_classes": data_info.num_classes}
    built = kres.build(source, weights=weights, include_preprocessing=True, **shape)
    return built, {"model": source, "from": "kres.build", "weights": weights}


def _load(path):
    try:
        return load_keras_model(path)
    except kres.KresError as error:
        raise ExportError(str(error)) from None


def held_out_images(model, data, data_dir, *, verify_samples=None, calibration_samples=200,
                    calibration=None):
    """Test images (and labels) of ``data`` at the model's input size, and calibration images
    from its training split; generated images when there is no dataset."""
    calibration_source = "given" if calibration is not None else None
    if data is None:
        shape = [GENERATED_SIZE if d is None else d for d in model.inputs[0].shape[1:]]
        images = np.random.default_rng(0).uniform(0, 255, (verify_samples or 32, *shape))
        return HeldOut(images.astype(np.float32), None,
                       "generated uniform [0, 255] images (seed 0)", calibration=calibration,
                       calibration_source=calibration_source)
    info, image_size = _fit_data(model, data, data_dir)
    images, truth = kdata.arrays(data, "test", image_size=image_size, limit=verify_samples,
                                 data_dir=data_dir)
    if calibration is None and calibration_samples:
        calibration, _ = kdata.arrays(data, "train", image_size=image_size,
                                      limit=calibration_samples, data_dir=data_dir)
        calibration_source = f"{data}:train"
    return HeldOut(images, truth, f"{data}:test", list(info.class_names), calibration,
                   calibration_source)


def _fit_data(model, data, data_dir):
    """The dataset's info and the image size to ask it for, or an ExportError when it cannot fit
    the model."""
    info = kdata.info(data, data_dir)
    want = tuple(model.inputs[0].shape[1:])
    height, width, channels = info.image_shape
    if want[2] is not None and want[2] != channels:
        raise ExportError(
            f"data={data!r} has {channels}-channel images {info.image_shape}; the model takes "
            f"{want[2]} channels (input shape {want}). Export a model built for this dataset.")
    if want[0] is not None and (want[0], want[1]) != (height, width):
        if want[0] != want[1]:
            raise ExportError(f"data={data!r} images are {height}x{width}; the model takes "
                              f"{want[0]}x{want[1]}, which is not square")
        return info, want[0]
    return info, None


def _plan(formats, quantize, explicit, held_out, io):
    """(format, quantisation) pairs to produce, in order."""
    quantize = list(quantize)
    if held_out.calibration is None and "int8" in quantize:
        if explicit:
            raise ExportError("quantize=int8 needs real calibration images: give data= (the CLI's "
                              "--data) or calibration=; random data ruins int8 accuracy")
        quantize.remove("int8")
    plan = [(f, q) for f in formats for q in quantize if q in APPLIES[f]]
    if not plan:
        raise ExportError(f"none of quantize={quantize} applies to formats={formats}; "
                          f"SavedModel: fp32; TFLite: {', '.join(APPLIES['tflite'])}; "
                          f"ONNX: {', '.join(APPLIES['onnx'])}")
    if io != "float" and ("tflite", "int8") not in plan:
        raise ExportError(f"io={io!r} applies to the int8 TFLite file, which is not requested")
    return plan


def produce(model, fmt, quantization, staging, held_out, expected, tolerances, *, io, opset,
            threads, classifier, latency_repeats):
    """Write one artifact into ``staging``, verify it and time it: its manifest entry, with
    ``problem`` set when it failed verification."""
    name = "saved_model" if fmt == "saved_model" else \
        f"{model.name}_{quantization}.{'tflite' if fmt == 'tflite' else 'onnx'}"
    path = os.path.join(staging, name)
    limit = tolerances.fp32_limit(expected)

    def check(candidate):
        runner = load(candidate, threads=threads, verify=False)
        entry = _compare(runner.predict(held_out.images), expected, held_out.truth)
        entry["problem"] = _problem(quantization, entry, limit, tolerances,
                                    labelled=held_out.truth is not None)
        return entry

    extra = {}
    if quantization == "int8":
        entry, extra["int8"] = _search_int8(model, fmt, path, held_out, check, io=io, opset=opset,
                                            classifier=classifier)
    else:
        _convert(model, fmt, quantization, path, opset=opset, classifier=classifier)
        entry = check(path)
    runner = load(path, threads=threads, verify=False)
    entry = {"path": name, "format": fmt, "quantization": quantization, "bytes": size_of(path),
             "sha256": sha256_of(path), "inputs": runner.inputs, "outputs": runner.outputs,
             **entry, **extra,
             "latency": {**runner.latency(held_out.images[:1], latency_repeats),
                         **_cpu_fields()}}
    if fmt == "tflite":
        entry["metadata"] = tflite_metadata.read(path)
        if quantization == "int8":
            entry["io"] = io
    if fmt == "onnx":
        entry["opset"] = opset
    return entry


def _convert(model, fmt, quantization, path, *, opset, classifier):
    if fmt == "saved_model":
        return savedmodel.to_saved_model(model, path)
    if fmt == "tflite":
        return tflite.to_tflite(model, path, quantization, metadata=classifier)
    return onnx.to_onnx(model, path, quantization, opset=opset)


def _search_int8(model, fmt, path, held_out, check, *, io, opset, classifier):
    if is_qat(model):
        return qat_convert.write_int8(model, fmt, path, held_out, check, opset=opset,
                                      classifier=classifier)
    layer_names = [layer.name for layer in model.layers]
    if fmt == "tflite":
        quantizer = tflite.TFLiteInt8(model, held_out.calibration, io=io, metadata=classifier)
        return precision.search(quantizer, fmt, path, check, layer_names)
    with onnx.OnnxInt8(model, held_out.calibration, opset) as quantizer:
        return precision.search(quantizer, fmt, path, check, layer_names)


def _compare(got, expected, truth):
    """How far an artifact's outputs are from Keras'. A classifier (one output) also gets top-1
    agreement and accuracy; several outputs (feature maps) are matched by name."""
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            names = sorted(got) if isinstance(got, dict) else ["one unnamed output"]
            return {"max_abs_diff": float("nan"), "relative_error": float("nan"),
                    "top1_agreement": None, "accuracy": None,
                    "outputs": f"named {', '.join(names)}; Keras names {', '.join(expected)}"}
        pairs = [(got[k], expected[k]) for k in expected]
    else:
        pairs = [(got, expected)]
    if not all(np.isfinite(g).all() for g, _ in pairs):
        diff = relative = float("nan")
    else:
        diff = max(float(np.abs(g - e).max()) for g, e in pairs)
        relative = max(float(np.linalg.norm(g - e) / max(np.linalg.norm(e), 1e-12))
                       for g, e in pairs)
    classifier = not isinstance(expected, dict) and expected.ndim == 2
    return {
        "max_abs_diff": diff,
        "relative_error": relative,
        "top1_agreement": float((got.argmax(-1) == expected.argmax(-1)).mean())
        if classifier else None,
        "accuracy": float((got.argmax(-1) == truth).mean())
        if classifier and truth is not None else None,
    }


def _problem(quantization, entry, limit, tolerances, labelled):
    diff = entry["max_abs_diff"]
    if "outputs" in entry:
        return f"outputs {entry['outputs']}"
    if not np.isfinite(diff):
        return "outputs are not finite (NaN or inf)"
    if quantization == "fp32" and diff > limit:
        return f"max abs difference from Keras {diff:.3g} > {limit:.3g}"
    if quantization == "fp32":
        return None
    agreement = entry["top1_agreement"]
    if agreement is not None and labelled and agreement < tolerances.min_agreement:
        return f"top-1 agreement with Keras {agreement:.2%} < {tolerances.min_agreement:.0%}"
    if agreement is None and entry["relative_error"] > tolerances.max_quantized_error:
        return (f"relative error of the outputs {entry['relative_error']:.2%} > "
                f"{tolerances.max_quantized_error:.0%}")
    return None


def _cpu_fields():
    cpu = cpu_info()
    return {"cpu": cpu["model"], "cpu_flags": cpu["flags"]}


def is_classifier(model):
    """One output of class scores (N, classes), as opposed to feature maps."""
    return len(model.outputs) == 1 and len(model.outputs[0].shape) == 2


def classifier_metadata(model, labels):
    """What the TFLite files tell a phone app (:mod:`kres.export.metadata`), or None for models
    that are not image classifiers (several outputs, or feature maps)."""
    if not is_classifier(model):
        return None
    channels = int(model.inputs[0].shape[-1])
    preprocessing = _preprocessing(model)
    if preprocessing["inside_model"]:
        mean, std = [0.0] * channels, [1.0] * channels
    else:
        stats = getattr(model, "kres_spec", None)
        if stats is None:
            return None  # what the inputs must be is unknown: no metadata rather than wrong
        info = kres.preprocessing(stats)
        mean, std = info["mean"][:channels], info["std"][:channels]
    return tflite_metadata.ImageClassifierInfo(
        name=model.name, description=f"{model.name} image classifier exported by kres "
        f"{kres.__version__}; input: {preprocessing['input']}", labels=tuple(labels or ()),
        mean=tuple(mean), std=tuple(std), channels=channels, version=kres.__version__)


def _preprocessing(model):
    layer = next((l for l in model.layers if l.name == "preprocessing"), None)
    if layer is None:
        return {"inside_model": False,
                "input": "whatever the source model was trained on (no preprocessing layer)"}
    mean, variance = (np.ravel(np.asarray(v)).tolist() for v in (layer.mean, layer.variance))
    return {"inside_model": True,
            "input": "raw pixels, float32 NHWC in [0, 255]; the model normalises inside",
            "mean": mean, "std": np.sqrt(variance).tolist(),
            "integer_input": "int8/uint8 files: real = scale * (q - zero_point), see inputs"}


def _manifest(model, source, keras_entry, held_out, tolerances, fp32_limit, latency_repeats,
              artifacts):
    return {
        "kres": kres.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": {**source, "name": model.name,
                   "input_shape": list(model.inputs[0].shape[1:]),
                   "output_shape": list(model.outputs[0].shape[1:]) if len(model.outputs) == 1
                   else {n: list(o.shape[1:]) for n, o in zip(model.output_names, model.outputs)},
                   "keras": keras_entry},
        "preprocessing": _preprocessing(model),
        "labels": "labels.txt" if held_out.labels else None,
        "num_classes": None if not is_classifier(model)
        else len(held_out.labels) if held_out.labels else int(model.outputs[0].shape[-1]),
        "calibration": None if held_out.calibration is None else {
            "source": held_out.calibration_source, "samples": len(held_out.calibration)},
        "verification": {"source": held_out.source, "samples": len(held_out.images),
                         "max_abs_diff_fp32": fp32_limit,
                         "tolerances": dataclasses.asdict(tolerances),
                         "min_top1_agreement": tolerances.min_agreement
                         if held_out.truth is not None else None,
                         "latency_repeats": latency_repeats},
        "machine": cpu_info(),
        "converters": {name: _version(name) for name in CONVERTERS},
        "artifacts": artifacts,
    }


def _choices(argument, values, accepted):
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    unknown = [v for v in values if v not in accepted]
    if unknown or not values:
        got = f"unknown {', '.join(map(repr, unknown))}" if unknown else "nothing given"
        raise ExportError(f"{argument}: {got}; accepted: {', '.join(accepted)}")
    return [v for v in accepted if v in values]


def _check_out(out):
    """The absolute output directory. Refuse to replace a directory that is not a previous
    export (``--out .`` must not wipe a repository)."""
    out = os.path.abspath(os.fspath(out))
    if os.path.isfile(out):
        raise ExportError(f"out={out!r} is a file; give a directory")
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MANIFEST)):
        raise ExportError(f"out={out!r} exists and is not a kres export (no {MANIFEST}); "
                          "refusing to replace it. Give a new or empty directory.")
    return out


@contextlib.contextmanager
def _staging(out):
    """A directory beside ``out`` to build the export in; swapped in for ``out`` with renames on
    one filesystem when the block succeeds, removed in any case."""
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)
    try:
        yield staging
        check_interrupted()  # a signal whose KeyboardInterrupt a library swallowed
        final = staging + ".done"
        os.rename(staging, final)
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rename(out, os.path.join(old, "previous"))
        os.rename(final, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _version(name):
    if name == "tensorflow":  # installed as tensorflow-cpu on Linux x86
        import tensorflow as tf

        return tf.__version__
    try:
        return package_metadata.version(name)
    except package_metadata.PackageNotFoundError:
        return None
