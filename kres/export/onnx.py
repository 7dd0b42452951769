"""ONNX files: a Keras model becomes an ONNX file (tf2onnx), fp32 or int8 (onnxruntime's static
quantisation in QDQ format), with the Keras model's input and output names.

The functions write a file and check nothing: `kres.export.export` loads it back in onnxruntime
and compares it with Keras. :class:`OnnxInt8` prepares a model for int8 once and writes any
setting (per-channel or per-tensor weights, min/max or percentile ranges, some nodes in float),
which the accuracy-gated search in `kres.export.precision` needs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile

import numpy as np

from kres.errors import ExportError
from kres.export import onnx_edit
from kres.export.common import calibration_sample, check_calibration, check_choice, io_names
from kres.export.savedmodel import serving_function

ONNX_QUANTIZATIONS = ("fp32", "int8")
# onnxruntime's percentile calibration keeps every activation of every calibration image in
# memory (about 100 MB an image for ResNet-50 at 224 px): it gets as many images as fit here.
PERCENTILE_MEMORY = 2 << 30


@contextlib.contextmanager
def _quiet():
    """Silence TensorFlow's deprecation warnings that tf2onnx triggers on every conversion."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def onnx_graph(model, opset=17):
    """The model as an ONNX graph (names as tf2onnx made them, so that layers can still be
    recognised), with the input and outputs renamed like the Keras model's."""
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    # Freeze first: tf2onnx.convert.from_function (and Keras' own ONNX export) turn constants
    # captured by a layer (the mean and variance of a Normalization layer) into extra graph
    # INPUTS that onnxruntime then demands.
    with _quiet():
        frozen = convert_variables_to_constants_v2(
            serving_function(model).get_concrete_function())
    input_name, output_names = io_names(model)
    try:
        with _quiet():
            proto, _ = tf2onnx.convert.from_graph_def(
                frozen.graph.as_graph_def(), input_names=[frozen.inputs[0].name],
                output_names=[t.name for t in frozen.outputs], opset=opset)
    except Exception as error:
        raise ExportError(f"ONNX conversion (opset {opset}) failed: {error}") from error
    renames = {frozen.inputs[0].name: input_name}
    renames.update(zip((t.name for t in frozen.outputs), output_names))
    onnx_edit.rename(proto, renames)
    return proto


def _graph(model, opset, graph):
    """A copy of ``graph`` (callers edit it), or the model converted when there is none."""
    if graph is None:
        return onnx_graph(model, opset)
    copy = type(graph)()
    copy.CopyFrom(graph)
    return copy


def to_onnx(model, path, quantization="fp32", *, calibration=None, opset=17, per_channel=True,
            keep_float=(), graph=None):
    """Write ``model`` as an ONNX file: input named like the Keras input, dynamic batch ``batch``,
    outputs named like the Keras output layers; NHWC like the Keras model.

    ``int8``: onnxruntime static quantisation in QDQ format (uint8 activations, int8 weights,
    ``reduce_range``: see :class:`OnnxInt8`), calibrated on ``calibration`` (real images, as the
    model takes them); ``keep_float`` names nodes to leave in float. ``graph``: the model's
    graph already converted (`onnx_graph`), which is then copied instead of converted again.

    >>> kres.export.to_onnx(model, "m.onnx")
    >>> kres.export.to_onnx(model, "m_int8.onnx", "int8", calibration=x)
    """
    check_choice("quantization", quantization, ONNX_QUANTIZATIONS)
    if quantization == "int8":
        with OnnxInt8(model, calibration, opset, graph) as quantizer:
            return quantizer.write(path, per_channel=per_channel, keep_float=keep_float)
    proto = _graph(model, opset, graph)
    onnx_edit.shorten_names(proto)
    onnx_edit.save(proto, os.fspath(path))
    return os.fspath(path)


