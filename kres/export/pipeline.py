"""`export`: the plan. Convert, load back, verify, time, and only then move the artifacts and
manifest.json into place. Each step is a function here, reading the export under way (a `Job`:
the model, its `ExportConfig`, the held-out images and the Keras outputs on them); converting
is one module a format (`savedmodel`, `tflite`, `onnx`; a QAT model's int8 files `qat`), the
int8 search `precision`, TFLite metadata `metadata`, running a file `runners`, what runs where
`deployment`, the record `manifest` and the model card beside it `card`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import os
import re
import shutil
import tempfile
import time
from importlib import metadata as package_metadata

import numpy as np

import kres
from kres import data as kdata
from kres.errors import ExportError
from kres.export import card, deployment, onnx, precision, savedmodel, tflite
from kres.export import metadata as tflite_metadata
from kres.export import qat as qat_convert
from kres.export.config import APPLIES, ExportConfig
from kres.export.manifest import MANIFEST, Manifest
from kres.export.runners import KerasRunner, load
from kres.export.timing import Stopwatch
from kres.files import (atomic_write_text, check_interrupted, hold, sha256_of, size_of, sweep,
                        write_failure)
from kres.machine import cpu_info
from kres.quantize import is_qat
from kres.rundir import Run
from kres.saving import load_keras_model

CONVERTERS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert",
              "mediapipe")
GENERATED_SIZE = 224  # side of generated images for models with a free input size
EXPORTS = "exports"  # where exports go by default, relative to the working directory


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


@dataclasses.dataclass
class Job:
    """One export under way: what each step reads."""

    model: object  # the keras.Model
    config: ExportConfig  # with the dataset filled in from the training run
    source: dict  # where the model came from, as manifest.json records it
    held_out: HeldOut
    expected: object  # the Keras model's outputs on the held-out images (a dict: several)
    classifier: tflite_metadata.ImageClassifierInfo | None  # what TFLite files tell an app
    workdir: str  # a temporary directory for what the converters share

    @functools.cached_property
    def fp32_limit(self) -> float:
        return self.config.tolerances.fp32_limit(self.expected)

    @functools.cached_property
    def saved_model(self) -> str:
        """The model's SavedModel, written once: the SavedModel artifact and every TFLite
        conversion start from it."""
        return savedmodel.to_saved_model(self.model, os.path.join(self.workdir, "saved_model"))

    @functools.cached_property
    def onnx_graph(self):
        """The model's ONNX graph, converted once for the fp32 and int8 ONNX files."""
        return onnx.onnx_graph(self.model, self.config.opset)


def export(model, out, config=None, **options):
    """Convert ``model`` to every requested format and quantisation, load each artifact back in
    its runtime, verify it against Keras, and only when all pass move them, manifest.json and
    labels.txt into ``out`` (replacing a previous export there in one rename).

    model: a keras.Model; a training run (a :class:`kres.rundir.Run` or its directory: its
    best.keras) or a .keras file, whose run's config.json names the dataset when
    ``config.data`` is None; or a registered model name (``kres.build(name,
    weights=config.weights)``, shaped for ``data``'s images and classes when there are no
    weights). config: an :class:`ExportConfig` (default: its defaults); ``options`` replace its
    fields by name (``export(run, out, formats="tflite", quantize="int8")``).
    The dataset calibrates (split "train", the first ``calibration_samples`` images) and
    verifies (split "test", ``verify_samples`` images or all); without one, verification runs on
    generated images and int8 is skipped (calibration needs real images). int8 files are
    searched for (`kres.export.precision`): the first setting that reaches
    ``tolerances.min_agreement`` is kept.

    Raises ExportError naming every artifact that failed; ``out`` is then left as it was.

    >>> manifest = kres.export.export("runs/digits-resnet20", "exports/digits-resnet20")
    >>> print(manifest.table())
    """
    if not isinstance(config, (ExportConfig, type(None))):
        raise TypeError(f"export()'s third argument is an ExportConfig; got {config!r} (give "
                        "other options by name)")
    config = (config or ExportConfig()).replace(**options)
    out = _check_out(out)
    with hold(out):  # a second export into out refuses while this one runs
        sweep(os.path.dirname(out), _leftovers(out))
        try:
            return _export(model, out, config)
        except Exception as error:
            # A signal whose KeyboardInterrupt a library swallowed can surface as another error
            # (a calibration cut short, whose file then fails verification): it is the interrupt.
            check_interrupted()
            if isinstance(error, kres.KresError):
                raise
            # a converter's own write failed: a full disk, a size limit
            failure = write_failure(error)
            if failure is None:
                raise
            raise ExportError(f"cannot write {failure}; {out} is as it was") from None


