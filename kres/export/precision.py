"""Accuracy-gated int8: try quantisation settings in a fixed order until the file agrees with Keras.

Post-training int8 loses different amounts on different models (and, for onnxruntime, on
different CPUs). Instead of one fixed recipe, :func:`search` writes the int8 file with each
setting of :func:`settings` in turn and keeps the first one whose top-1 predictions agree with
the Keras model's on at least ``min_agreement`` of the held-out images:

1. per-channel weight scales (the TFLite int8 specification's default, what mobile kernels are
   tuned for), activation ranges from the calibration images' minimum and maximum;
2. TFLite: per-tensor weight scales; ONNX: activation ranges from the 0.001 and 99.999
   percentiles instead (outliers no longer stretch the range: a digits resnet18 agreed with
   Keras on 98.88 % of test images instead of 98.51 %);
3. per-channel with the 1, 2, 4, then 8 layers of largest int8 error kept in float.

The error of each layer is measured once, on a few calibration images, by comparing the layer's
int8 output with its float output *on the same input* (so that errors of earlier layers do not
pile up): TFLite's NumericVerify ops (the mechanism of TensorFlow's QuantizationDebugger), and
for ONNX, onnxruntime's qdq_loss_debug tools (the error of each quantised activation, combined
with that of the layer's quantised weights). The error is relative RMS *per output channel*,
averaged over channels: one channel with a range far beyond the others' (the classic int8
failure) crushes the rest to a step or two, which a whole-tensor norm, dominated by the large
channel, would not show. Keeping a layer in float leaves its op and the ops that read its
output in float, so that its output is never quantised.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile

import numpy as np

from kres import native
from kres.export import onnx_edit
from kres.export.onnx import OnnxInt8
from kres.export.tflite import TFLiteInt8
from kres.export.timing import Stopwatch

KEEP_FLOAT = (1, 2, 4, 8)  # how many of the worst layers the mixed-precision settings keep float
WORST_REPORTED = 5
ERROR_IMAGES = 16  # calibration images the per-layer errors are measured on
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class LayerError:
    """One quantised layer: its Keras layer names, the nodes (TFLite op output tensors, or ONNX
    node names) that keep it in float (the layer's op and the ops reading its output), and its
    mean per-channel relative int8 error."""

    layer: str
    nodes: tuple
    relative_error: float

    def as_dict(self):
        return {"layer": self.layer, "relative_error": round(self.relative_error, 6)}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One way to quantise: weight-scale granularity and the layers left in float."""

    per_channel: bool = True
    keep_float: tuple = ()  # LayerErrors
    calibration: str = "minmax"  # or "percentile" (ONNX)

    @property
    def name(self):
        parts = ["per-channel" if self.per_channel else "per-tensor"]
        if self.calibration != "minmax":
            parts.append(f"{self.calibration} calibration")
        n = len(self.keep_float)
        if n:
            parts.append(f"{n} layer{'s' * (n > 1)} float")
        return ", ".join(parts)

    def as_dict(self):
        return {"setting": self.name, "per_channel": self.per_channel,
                "calibration": self.calibration,
                "float_layers": [e.layer for e in self.keep_float]}


def settings(fmt, errors):
    """The settings tried for ``fmt``, in order, given the layers' errors (worst first)."""
    order = [Setting(per_channel=True)]
    if fmt == "tflite":
        order.append(Setting(per_channel=False))
    else:
        order.append(Setting(per_channel=True, calibration="percentile"))
    for k in sorted({min(k, len(errors)) for k in KEEP_FLOAT} - {0}):
        order.append(Setting(per_channel=True, keep_float=tuple(errors[:k])))
    return order


def search(quantizer, fmt, path, check, layer_names, clock=None):
    """Write ``path`` with each setting in turn until ``check(path)`` passes.

    ``quantizer``: a :class:`TFLiteInt8` or :class:`OnnxInt8` for the model; ``check(path)``
    returns the verification entry of the written file (``top1_agreement``, ``accuracy``, ...)
    with ``problem`` None when it passes. Returns ``(entry, report)``: the entry of the kept file
    (the best one when none passes; its ``problem`` says so) and the report the manifest keeps:
    every setting tried with its agreement and seconds (writing and checking it), the one kept,
    and the five worst layers. ``clock``: a :class:`Stopwatch` that gets the steps
    ``layer_errors`` and ``tries`` (and ``rewrite`` when no setting passes).
    """
    clock = clock or Stopwatch()
    with clock("layer_errors"):
        errors = layer_errors(quantizer, fmt, layer_names)
    tries, best = [], None
    for setting in settings(fmt, errors):
        with clock("tries"):
            write(quantizer, path, setting)
            entry = check(path)
        tries.append({**setting.as_dict(), "top1_agreement": entry["top1_agreement"],
                      "relative_error": entry["relative_error"], "accuracy": entry["accuracy"],
                      "passed": entry["problem"] is None, "seconds": round(clock.last, 3)})
        if best is None or _score(entry) > _score(best[1]):
            best = (setting, entry)
        if entry["problem"] is None:
            break
    setting, entry = best
    if tries[-1]["passed"] is False:
        with clock("rewrite"):
            write(quantizer, path, setting)  # leave the best file in place, for the record
    report = {"kept": setting.name if tries[-1]["passed"] else None, "tries": tries,
              "worst_layers": [e.as_dict() for e in errors[:WORST_REPORTED]],
              "error_measured_on": f"{ERROR_IMAGES} calibration images"}
    if not tries[-1]["passed"]:
        worst = ", ".join(f"{e.layer} ({e.relative_error:.1%})" for e in errors[:WORST_REPORTED])
        tried = ", ".join(f"{t['setting']} {_fidelity(t)}" for t in tries)
        target = "agreement" if entry["top1_agreement"] is not None else "error"
        entry = {**entry, "problem": (
            f"no int8 setting reached the {target} target; tried {tried}; best {setting.name} "
            f"at {_fidelity(entry)}. Layers with the largest int8 error: "
            f"{worst or 'none measured'}")}
    return entry, report


def _score(entry):
    """Higher is closer to Keras: top-1 agreement for classifiers, else minus relative error."""
    if entry["top1_agreement"] is not None:
        return entry["top1_agreement"]
    return -entry["relative_error"] if np.isfinite(entry["relative_error"]) else -np.inf


def _fidelity(entry):
    if entry["top1_agreement"] is not None:
        return f"{entry['top1_agreement']:.2%}"
    return f"{entry['relative_error']:.2%} relative error"


def write(quantizer, path, setting):
    options = {"calibration": setting.calibration} if setting.calibration != "minmax" else {}
    nodes = tuple(dict.fromkeys(n for e in setting.keep_float for n in e.nodes))
    return quantizer.write(path, per_channel=setting.per_channel, keep_float=nodes, **options)


def layer_errors(quantizer, fmt, layer_names):
    """Every quantised layer's relative int8 error, worst first."""
    measure = _tflite_errors if fmt == "tflite" else _onnx_errors
    found = [LayerError(keras_layers(name, layer_names) or name, tuple(nodes), error)
             for nodes, name, error in measure(quantizer)]
    return sorted(found, key=lambda e: -e.relative_error)


def keras_layers(text, layer_names):
    """The Keras layer names that a converter's tensor or node name mentions, joined by "+":
    ``resnet20_1/conv4_block3_2_bn_1/batchnorm/add_1;resnet20_1/conv4_block3_2_conv_1/...``
    gives ``conv4_block3_2_conv+conv4_block3_2_bn``."""
    found = set()
    for token in re.split(r"[;/:]", text):
        for candidate in (token, re.sub(r"_\d+$", "", token)):
            if candidate in layer_names:
                found.add(candidate)
    return "+".join(n for n in layer_names if n in found)


class ChannelError:
    """Accumulates squared error and squared signal per channel over several images;
    ``value()`` is the mean over channels of sqrt(error / signal), leaving out channels that are
    zero for every image (ReLU outputs that never fire). ``axis``: the channel axis (-1 for
    TFLite's NHWC; 1 for ONNX, whose tensors tf2onnx makes NCHW between the input and output
    transposes)."""

    def __init__(self, axis=-1):
        self.axis, self.noise, self.power = axis, 0.0, 0.0

    def add(self, reference, value):
        reference = np.asarray(reference, np.float64)
        value = np.asarray(value, np.float64)
        if reference.ndim < 2:
            reference, value = reference[None], value[None]
        channel = self.axis % reference.ndim
        axes = tuple(a for a in range(reference.ndim) if a != channel)
        self.noise = self.noise + np.sum((value - reference) ** 2, axis=axes)
        self.power = self.power + np.sum(reference ** 2, axis=axes)

    def value(self):
        power = np.atleast_1d(self.power)
        live = power > 1e-12 * max(float(power.max()), 1e-30)
        if not live.any():
            return 0.0
        return float(np.mean(np.sqrt(np.atleast_1d(self.noise)[live] / power[live])))


def _tflite_errors(quantizer: TFLiteInt8):
    """(op outputs to keep float, tensor name, error) per quantised op, from the NumericVerify
    debug model run in the LiteRT interpreter."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    debug = quantizer.quantize(numeric_verify=True)
    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": it is, here
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_content=debug, experimental_preserve_all_tensors=True)
    with native.filtered():  # the XNNPACK delegate's INFO line
        interpreter.allocate_tensors()
    verify = [op for op in interpreter._get_ops_details() if op["op_name"] == "NumericVerify"]
    index = interpreter.get_input_details()[0]["index"]
    errors = {}
    for image in quantizer.calibration_sample(ERROR_IMAGES):
        interpreter.set_tensor(index, image[None])
        interpreter.invoke()
        for op in verify:
            quantized, reference = op["inputs"]
            detail = interpreter._get_tensor_details(quantized, 0)
            params = detail["quantization_parameters"]
            got = (interpreter.get_tensor(quantized).astype(np.float32)
                   - params["zero_points"][0]) * params["scales"][0]
            errors.setdefault(detail["name"], ChannelError()).add(
                interpreter.get_tensor(reference), got)
    names, readers = _tflite_graph(quantizer.calibrated)
    found = []
    for name, error in errors.items():
        # The debug model names a quantised op's output like the float model's tensor plus one
        # digit (TensorFlow's QuantizationDebugger strips it the same way).
        if name not in names and name[-1:].isdigit() and name[:-1] in names:
            name = name[:-1]
        found.append(((name, *readers.get(name, ())), name, error.value()))
    return found


def _tflite_graph(flatbuffer):
    """The tensor names of a TFLite model, and {tensor name: output tensor names of the ops
    that read it}."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_content=flatbuffer)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    readers = {}
    for op in interpreter._get_ops_details():
        outputs = [names[i] for i in op["outputs"] if i in names]
        for i in op["inputs"]:
            if i in names:
                readers.setdefault(names[i], []).extend(outputs)
    return set(names.values()), readers


def _onnx_errors(quantizer: OnnxInt8):
    """(nodes to keep float, the node's weight and bias names, error) per weighted node, from
    onnxruntime's qdq_loss_debug: the error of the node's quantised output activation (after a
    fused ReLU, and not counting the ReLU's clipping as error) combined with that of its
    quantised weights, as independent noises: sqrt(a^2 + w^2)."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug

    with tempfile.TemporaryDirectory() as tmp:
        baseline = quantizer.quantized()  # the default setting: the search's first try
        augmented = os.path.join(tmp, "augmented.onnx")
        qdq_loss_debug.modify_model_output_intermediate_tensors(baseline, augmented)
        activations = qdq_loss_debug.collect_activations(
            augmented, quantizer.reader(quantizer.calibration_sample(ERROR_IMAGES)))
        matched = qdq_loss_debug.create_activation_matching(activations)
        weights = qdq_loss_debug.create_weight_matching(quantizer.prepared, baseline)
    activation_error = {}
    for name, pair in matched.items():
        error = ChannelError(axis=1)
        low = min(float(np.min(a)) for a in pair["post_qdq"])
        for before, after in zip(pair["pre_qdq"], pair["post_qdq"]):
            error.add(np.maximum(before, low), after)
        activation_error[name] = error.value()
    weight_error = {}
    for name, pair in weights.items():  # per output channel: the first axis of ONNX weights
        error = ChannelError(axis=0)
        error.add(pair["float"], pair["dequantized"])
        weight_error[name] = error.value()
    graph = onnx.load(quantizer.prepared).graph
    readers = onnx_edit.readers(graph)
    found = []
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        keep, outputs = [node.name], [node.output[0]]
        after = readers.get(node.output[0], [])
        if len(after) == 1 and after[0].op_type in ("Relu", "Clip"):
            keep.append(after[0].name)  # fused into the quantised Conv: either name may carry
            outputs.append(after[0].output[0])  # the quantised activation
        keep += [reader.name for reader in readers.get(outputs[-1], [])]
        a = max(activation_error.get(name, 0.0) for name in outputs)
        w = max((weight_error.get(name, 0.0) for name in node.input[1:]), default=0.0)
        if a or w:
            found.append((keep, ";".join(node.input[1:]), float(np.hypot(a, w))))
    return found
