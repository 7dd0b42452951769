"""`export`: convert, load back, verify, and only then put the artifacts and manifest in place."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
from importlib import metadata

import numpy as np

from kres.export import convert
from kres.export.errors import ExportError
from kres.export.runners import MANIFEST, KerasRunner, load, sha256_of, size_of

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
APPLIES = {"saved_model": ("fp32",), "tflite": convert.TFLITE_QUANTIZATIONS,
           "onnx": convert.ONNX_QUANTIZATIONS}
CONVERTERS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")
GENERATED_SIZE = 224  # side of generated images for models with a free input size


@dataclasses.dataclass
class Manifest:
    """What an export directory holds: ``artifacts`` (one dict per file, see issue 5) and
    everything else manifest.json records (source model, preprocessing, labels, converters)."""

    path: str
    data: dict

    @property
    def artifacts(self):
        return self.data["artifacts"]

    def artifact(self, format, quantization):
        """The path of the artifact with this format and quantisation."""
        for a in self.artifacts:
            if (a["format"], a["quantization"]) == (format, quantization):
                return os.path.join(os.path.dirname(self.path), a["path"])
        raise KeyError(f"no {quantization} {format} in {self.path}")

    @classmethod
    def read(cls, path):
        """The manifest of an export directory (or of a manifest.json path)."""
        if os.path.isdir(path):
            path = os.path.join(path, MANIFEST)
        with open(path) as f:
            return cls(os.fspath(path), json.load(f))

    def table(self):
        """The artifacts as a text table: size, fidelity, accuracy and latency."""
        rows = [("artifact", "format", "quant", "size", "max|diff|", "top-1 agree", "accuracy",
                 "latency")]
        for a in self.artifacts:
            rows.append((a["path"], a["format"], a["quantization"], _human(a["bytes"]),
                         _fmt(a["max_abs_diff"], "{:.2e}"), _fmt(a["top1_agreement"], "{:.2%}"),
                         _fmt(a["accuracy"], "{:.2%}"),
                         f"{a['latency_ms']:.2f} ms"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        v = self.data["verification"]
        lines.append(f"verified on {v['samples']} images of {v['source']}; latency: median of "
                     f"{v['latency_repeats']} single-image runs, {v['threads']} threads")
        return "\n".join(lines)


def _human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _fmt(value, pattern):
    return "-" if value is None else pattern.format(value)


def _choices(argument, values, accepted):
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    unknown = [v for v in values if v not in accepted]
    if unknown or not values:
        got = f"unknown {', '.join(map(repr, unknown))}" if unknown else "nothing given"
        raise ExportError(f"{argument}: {got}; accepted: {', '.join(accepted)}")
    return [v for v in accepted if v in values]


def resolve_model(model, *, weights=None, data_info=None):
    """A keras.Model and a description of where it came from, for a model, a .keras path (a
    training run's config.json beside it is read too) or a registered model name (built for
    ``data_info``'s image shape and classes when given and without ``weights``)."""
    import keras

    import kres

    if isinstance(model, keras.Model):
        return model, {"model": model.name, "from": "memory"}
    source = os.fspath(model)
    if source.endswith(".keras") or os.sep in source or os.path.exists(source):
        if os.path.isdir(source) and os.path.exists(os.path.join(source, "best.keras")):
            source = os.path.join(source, "best.keras")  # a training run directory
        if not os.path.isfile(source):
            raise ExportError(f"model file not found: {source!r} (give a .keras file, a "
                              "training run directory or a model name)")
        description = {"model": source, "from": "file", "sha256": sha256_of(source)}
        config = os.path.join(os.path.dirname(source), "config.json")
        if os.path.exists(config):
            with open(config) as f:
                run = json.load(f)
            description["run_config"] = run.get("config", run)
        return KerasRunner(source).model, description
    shape = {}
    if data_info is not None and weights is None:
        shape = {"input_shape": data_info.image_shape, "num_classes": data_info.num_classes}
    built = kres.build(source, weights=weights, include_preprocessing=True, **shape)
    return built, {"model": source, "from": "kres.build", "weights": weights}


def _fit_data(model, data, data_dir):
    """The image size to ask the dataset for, or an ExportError when it cannot fit the model."""
    import kres.data

    info = kres.data.info(data, data_dir)
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


def export(model, out, *, data=None, formats=FORMATS, quantize=None, io="float",
           calibration_samples=200, verify_samples=None, calibration=None, weights=None,
           data_dir=None, opset=17, threads=2, max_abs_diff=1e-4, max_rel_diff=1e-5,
           min_agreement=0.98, latency_repeats=30):
    """Convert ``model`` to every requested format and quantisation, load each artifact back in
    its runtime, verify it against Keras, and only when all pass move them, manifest.json and
    labels.txt into ``out`` (replacing a previous export there in one rename).

    model: a keras.Model, a .keras file (a training run's config.json beside it supplies the
    dataset when ``data`` is None), or a registered model name (``kres.build(name,
    weights=weights)``, shaped for ``data``'s images and classes when there are no weights). data: dataset name for calibration (split "train", first
    ``calibration_samples`` images) and verification (split "test", ``verify_samples`` images or
    all); without data, verification runs on generated images and int8 is skipped (calibration
    needs real images). ``calibration`` overrides the calibration images.
    quantize: subset of fp32, fp16, dynamic, int8, default all that apply (TFLite: all four;
    ONNX: fp32, int8; SavedModel: fp32). io: float, int8 or uint8 inputs and outputs of the int8
    TFLite file. fp32 artifacts must match Keras within ``max_abs_diff``, or ``max_rel_diff``
    times the largest Keras output when that is more (a random-weight ResNet-50 has logits near
    6000, where one float32 step is 5e-4); quantised ones need top-1 agreement >=
    ``min_agreement`` when verified on real data.

    Raises ExportError naming every artifact that failed; ``out`` is then left as it was.

    >>> manifest = kres.export.export("runs/digits-resnet20/best.keras", "exports/digits-resnet20",
    ...                               data="digits")
    >>> print(manifest.table())
    """
    import kres
    import kres.data

    formats = _choices("formats", formats, FORMATS)
    explicit_quantize = quantize is not None
    quantize = _choices("quantize", quantize if explicit_quantize else QUANTIZATIONS,
                        QUANTIZATIONS)
    convert._check_choice("io", io, convert.IO_TYPES)
    out = os.path.abspath(os.fspath(out))
    _check_out(out)

    model, source = resolve_model(
        model, weights=weights, data_info=kres.data.info(data, data_dir) if data else None)
    run = source.get("run_config", {})
    if data is None and run.get("data"):
        data, data_dir = run["data"], data_dir or run.get("data_dir")
    labels = None
    if data is not None:
        info, image_size = _fit_data(model, data, data_dir)
        labels = list(info.class_names)
        images, truth = kres.data.arrays(data, "test", image_size=image_size, limit=verify_samples,
                                         data_dir=data_dir)
        if calibration is None and "int8" in quantize:
            calibration, _ = kres.data.arrays(data, "train", image_size=image_size,
                                              limit=calibration_samples, data_dir=data_dir)
        verified_on = f"{data}:test"
    else:
        shape = [GENERATED_SIZE if d is None else d for d in model.inputs[0].shape[1:]]
        images = np.random.default_rng(0).uniform(0, 255, (verify_samples or 32, *shape))
        images, truth = images.astype(np.float32), None
        verified_on = "generated uniform [0, 255] images (seed 0)"
    if calibration is None and "int8" in quantize:
        if explicit_quantize:
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

    reference = KerasRunner(model, threads)
    expected = reference.predict(images)
    tolerance = max(max_abs_diff, max_rel_diff * float(np.abs(expected).max()))
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)
    try:
        artifacts, failures = [], []
        for fmt, q in plan:
            entry = _make(model, staging, fmt, q, io=io, calibration=calibration, opset=opset)
            runner = load(os.path.join(staging, entry["path"]), threads=threads, verify=False)
            got = runner.predict(images)
            entry.update(inputs=runner.inputs, outputs=runner.outputs,
                         **_compare(got, expected, truth),
                         latency_ms=runner.latency_ms(images[:1], repeats=latency_repeats),
                         threads=threads)
            problem = _problem(entry, tolerance, min_agreement if truth is not None else None)
            if problem:
                failures.append(f"{entry['path']}: {problem}")
            artifacts.append(entry)
            del runner
        if failures:
            raise ExportError(f"{len(failures)} artifact(s) failed verification, nothing was "
                              f"written to {out}:\n  " + "\n  ".join(failures))
        reference_entry = {"latency_ms": reference.latency_ms(images[:1], latency_repeats),
                           **_compare(expected, expected, truth)}
        if labels:
            with open(os.path.join(staging, "labels.txt"), "w") as f:
                f.write("\n".join(labels) + "\n")
        manifest = {
            "kres": kres.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": {**source, "name": model.name,
                       "input_shape": list(model.inputs[0].shape[1:]),
                       "output_shape": list(model.outputs[0].shape[1:]),
                       "keras": reference_entry},
            "preprocessing": _preprocessing(model),
            "labels": "labels.txt" if labels else None,
            "num_classes": len(labels) if labels else int(model.outputs[0].shape[-1]),
            "calibration": None if calibration is None else {
                "source": f"{data}:train" if data else "given", "samples": len(calibration)},
            "verification": {"source": verified_on, "samples": len(images),
                             "max_abs_diff_fp32": tolerance,
                             "min_top1_agreement": min_agreement if truth is not None else None,
                             "latency_repeats": latency_repeats, "threads": threads},
            "converters": {name: _version(name) for name in CONVERTERS},
            "artifacts": artifacts,
        }
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
        _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Manifest.read(out)