def _export(model, out, config):
    clock, start = Stopwatch(), time.perf_counter()
    with clock("model"):
        model, source, run = resolve_model(model, config)
        if config.data is None and run is not None and run.data is not None:
            config = config.replace(data=run.data.name,
                                    data_dir=config.data_dir or run.data.data_dir)
    with clock("held_out_images"):
        held_out = held_out_images(model, config)
        if not is_classifier(model):  # feature maps: class labels say nothing about them
            held_out.labels = held_out.truth = None
        plan = _plan(config, held_out)
    with clock("keras_outputs"):
        reference = KerasRunner(model)
        expected = reference.predict(held_out.images)
        if is_qat(model):  # int8 from the model's own ranges; float model beside it
            plan = qat_convert.plan(plan, config.quantize is not None, config.io)
            source["float_model"] = qat_convert.float_reference(source, held_out, expected)

    with _staging(out) as staging, tempfile.TemporaryDirectory(prefix="kres-export-") as work:
        job = Job(model, config, source, held_out, expected,
                  classifier_metadata(model, held_out.labels) if config.metadata else None, work)
        artifacts = []
        for fmt, q in plan:
            with clock(artifact_name(model, fmt, q)):
                artifacts.append(produce(job, fmt, q, staging))
        failures = [f"{a['path']}: {a.pop('problem')}" for a in artifacts if a.get("problem")]
        if failures:
            raise ExportError(f"{len(failures)} artifact(s) failed verification, nothing was "
                              f"written to {out}:\n  " + "\n  ".join(failures))
        for a in artifacts:
            a.pop("problem", None)
        with clock("keras_latency"):
            if held_out.labels:
                atomic_write_text(os.path.join(staging, "labels.txt"),
                                  "\n".join(held_out.labels) + "\n")
            keras_entry = {"latency": reference.latency(held_out.images[:1],
                                                        config.latency_repeats),
                           **_compare(expected, expected, held_out.truth)}
        record = {**_manifest(job, keras_entry, artifacts), "card": card.CARD,
                  "seconds": clock.record(total=time.perf_counter() - start)}
        atomic_write_text(os.path.join(staging, MANIFEST), json.dumps(record, indent=2))
        card.write(Manifest(os.path.join(staging, MANIFEST), record))
    return Manifest.read(out)


def default_out(model) -> str:
    """Where an export of ``model`` goes when no directory is given: exports/ plus the name of
    its training run (a Run, a run directory or a .keras file in one), of another .keras file,
    or of the model."""
    path = os.path.normpath(os.fspath(model))
    if path.endswith(".keras"):
        path = os.path.dirname(path) or os.path.splitext(path)[0]
    return os.path.join(EXPORTS, os.path.basename(path))


# ------------------------------------------------------------------------------ the steps


def resolve_model(model, config):
    """A keras.Model, a description of where it came from, and the training run it belongs to
    (a :class:`Run`, or None), for a model, a training run (a Run or its directory), a .keras
    file, or a registered model name (built for ``config.data``'s image shape and classes when
    there are no ``config.weights``)."""
    import keras

    if isinstance(model, keras.Model):
        return model, {"model": model.name, "from": "memory"}, None
    source = os.fspath(model)
    if isinstance(model, Run) or source.endswith(".keras") or os.sep in source \
            or os.path.exists(source):
        if isinstance(model, Run) or os.path.isdir(source):
            source = Run.open(source).best
        if not os.path.isfile(source):
            raise ExportError(f"model file not found: {source!r} (give a .keras file, a "
                              "training run directory or a model name)")
        loaded = _load(source)
        description = {"model": source, "from": "file", "sha256": sha256_of(source)}
        run = Run(os.path.dirname(source))
        if run.config is None:
            return loaded, description, None
        return loaded, {**description, "run_config": run.config,
                        "run_recipe": _recipe(run.resolved), "run_metrics": run.metrics}, run
    shape = {}
    if config.data and config.weights is None:
        info = kdata.info(config.data, config.data_dir)
        shape = {"input_shape": info.image_shape, "num_classes": info.num_classes}
    built = kres.build(source, weights=config.weights, include_preprocessing=True, **shape)
    return built, {"model": source, "from": "kres.build", "weights": config.weights}, None


