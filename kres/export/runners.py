"""`load(path)`: one runner per artifact type, each with the same ``predict(images)``.

Every runner takes float32 raw images (N, H, W, C) and returns float32 outputs, so artifacts of
any format and quantisation compare alike; integer inputs and outputs are (de)quantised with the
scale and zero point stored in the file.
"""

from __future__ import annotations

import os
import time

import numpy as np

from kres import native
from kres.errors import ExportError, IntegrityError
from kres.export.manifest import MANIFEST, Manifest, inside
from kres.files import sha256_of, size_of
from kres.saving import load_keras_model




class Runner:
    """An artifact loaded in its own runtime. ``predict(images)`` takes float32 raw images and
    returns float32 outputs; ``inputs``/``outputs`` describe the tensors (name, shape, dtype and
    quantisation) as the manifest records them."""

    format = "?"
    runtime = "?"  # the library and version that runs the file
    delegate = "?"  # what executes it on this machine

    def __init__(self, path, threads):
        self.path, self.threads = os.fspath(path), threads

    def predict(self, images, batch_size=64):
        """Outputs (float32) for a batch of float32 raw images (N, H, W, C): an array for a
        one-output model, else a dict {output name: array} (a ``features_only`` backbone's
        ``stem``, ``stage1``...), the same names in every format."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4:
            raise ExportError(f"predict expects a batch of images (N, H, W, C); got shape "
                              f"{images.shape}")
        batches = [self._predict(images[i:i + batch_size])
                   for i in range(0, len(images), batch_size)]
        outputs = [np.concatenate([np.asarray(b[k], np.float32) for b in batches])
                   for k in range(len(self.outputs))]
        if len(outputs) == 1:
            return outputs[0]
        return {o["name"]: y for o, y in zip(self.outputs, outputs)}

    def latency(self, image, repeats=50, warmup=5):
        """Wall time of ``predict`` on one image, repeated: ``{"median_ms", "p90_ms",
        "repeats", "threads", "runtime", "delegate"}``."""
        image = np.asarray(image, np.float32)[None] if np.ndim(image) == 3 else image[:1]
        for _ in range(warmup):
            self.predict(image)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.predict(image)
            times.append(time.perf_counter() - start)
        return {"median_ms": float(np.median(times) * 1e3),
                "p90_ms": float(np.percentile(times, 90) * 1e3), "repeats": repeats,
                "threads": self.threads, "runtime": self.runtime, "delegate": self.delegate}

    def __repr__(self):
        return f"<{type(self).__name__} {self.path}>"


def _version(package):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _tensor(name, shape, dtype, quantization=None):
    shape = [None if d is None or d < 0 else int(d) for d in shape]
    return {"name": name, "shape": shape, "dtype": np.dtype(dtype).name,
            "quantization": quantization}


class TFLiteRunner(Runner):
    """A .tflite file in the LiteRT interpreter (XNNPACK on CPU)."""

    format = "tflite"

    def __init__(self, path, threads=2):
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(path, threads)
        self.runtime = f"ai-edge-litert {_version('ai-edge-litert')}"
        self.delegate = "XNNPACK (LiteRT's default CPU delegate)"
        self.interpreter = Interpreter(model_path=self.path, num_threads=threads)
        self._input = self.interpreter.get_input_details()[0]
        self._outputs = self.interpreter.get_output_details()
        self._batch = None

        def describe(detail):
            scale, zero_point = detail["quantization"]
            q = {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
            return _tensor(detail["name"], detail["shape_signature"], detail["dtype"], q)

        self.inputs, self.outputs = [describe(self._input)], [describe(o) for o in self._outputs]

    def _predict(self, images):
        if self._batch != len(images):
            self.interpreter.resize_tensor_input(self._input["index"],
                                                 [len(images), *images.shape[1:]])
            with native.filtered():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                self.interpreter.allocate_tensors()
            self._batch = len(images)
        self.interpreter.set_tensor(self._input["index"], _quantize(images, self._input))
        self.interpreter.invoke()
        return [_dequantize(self.interpreter.get_tensor(o["index"]), o) for o in self._outputs]


def _quantize(x, detail):
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(y, detail):
    if detail["dtype"] == np.float32:
        return y
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale


class OnnxRunner(Runner):
    """An .onnx file in onnxruntime (CPU execution provider)."""

    format = "onnx"

    def __init__(self, path, threads=2):
        import onnxruntime as ort

        super().__init__(path, threads)
        self.runtime, self.delegate = f"onnxruntime {ort.__version__}", "CPUExecutionProvider"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options,
                                            providers=["CPUExecutionProvider"])
        types = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}

        def describe(value):
            shape = [d if isinstance(d, int) else None for d in value.shape]
            return _tensor(value.name, shape, types.get(value.type, np.float32))

        self.inputs = [describe(v) for v in self.session.get_inputs()]
        self.outputs = [describe(v) for v in self.session.get_outputs()]

    def _predict(self, images):
        return self.session.run(None, {self.inputs[0]["name"]: images})


class SavedModelRunner(Runner):
    """A SavedModel directory, through its ``serving_default`` signature."""

    format = "saved_model"

    def __init__(self, path, threads=2):
        import tensorflow as tf

        super().__init__(path, _tensorflow_threads())
        self.runtime, self.delegate = f"tensorflow {tf.__version__}", "CPU"
        self.function = tf.saved_model.load(self.path).signatures["serving_default"]
        (self._input_key, spec), = self.function.structured_input_signature[1].items()
        outputs = self.function.structured_outputs
        self.inputs = [_tensor(self._input_key, spec.shape.as_list(), spec.dtype.as_numpy_dtype)]
        self.outputs = [_tensor(k, v.shape.as_list(), v.dtype.as_numpy_dtype)
                        for k, v in outputs.items()]

    def _predict(self, images):
        result = self.function(**{self._input_key: images})
        return [result[o["name"]].numpy() for o in self.outputs]


class KerasRunner(Runner):
    """A .keras file (or an in-memory model), the reference every artifact is compared with."""

    format = "keras"

    def __init__(self, path_or_model, threads=2):
        import keras

        if isinstance(path_or_model, keras.Model):
            super().__init__("<memory>", _tensorflow_threads())
            self.model = path_or_model
        else:
            super().__init__(path_or_model, _tensorflow_threads())
            self.model = load_keras_model(self.path)
        self.runtime = f"keras {keras.__version__} ({keras.backend.backend()} backend)"
        self.delegate = "CPU"
        x = self.model.inputs[0]
        self.inputs = [_tensor(x.name, x.shape, x.dtype)]
        self.outputs = [_tensor(name, y.shape, y.dtype)
                        for name, y in zip(self.model.output_names, self.model.outputs)]

    def _predict(self, images):
        # Keras' compiled predict step (a tf.function, or jax.jit), as model.predict runs it:
        # an eager call dispatches every layer from Python (resnet20: about 20 ms an image).
        outputs = self.model.predict_on_batch(images)
        if isinstance(outputs, dict):
            outputs = [outputs[name] for name in self.model.output_names]
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _tensorflow_threads():
    """TensorFlow's thread pool is set once per process (0 means one thread per core)."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()