def _check_out(out):
    """Refuse to replace a directory that is not a previous export (``--out .`` must not wipe a
    repository)."""
    if os.path.isfile(out):
        raise ExportError(f"out={out!r} is a file; give a directory")
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MANIFEST)):
        raise ExportError(f"out={out!r} exists and is not a kres export (no {MANIFEST}); "
                          "refusing to replace it. Give a new or empty directory.")


def _replace(staging, out):
    """Swap the finished staging directory in for ``out`` with renames on one filesystem."""
    final = staging + ".done"
    os.rename(staging, final)
    old = None
    if os.path.exists(out):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
        os.rename(out, os.path.join(old, "previous"))
    os.rename(final, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _make(model, staging, fmt, quantization, *, io, calibration, opset):
    name = model.name
    if fmt == "saved_model":
        path = convert.to_saved_model(model, os.path.join(staging, "saved_model"))
    elif fmt == "tflite":
        path = convert.to_tflite(model, os.path.join(staging, f"{name}_{quantization}.tflite"),
                                 quantization, io=io if quantization == "int8" else "float",
                                 calibration=calibration)
    else:
        path = convert.to_onnx(model, os.path.join(staging, f"{name}_{quantization}.onnx"),
                               quantization, calibration=calibration, opset=opset)
    entry = {"path": os.path.basename(path), "format": fmt, "quantization": quantization,
             "bytes": size_of(path), "sha256": sha256_of(path)}
    if fmt == "tflite" and quantization == "int8":
        entry["io"] = io
    if fmt == "onnx":
        entry["opset"] = opset
    return entry


def _compare(got, expected, truth):
    finite = bool(np.isfinite(got).all())
    return {
        "max_abs_diff": float(np.abs(got - expected).max()) if finite else float("nan"),
        "top1_agreement": float((got.argmax(-1) == expected.argmax(-1)).mean()),
        "accuracy": None if truth is None else float((got.argmax(-1) == truth).mean()),
    }


def _problem(entry, tolerance, min_agreement):
    diff = entry["max_abs_diff"]
    if not np.isfinite(diff):
        return "outputs are not finite (NaN or inf)"
    if entry["quantization"] == "fp32" and diff > tolerance:
        return f"max abs difference from Keras {diff:.3g} > {tolerance:.3g}"
    if (entry["quantization"] != "fp32" and min_agreement is not None
            and entry["top1_agreement"] < min_agreement):
        return f"top-1 agreement with Keras {entry['top1_agreement']:.2%} < {min_agreement:.0%}"
    return None


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


def _version(name):
    if name == "tensorflow":  # installed as tensorflow-cpu on Linux x86
        import tensorflow as tf

        return tf.__version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
