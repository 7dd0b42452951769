"""Converters: a Keras model becomes a SavedModel, a TFLite file or an ONNX file.

Each function writes one artifact and returns its path; none of them checks the result. That is
`kres.export.export`'s job (some conversion paths fail silently: TensorFlow's
``from_concrete_functions`` produced a TFLite model that outputs NaN for a ResNet), or call
`kres.export.load(path).predict(images)` yourself and compare with the Keras model.

Models take RAW pixels (float32 NHWC in [0, 255]) when built with ``include_preprocessing=True``;
calibration images must be given the same way, from real data, never random.

int8 comes in settings (per-channel or per-tensor weight scales, some layers left in float):
:class:`TFLiteInt8` and :class:`OnnxInt8` prepare a model once (calibration, graph conversion)
and write any setting quickly, which is what the accuracy-gated search in
`kres.export.precision` needs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile

import numpy as np

from kres import native
from kres.errors import ExportError
from kres.export import metadata as tflite_metadata
from kres.files import atomic_write_bytes

TFLITE_QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
ONNX_QUANTIZATIONS = ("fp32", "int8")
IO_TYPES = ("float", "int8", "uint8")
# onnxruntime's percentile calibration keeps every activation of every calibration image in
# memory (about 100 MB an image for ResNet-50 at 224 px): it gets as many images as fit here.
PERCENTILE_MEMORY = 2 << 30


def check_choice(argument, value, accepted):
    if value not in accepted:
        raise ExportError(f"{argument}={value!r} is not supported; accepted: {', '.join(accepted)}")


def check_calibration(calibration, model, quantization="int8"):
    if calibration is None:
        raise ExportError(f"quantization={quantization!r} needs calibration images: real, "
                          "preprocessed like the model's inputs (never random data)")
    calibration = np.asarray(calibration, np.float32)
    expected = tuple(model.inputs[0].shape[1:])
    if calibration.ndim != len(expected) + 1 or len(calibration) == 0 or any(
            e is not None and e != g for e, g in zip(expected, calibration.shape[1:])):
        raise ExportError(f"calibration images have shape {calibration.shape}; the model takes "
                          f"(N, {', '.join('?' if e is None else str(e) for e in expected)})")
    return calibration


def calibration_sample(images, n):
    """``n`` images spread evenly over ``images`` (all of them when there are fewer)."""
    if len(images) <= n:
        return images
    return images[np.linspace(0, len(images) - 1, n).round().astype(int)]


def io_names(model):
    """The input's name and the outputs' names: the Keras input and output layers' names."""
    return model.inputs[0].name, list(model.output_names)


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


def _serving_function(model, named_outputs=False):
    """The model's inference as a tf.function with a named, batch-dynamic input; with
    ``named_outputs`` it returns a dict {output layer name: tensor}."""
    import tensorflow as tf

    input_name, output_names = io_names(model)
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=input_name)

    def serve(images):
        outputs = model(images, training=False)
        if not named_outputs:
            return outputs
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(output_names, outputs))

    return tf.function(serve, input_signature=[spec], autograph=False)


def to_saved_model(model, path):
    """Write ``model`` as a TensorFlow SavedModel directory: signature ``serving_default`` with
    the Keras input's name (``images``) and the output layers' names (``predictions``).

    >>> kres.export.to_saved_model(model, "exports/tmp/saved_model")
    """
    import tensorflow as tf

    path = os.fspath(path)
    serve = _serving_function(model, named_outputs=True)
    module = tf.Module()
    # Keras' model.export stores every variable twice (Keras' wrapper and the tf.Variable under
    # it): 2.8 MB instead of 1.5 MB for resnet20. Track the tf.Variables once.
    module.weights = [v.value for v in model.variables]
    module.serve = serve
    tf.saved_model.save(module, path,
                        signatures={"serving_default": serve.get_concrete_function()})
    return path


# ----------------------------------------------------------------------------------- TFLite