def load(path, *, threads=2, verify=True):
    """Load an artifact (``.tflite``, ``.onnx``, SavedModel directory or ``.keras``) in its own
    runtime. When a manifest.json beside it lists the artifact, its bytes and SHA-256 are checked
    first and a tampered or truncated file raises :class:`IntegrityError`.

    >>> runner = kres.export.load("exports/digits-resnet20/resnet20_int8.tflite")
    >>> logits = runner.predict(images)  # float32 raw pixels, whatever the file's own dtypes
    """
    path = os.fspath(path).rstrip("/") or "/"
    if not os.path.exists(path):
        raise ExportError(f"no artifact at {path!r}")
    if verify:
        verify_artifact(path)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ExportError(f"{path!r} is a directory but not a SavedModel (no saved_model.pb)")
        cls = SavedModelRunner
    else:
        kinds = {".tflite": TFLiteRunner, ".onnx": OnnxRunner, ".keras": KerasRunner}
        cls = kinds.get(os.path.splitext(path)[1])
        if cls is None:
            raise ExportError(f"cannot tell the format of {path!r}; accepted: a SavedModel "
                              f"directory or a file ending in {', '.join(kinds)}")
    try:
        return cls(path, threads)
    except ExportError:
        raise
    except Exception as error:  # a runtime's own parse error: say which file and what it is
        raise IntegrityError(f"{path!r} does not load as {cls.format}: {error}") from error


def verify_artifact(path):
    """Check ``path`` against the manifest.json of its directory (bytes and SHA-256). Returns
    the manifest entry, or None when there is no manifest to check against."""
    directory, name = os.path.split(os.path.abspath(path))
    manifest_path = os.path.join(directory, MANIFEST)
    if not os.path.exists(manifest_path):
        return None
    entries = {a["path"].rstrip("/"): a for a in Manifest.read(manifest_path).artifacts}
    entry = entries.get(name)
    if entry is None:
        raise IntegrityError(f"{path!r} is not listed in {manifest_path}; listed: "
                             f"{', '.join(sorted(entries))}")
    inside(directory, name, manifest_path)  # a symbolic link out of the export directory
    size, digest = size_of(path), sha256_of(path)
    if size != entry["bytes"] or digest != entry["sha256"]:
        raise IntegrityError(
            f"{path!r} does not match {MANIFEST}: {size} bytes with SHA-256 {digest[:16]}..., "
            f"the manifest records {entry['bytes']} bytes with SHA-256 {entry['sha256'][:16]}... "
            "The file was modified or truncated after export; export it again.")
    return entry