class OnnxInt8:
    """A model converted to ONNX and prepared for quantisation once (onnxruntime's
    ``quant_pre_process``); :meth:`write` then quantises it with any setting. Use as a context
    manager: it owns a temporary directory.

    Weights are int8 and activations uint8 (onnxruntime's default "U8S8") with ``reduce_range``:
    7-bit weights. Without it, U8S8 convolutions saturate on x86-64 CPUs that lack VNNI, where
    onnxruntime multiplies with VPMADDUBSW, whose 16-bit sums of u8 x s8 products overflow
    (onnxruntime's quantization documentation recommends reduce_range there). A file runs on
    whatever CPU its user has, so it is always on. Measured on an AVX2 CPU without VNNI, digits
    resnet20 models: 94.05 % and 96.65 % agreement with Keras without it, 99.26-100 % with it, at
    the same speed (ResNet-50: 28 ms either way); int8 activations ("S8S8") agreed equally on
    resnet20 but were 1.6x slower there and agreed on only 88 % with a digits resnet18.
    """

    def __init__(self, model, calibration, opset=17, graph=None):
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.calibration = check_calibration(calibration, model)
        self.input_name, self.output_names = io_names(model)
        self.activation_bytes = _activation_bytes(model)
        self._tmp = tempfile.TemporaryDirectory()
        self.float_path = os.path.join(self._tmp.name, "float.onnx")
        self.prepared = os.path.join(self._tmp.name, "prepared.onnx")
        self._quantized = {}  # setting: its quantised file (see quantized)
        onnx_edit.save(_graph(model, opset, graph), self.float_path)
        # ONNX's own shape inference is enough for a convolutional network: the quantised graph
        # of a digits resnet20 came out the same without the symbolic one, which imports sympy
        # and took 1.6 of the export's 12 s.
        quant_pre_process(self.float_path, self.prepared, skip_symbolic_shape=True)
        self.float_output_ops = output_op_types(onnx.load(self.prepared).graph)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._tmp.cleanup()

    def calibration_sample(self, n):
        return calibration_sample(self.calibration, n)

    def reader(self, images=None):
        """An onnxruntime CalibrationDataReader over ``images`` (default: the calibration set),
        one image per call."""
        return calibration_reader(self.input_name,
                                  self.calibration if images is None else images)

    def quantize(self, path, *, per_channel=True, keep_float=(), calibration="minmax"):
        """The quantised model at ``path``, names as in the prepared graph. ``calibration``:
        activation ranges from the minimum and maximum (``minmax``) or from the 0.001 and 99.999
        percentiles (``percentile``) of the calibration images' activations."""
        from onnxruntime.quantization import CalibrationMethod, QuantType

        check_choice("calibration", calibration, ("minmax", "percentile"))
        method = {"minmax": CalibrationMethod.MinMax,
                  "percentile": CalibrationMethod.Percentile}[calibration]
        images = self.calibration
        if calibration == "percentile":  # its histograms need every activation in memory
            n = max(16, int(PERCENTILE_MEMORY // max(self.activation_bytes, 1)))
            images = self.calibration_sample(n)
        quantize_static(self.prepared, path, self.reader(images), "ONNX int8 quantisation",
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=per_channel, reduce_range=True,
                        nodes_to_exclude=list(keep_float), calibrate_method=method,
                        extra_options={"OpTypesToExcludeOutputQuantization":
                                       list(self.float_output_ops)})
        return path

    def quantized(self, *, per_channel=True, keep_float=(), calibration="minmax"):
        """:meth:`quantize` into this quantizer's directory, once per setting: the per-layer
        error measurement and the search's first try both need the default setting's file, and
        each quantisation calibrates on every calibration image again."""
        key = (per_channel, tuple(keep_float), calibration)
        if key not in self._quantized:
            raw = os.path.join(self._tmp.name, f"quantized-{len(self._quantized)}.onnx")
            self._quantized[key] = self.quantize(raw, per_channel=per_channel,
                                                 keep_float=keep_float, calibration=calibration)
        return self._quantized[key]

    def write(self, path, *, per_channel=True, keep_float=(), calibration="minmax"):
        """Quantise, tidy and write ``path`` (atomically)."""
        raw = self.quantized(per_channel=per_channel, keep_float=keep_float,
                             calibration=calibration)
        return write_quantized(raw, path)


def quantize_static(source, path, reader, what, **options):
    """onnxruntime's static quantisation of the file ``source`` into ``path`` in QDQ format,
    calibrated by ``reader``; ``options`` go to ``quantize_static``. Its progress lines are
    silenced; a failure is an ExportError that starts with ``what``."""
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization import quantize_static as quantize

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress
            quantize(source, path, reader, quant_format=QuantFormat.QDQ, **options)
    except Exception as error:
        raise ExportError(f"{what} failed: {error}") from error


def output_op_types(graph):
    """The op types of the nodes that make the graph's outputs, when no other node has that
    type (a classifier's one Gemm): onnxruntime then leaves their outputs in float. Quantised
    to 8 bits, a classifier's logits are 256 steps over their whole range (0.12 for a digits
    resnet20 whose logits span -13 to 19), and 4 of its 269 test images had their top two
    logits closer than one step: a tie whose argmax is the first class, not Keras' answer."""
    outputs = {o.name for o in graph.output}
    made = {n.op_type for n in graph.node if outputs & set(n.output)}
    elsewhere = {n.op_type for n in graph.node if not outputs & set(n.output)}
    return tuple(sorted(made - elsewhere))


def write_quantized(raw, path):
    """The quantiser's file ``raw`` tidied (short names, no all-zero zero points) and written to
    ``path`` (atomically)."""
    import onnx

    proto = onnx.load(raw)
    onnx_edit.shorten_names(proto)
    onnx_edit.drop_zero_zero_points(proto)
    onnx_edit.save(proto, os.fspath(path))
    return os.fspath(path)


def calibration_reader(input_name, images):
    """An onnxruntime CalibrationDataReader feeding ``images`` to ``input_name``, one a call."""
    from onnxruntime.quantization import CalibrationDataReader

    class Images(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(images[i:i + 1] for i in range(len(images)))

        def get_next(self):
            image = next(self.batches, None)
            return None if image is None else {input_name: image}

    return Images()


def _activation_bytes(model):
    """float32 bytes of every layer output of one image: what a calibrator that keeps all
    intermediate tensors holds per image."""
    total = 0
    for layer in model.layers:
        for output in layer.output if isinstance(layer.output, list) else [layer.output]:
            total += int(np.prod([d or 1 for d in output.shape[1:]]))
    return 4 * total