RECIPE_FIELDS = ("data", "recipe", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
                 "label_smoothing", "warmup_epochs", "image_size", "mixed_precision", "weights",
                 "seed")


def _recipe(resolved):
    """The values a training run used (its recipe resolved), for the model card."""
    return None if resolved is None else {k: resolved.get(k) for k in RECIPE_FIELDS
                                          if k in resolved}


def _load(path):
    try:
        return load_keras_model(path)
    except kres.KresError as error:
        raise ExportError(str(error)) from None


def held_out_images(model, config):
    """Test images (and labels) of ``config.data`` at the model's input size, and calibration
    images from its training split when int8 is asked for; generated images when there is no
    dataset."""
    data, data_dir, calibration = config.data, config.data_dir, config.calibration
    calibration_source = "given" if calibration is not None else None
    if data is None:
        shape = [GENERATED_SIZE if d is None else d for d in model.inputs[0].shape[1:]]
        images = np.random.default_rng(0).uniform(0, 255, (config.verify_samples or 32, *shape))
        return HeldOut(images.astype(np.float32), None,
                       "generated uniform [0, 255] images (seed 0)", calibration=calibration,
                       calibration_source=calibration_source)
    info, image_size = _fit_data(model, data, data_dir)
    images, truth = kdata.arrays(data, "test", image_size=image_size,
                                 limit=config.verify_samples, data_dir=data_dir)
    if calibration is None and config.calibration_samples and "int8" in config.quantizations:
        calibration, _ = kdata.arrays(data, "train", image_size=image_size,
                                      limit=config.calibration_samples, data_dir=data_dir)
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


def _plan(config, held_out):
    """(format, quantisation) pairs to produce, in order."""
    quantize = list(config.quantizations)
    if held_out.calibration is None and "int8" in quantize:
        if config.quantize is not None:
            raise ExportError("quantize=int8 needs real calibration images: give data= (the CLI's "
                              "--data) or calibration=; random data ruins int8 accuracy")
        quantize.remove("int8")
    formats = list(config.formats)
    plan = [(f, q) for f in formats for q in quantize if q in APPLIES[f]]
    if not plan:
        raise ExportError(f"none of quantize={quantize} applies to formats={formats}; "
                          f"SavedModel: fp32; TFLite: {', '.join(APPLIES['tflite'])}; "
                          f"ONNX: {', '.join(APPLIES['onnx'])}")
    if config.io != "float" and ("tflite", "int8") not in plan:
        raise ExportError(f"io={config.io!r} applies to the int8 TFLite file, which is not "
                          "requested")
    return plan


def artifact_name(model, fmt, quantization):
    """The file (or directory) name of one artifact in the export."""
    if fmt == "saved_model":
        return "saved_model"
    return f"{model.name}_{quantization}.{'tflite' if fmt == 'tflite' else 'onnx'}"


def produce(job, fmt, quantization, staging):
    """Write one artifact into ``staging``, verify it and time it: its manifest entry, with
    ``problem`` set when it failed verification, and ``seconds`` per step (``conversion``, or
    for int8 ``calibration`` (TFLite) or ``preparation`` (ONNX), ``layer_errors`` and
    ``tries``; ``verification``, ``latency``,
    ``checksum``, ``metadata``, ``deployment``)."""
    config, held_out, clock = job.config, job.held_out, Stopwatch()
    name = artifact_name(job.model, fmt, quantization)
    path = os.path.join(staging, name)
    checked = {}  # the runner of the file last verified, kept for the latency when it is kept

    def check(candidate):
        runner = load(candidate, threads=config.threads, verify=False)
        entry = _compare(runner.predict(held_out.images), job.expected, held_out.truth)
        entry["problem"] = _problem(quantization, entry, job.fp32_limit, config.tolerances,
                                    labelled=held_out.truth is not None)
        checked.update(path=candidate, stat=_identity(candidate), runner=runner)
        return entry

    extra = {}
    if quantization == "int8":
        entry, extra["int8"] = _search_int8(job, fmt, path, check, clock)
    else:
        with clock("conversion"):
            _convert(job, fmt, quantization, path)
        with clock("verification"):
            entry = check(path)
    with clock("latency"):
        runner = checked["runner"] if checked.get("path") == path and \
            checked["stat"] == _identity(path) else load(path, threads=config.threads,
                                                         verify=False)
        latency = runner.latency(held_out.images[:1], config.latency_repeats)
    with clock("checksum"):
        entry = {"path": name, "format": fmt, "quantization": quantization,
                 "bytes": size_of(path), "sha256": sha256_of(path), "inputs": runner.inputs,
                 "outputs": runner.outputs, **entry, **extra,
                 "latency": {**latency, **_cpu_fields()}}
    if fmt == "tflite":
        with clock("metadata"):
            entry["metadata"] = tflite_metadata.read(path)
        if quantization == "int8":
            entry["io"] = config.io
    if fmt == "onnx":
        entry["opset"] = config.opset
    if fmt in ("tflite", "onnx"):
        with clock("deployment"):
            entry["deployment"] = deployment.report(path)
    entry["seconds"] = clock.record()
    return entry