def _tflite_converter(saved_model_dir):
    """A converter from a SavedModel (the path that matched Keras on every model; converting
    concrete functions directly once gave NaN outputs), builtin ops only."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.exclude_conversion_metadata = True
    return converter


def _convert(converter, what):
    try:
        with native.captured():  # the quantiser prints its settings from C++ on fd 2
            return converter.convert()
    except Exception as error:  # the converter raises ConverterError with the op it lacks
        raise ExportError(f"TFLite conversion ({what}) failed: {error}") from error


class TFLiteInt8:
    """A model calibrated once for full-integer TFLite; :meth:`quantize` then writes any int8
    setting in a fraction of a second.

    This is the converter's own two-step path (``_experimental_calibrate_only``, then the MLIR
    quantiser that ``converter.convert()`` calls): the same bytes for the default setting, plus
    what the public converter options cannot say (leaving chosen layers in float, used by
    TensorFlow's QuantizationDebugger for selective quantisation).
    """

    def __init__(self, model, calibration, *, io="float", metadata=None):
        import tensorflow as tf

        check_choice("io", io, IO_TYPES)
        calibration = self.calibration = check_calibration(calibration, model)
        self.io, self.metadata = io, metadata
        self.input_name, self.output_names = io_names(model)
        with tempfile.TemporaryDirectory() as tmp:
            to_saved_model(model, tmp)
            converter = _tflite_converter(tmp)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter._experimental_calibrate_only = True
            self.calibrated = _convert(converter, "int8 calibration")

    def calibration_sample(self, n):
        return calibration_sample(self.calibration, n)

    def quantize(self, *, per_channel=True, keep_float=(), numeric_verify=False):
        """The int8 flatbuffer (untidied: tensor names intact). ``keep_float``: output tensor
        names of ops to leave in float; ``numeric_verify``: the debug model whose NumericVerify
        ops pair every quantised op's output with the float op's on the same input (float
        inputs and outputs)."""
        import tensorflow as tf
        from tensorflow.lite.python import convert as tflite_convert

        io = "float" if numeric_verify else self.io
        dtype = {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io]
        try:
            with native.captured():  # the quantiser prints its settings from C++
                return tflite_convert.mlir_quantize(
                    self.calibrated, disable_per_channel=not per_channel, input_data_type=dtype,
                    output_data_type=dtype, enable_numeric_verify=numeric_verify,
                    denylisted_nodes=list(keep_float) or None)
        except Exception as error:
            raise ExportError(f"TFLite int8 quantisation failed: {error}") from error

    def write(self, path, *, per_channel=True, keep_float=()):
        flatbuffer = self.quantize(per_channel=per_channel, keep_float=keep_float)
        return write_tflite(flatbuffer, path, self.input_name, self.output_names, self.metadata)


def to_tflite(model, path, quantization="fp32", *, io="float", calibration=None,
              per_channel=True, keep_float=(), metadata=None):
    """Write ``model`` as a .tflite file with builtin ops only (a Flex op fails the conversion).

    quantization: ``fp32``; ``fp16`` (weights stored as float16); ``dynamic`` (int8 weights, float
    activations); ``int8`` (full integer, activations calibrated on ``calibration``, images given
    exactly as the model takes them). ``io`` (int8 only): ``float`` keeps float32 inputs and
    outputs; ``int8``/``uint8`` make them integer, with scale and zero point in the file (raw
    pixels map to uint8 one to one when the model normalises inside).

    int8 weights get one scale per output channel (``per_channel=True``, the TFLite int8
    specification's default, which mobile kernels are tuned for) or one per tensor;
    ``keep_float`` names ops (their output tensors) to leave in float. ``metadata``: a
    :class:`kres.export.metadata.ImageClassifierInfo` to embed (labels, normalisation).

    >>> x, _ = kres.data.arrays("digits", "train", limit=200)
    >>> kres.export.to_tflite(model, "m.tflite", "int8", io="uint8", calibration=x)
    """
    import tensorflow as tf

    check_choice("quantization", quantization, TFLITE_QUANTIZATIONS)
    check_choice("io", io, IO_TYPES)
    if io != "float" and quantization != "int8":
        raise ExportError(f"io={io!r} needs quantization='int8' (got {quantization!r})")
    if quantization == "int8":
        return TFLiteInt8(model, calibration, io=io, metadata=metadata).write(
            path, per_channel=per_channel, keep_float=keep_float)
    with tempfile.TemporaryDirectory() as tmp:
        to_saved_model(model, tmp)
        converter = _tflite_converter(tmp)
        if quantization != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        flatbuffer = _convert(converter, quantization)
    input_name, output_names = io_names(model)
    return write_tflite(flatbuffer, path, input_name, output_names, metadata)


def write_tflite(flatbuffer, path, input_name, output_names, metadata=None):
    """Tidy the flatbuffer (below), embed ``metadata`` and write it atomically to ``path``."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    _tidy_tflite(model, input_name, output_names)
    if metadata is not None:
        tflite_metadata.attach(model, metadata)
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    if metadata is not None:
        data = tflite_metadata.append_files(data, metadata)
    atomic_write_bytes(os.fspath(path), data)
    return os.fspath(path)


def _tidy_tflite(model, input_name, output_names):
    """Name the input and output tensors (and signature entries) like the Keras model's input and
    output layers, instead of ``serving_default_images:0`` and ``StatefulPartitionedCall_1:0``,
    and drop the names of intermediate tensors: debug strings such as
    ``model/conv2/Conv2D;model/bn/FusedBatchNorm`` that are 3 % of a small model."""
    # The SavedModel signature names each output by its Keras layer (a dict output), so the
    # signature says which tensor is which output; without one, outputs keep Keras' order.
    signature = (model.signatureDefs or [None])[0]
    names = {}
    if signature is not None:
        for entry in signature.inputs:
            entry.name = input_name.encode()
            names[entry.tensorIndex] = input_name
        for entry in signature.outputs:
            name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
            names[entry.tensorIndex] = name
    subgraph = model.subgraphs[0]
    names.update({i: input_name for i in subgraph.inputs if i not in names})
    names.update({i: output_names[k] for k, i in enumerate(subgraph.outputs) if i not in names})
    for index, tensor in enumerate(subgraph.tensors):
        tensor.name = names[index].encode() if index in names else None
    # The converter lists a multi-output model's outputs in no particular order; list them in
    # the Keras model's (stem, stage1, ...), which the interpreter's output details follow.
    order = {name: k for k, name in enumerate(output_names)}
    if all(names.get(i) in order for i in subgraph.outputs):
        subgraph.outputs = sorted(subgraph.outputs, key=lambda i: order[names[i]])
        if signature is not None:
            signature.outputs = sorted(signature.outputs, key=lambda e: order[names[e.tensorIndex]])


# ------------------------------------------------------------------------------------- ONNX


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
            _serving_function(model).get_concrete_function())
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
    _rename(proto, renames)
    return proto


def to_onnx(model, path, quantization="fp32", *, calibration=None, opset=17, per_channel=True,
            keep_float=()):
    """Write ``model`` as an ONNX file: input named like the Keras input, dynamic batch ``batch``,
    outputs named like the Keras output layers; NHWC like the Keras model.

    ``int8``: onnxruntime static quantisation in QDQ format (uint8 activations, int8 weights,
    ``reduce_range``: see :class:`OnnxInt8`), calibrated on ``calibration`` (real images, as the
    model takes them); ``keep_float`` names nodes to leave in float.

    >>> kres.export.to_onnx(model, "m.onnx")
    >>> kres.export.to_onnx(model, "m_int8.onnx", "int8", calibration=x)
    """
    check_choice("quantization", quantization, ONNX_QUANTIZATIONS)
    if quantization == "int8":
        with OnnxInt8(model, calibration, opset) as quantizer:
            return quantizer.write(path, per_channel=per_channel, keep_float=keep_float)
    proto = onnx_graph(model, opset)
    _shorten_names(proto)
    _save_onnx(proto, os.fspath(path))
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

    def __init__(self, model, calibration, opset=17):
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.calibration = check_calibration(calibration, model)
        self.input_name, self.output_names = io_names(model)
        self.activation_bytes = _activation_bytes(model)
        self._tmp = tempfile.TemporaryDirectory()
        self.float_path = os.path.join(self._tmp.name, "float.onnx")
        self.prepared = os.path.join(self._tmp.name, "prepared.onnx")
        _save_onnx(onnx_graph(model, opset), self.float_path)
        quant_pre_process(self.float_path, self.prepared)

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
        from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        check_choice("calibration", calibration, ("minmax", "percentile"))
        method = {"minmax": CalibrationMethod.MinMax,
                  "percentile": CalibrationMethod.Percentile}[calibration]
        images = self.calibration
        if calibration == "percentile":  # its histograms need every activation in memory
            n = max(16, int(PERCENTILE_MEMORY // max(self.activation_bytes, 1)))
            images = self.calibration_sample(n)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress
                quantize_static(self.prepared, path, self.reader(images),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, per_channel=per_channel,
                                reduce_range=True, nodes_to_exclude=list(keep_float),
                                calibrate_method=method)
        except Exception as error:
            raise ExportError(f"ONNX int8 quantisation failed: {error}") from error
        return path

    def write(self, path, *, per_channel=True, keep_float=(), calibration="minmax"):
        """Quantise, tidy and write ``path`` (atomically)."""
        import onnx

        raw = os.path.join(self._tmp.name, "quantized.onnx")
        self.quantize(raw, per_channel=per_channel, keep_float=keep_float,
                      calibration=calibration)
        proto = onnx.load(raw)
        _shorten_names(proto)
        _drop_zero_zero_points(proto)
        _save_onnx(proto, os.fspath(path))
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


def _drop_zero_zero_points(proto):
    """Drop the all-zero per-channel zero points of int8 weights and int32 biases: optional in
    DequantizeLinear (default 0 of the input's type), they cost 5 bytes a channel, 6 % of a
    CIFAR ResNet's int8 file. Unused opset domains go too."""
    import onnx.numpy_helper

    graph = proto.graph
    initializers = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) == 3 and all(
                name in initializers for name in node.input):
            zero_point = onnx.numpy_helper.to_array(initializers[node.input[2]])
            if zero_point.dtype in (np.int8, np.int32) and not zero_point.any():
                del node.input[2]
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    domains = {node.domain for node in graph.node} | {"", "ai.onnx"}
    kept = [o for o in proto.opset_import if o.domain in domains]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)


def _rename(proto, renames):
    """Rename tensors everywhere (graph inputs and outputs, node inputs and outputs) and call
    the batch dimension ``batch``."""
    graph = proto.graph
    for value in (*graph.input, *graph.output):
        value.name = renames.get(value.name, value.name)
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = "batch"
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]


def _shorten_names(proto):
    """Give intermediate tensors and nodes short names: tf2onnx and the quantiser produce names
    such as ``model/conv2/Conv2D__12_quantized`` that are 14 % of a small int8 file."""
    graph = proto.graph
    keep = {v.name for v in (*graph.input, *graph.output)}
    short = {}

    def rename(name):
        if not name or name in keep:
            return name
        return short.setdefault(name, f"t{len(short)}")

    for initializer in graph.initializer:
        initializer.name = rename(initializer.name)
    for index, node in enumerate(graph.node):
        node.name, node.doc_string = f"n{index}", ""
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
    del graph.value_info[:]  # shape annotations: recomputed by runtimes


def _save_onnx(proto, path):
    import onnx

    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