def _identity(path):
    """What tells a file apart from the one written over it (files are replaced by rename)."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _convert(job, fmt, quantization, path):
    if fmt == "saved_model":  # the SavedModel the converters read, copied
        return shutil.copytree(job.saved_model, path)
    if fmt == "tflite":
        return tflite.to_tflite(job.model, path, quantization, metadata=job.classifier,
                                saved_model=job.saved_model)
    return onnx.to_onnx(job.model, path, quantization, opset=job.config.opset,
                        graph=job.onnx_graph)


def _search_int8(job, fmt, path, check, clock):
    model, config, calibration = job.model, job.config, job.held_out.calibration
    if is_qat(model):
        with clock("conversion"):
            return qat_convert.write_int8(model, fmt, path, job.held_out, check,
                                          opset=config.opset, classifier=job.classifier)
    layer_names = [layer.name for layer in model.layers]
    if fmt == "tflite":
        with clock("calibration"):
            quantizer = tflite.TFLiteInt8(model, calibration, io=config.io,
                                          metadata=job.classifier, saved_model=job.saved_model)
        return precision.search(quantizer, fmt, path, check, layer_names, clock)
    with clock("preparation"):  # the graph made ready to quantise; each try calibrates
        quantizer = onnx.OnnxInt8(model, calibration, config.opset, job.onnx_graph)
    with quantizer:
        return precision.search(quantizer, fmt, path, check, layer_names, clock)


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


def _manifest(job, keras_entry, artifacts):
    model, held_out, config = job.model, job.held_out, job.config
    return {
        "kres": kres.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": {**job.source, "name": model.name, **_architecture(model),
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
                         "max_abs_diff_fp32": job.fp32_limit,
                         "tolerances": dataclasses.asdict(config.tolerances),
                         "min_top1_agreement": config.tolerances.min_agreement
                         if held_out.truth is not None else None,
                         "latency_repeats": config.latency_repeats},
        "machine": cpu_info(),
        "converters": {name: _version(name) for name in CONVERTERS},
        "artifacts": artifacts,
    }


def _architecture(model):
    """The architecture, its paper and Keras' parameter counts (BatchNorm included, before the
    converters fold it), for the model card."""
    spec = getattr(model, "kres_spec", None)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"architecture": getattr(spec, "architecture", None),
            "reference": getattr(spec, "reference", None),
            "parameters": {"trainable": trainable, "total": int(model.count_params())}}


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
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-{os.getpid()}-",
                               dir=parent)
    try:
        yield staging
        check_interrupted()  # a signal whose KeyboardInterrupt a library swallowed
        final = staging + ".done"
        os.rename(staging, final)
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-{os.getpid()}-",
                                   dir=parent)
            os.rename(out, os.path.join(old, "previous"))
        os.rename(final, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _leftovers(out):
    """The names :func:`_staging` gives beside ``out``: what a killed export leaves."""
    return rf"\.{re.escape(os.path.basename(out))}\.(partial|old)-(?P<pid>\d+)-.+"


def _version(name):
    if name == "tensorflow":  # installed as tensorflow-cpu on Linux x86
        import tensorflow as tf

        return tf.__version__
    try:
        return package_metadata.version(name)
    except package_metadata.PackageNotFoundError:
        return None
