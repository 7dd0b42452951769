"""Converters: a Keras model becomes a SavedModel, a TFLite file or an ONNX file.

Each function writes one artifact and returns its path; none of them checks the result. That is
`kres.export.export`'s job (FACTS.md: some conversion paths fail silently), or call
`kres.export.load(path).predict(images)` yourself and compare with the Keras model.

Models take RAW pixels (float32 NHWC in [0, 255]) when built with ``include_preprocessing=True``;
calibration images must be given the same way, from real data, never random.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

import numpy as np

from kres.export.errors import ExportError

TFLITE_QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
ONNX_QUANTIZATIONS = ("fp32", "int8")
IO_TYPES = ("float", "int8", "uint8")


def _check_choice(argument, value, accepted):
    if value not in accepted:
        raise ExportError(f"{argument}={value!r} is not supported; accepted: {', '.join(accepted)}")


def _check_calibration(calibration, model, quantization):
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


def _serving_function(model, output_name=None):
    """The model's inference as a tf.function with a named, batch-dynamic input (and a named
    output: a dict ``{output_name: outputs}``, when ``output_name`` is given)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=model.inputs[0].name)

    def serve(images):
        outputs = model(images, training=False)
        return outputs if output_name is None else {output_name: outputs}

    return tf.function(serve, input_signature=[spec], autograph=False)


def to_saved_model(model, path):
    """Write ``model`` as a TensorFlow SavedModel directory: signature ``serving_default`` with
    the Keras input's name (``images``) and the output layer's name (``predictions``).

    >>> kres.export.to_saved_model(model, "exports/tmp/saved_model")
    """
    import tensorflow as tf

    path = os.fspath(path)
    serve = _serving_function(model, model.layers[-1].name)
    module = tf.Module()
    # Keras' model.export stores every variable twice (Keras' wrapper and the tf.Variable under
    # it): 2.8 MB instead of 1.5 MB for resnet20. Track the tf.Variables once.
    module.weights = [v.value for v in model.variables]
    module.serve = serve
    tf.saved_model.save(module, path,
                        signatures={"serving_default": serve.get_concrete_function()})
    return path


def to_tflite(model, path, quantization="fp32", *, io="float", calibration=None,
              per_channel=False):
    """Write ``model`` as a .tflite file with builtin ops only (a Flex op fails the conversion).

    quantization: ``fp32``; ``fp16`` (weights stored as float16); ``dynamic`` (int8 weights, float
    activations); ``int8`` (full integer, activations calibrated on ``calibration``, images given
    exactly as the model takes them). ``io`` (int8 only): ``float`` keeps float32 inputs and
    outputs; ``int8``/``uint8`` make them integer, with scale and zero point in the file (raw
    pixels map to uint8 one to one when the model normalises inside).

    ``per_channel=False`` gives each weight tensor one scale: on CIFAR-size ResNets the
    per-channel tables (int64 zero points for every weight and bias channel) are 6 % of the
    file, and the 27 % size budget of issue 5 does not hold with them; per-tensor agreed with
    Keras on 100 % of the digits test set. Pass ``per_channel=True`` when agreement drops.

    >>> x, _ = kres.data.arrays("digits", "train", limit=200)
    >>> kres.export.to_tflite(model, "m.tflite", "int8", io="uint8", calibration=x)
    """
    import tensorflow as tf

    _check_choice("quantization", quantization, TFLITE_QUANTIZATIONS)
    _check_choice("io", io, IO_TYPES)
    if io != "float" and quantization != "int8":
        raise ExportError(f"io={io!r} needs quantization='int8' (got {quantization!r})")
    if quantization == "int8":
        calibration = _check_calibration(calibration, model, quantization)

    with tempfile.TemporaryDirectory() as tmp:  # the robust path (FACTS.md): via a SavedModel
        to_saved_model(model, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.exclude_conversion_metadata = True
        if quantization != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter._experimental_disable_per_channel = not per_channel
            if io != "float":
                converter.inference_input_type = getattr(tf, io)
                converter.inference_output_type = getattr(tf, io)
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # the converter raises ConverterError with the op it lacks
            raise ExportError(f"TFLite conversion ({quantization}) failed: {error}") from error
    flatbuffer = _tidy_tflite(flatbuffer, model.inputs[0].name, model.layers[-1].name)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return os.fspath(path)


def _tidy_tflite(flatbuffer, input_name, output_name):
    """Name the input and output tensors (and signature entries) like the Keras model's input and
    output layer, instead of ``serving_default_images:0`` and ``StatefulPartitionedCall_1:0``,
    and drop the names of intermediate tensors: debug strings such as
    ``model/conv2/Conv2D;model/bn/FusedBatchNorm`` that are 3 % of a small model."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    for subgraph in model.subgraphs:
        names = {i: input_name for i in subgraph.inputs}
        names.update({i: output_name for i in subgraph.outputs})
        for index, tensor in enumerate(subgraph.tensors):
            tensor.name = names[index].encode() if index in names else None
    for signature in model.signatureDefs or []:
        for entry, name in [(e, input_name) for e in signature.inputs] + [
                (e, output_name) for e in signature.outputs]:
            entry.name = name.encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def to_onnx(model, path, quantization="fp32", *, calibration=None, opset=17):
    """Write ``model`` as an ONNX file: input named like the Keras input, dynamic batch ``batch``,
    output named like the Keras output layer; NHWC like the Keras model.

    ``int8``: onnxruntime static quantisation in QDQ format, per-channel, uint8 activations and
    int8 weights, calibrated on ``calibration`` (real images, as the model takes them).

    >>> kres.export.to_onnx(model, "m.onnx")
    >>> kres.export.to_onnx(model, "m_int8.onnx", "int8", calibration=x)
    """
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    _check_choice("quantization", quantization, ONNX_QUANTIZATIONS)
    if quantization == "int8":
        calibration = _check_calibration(calibration, model, quantization)
    path = os.fspath(path)
    # Freeze first: tf2onnx.convert.from_function (and Keras' own ONNX export) turn constants
    # captured by a layer (the mean and variance of a Normalization layer) into extra graph
    # INPUTS that onnxruntime then demands.
    with _quiet():
        frozen = convert_variables_to_constants_v2(
            _serving_function(model).get_concrete_function())
    input_name, output_name = model.inputs[0].name, model.layers[-1].name
    try:
        with _quiet():
            proto, _ = tf2onnx.convert.from_graph_def(
                frozen.graph.as_graph_def(), input_names=[frozen.inputs[0].name],
                output_names=[frozen.outputs[0].name], opset=opset)
    except Exception as error:
        raise ExportError(f"ONNX conversion (opset {opset}) failed: {error}") from error
    _tidy_onnx(proto, {frozen.inputs[0].name: input_name, frozen.outputs[0].name: output_name})

    if quantization == "fp32":
        _save_onnx(proto, path)
        return path
    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "prepared.onnx")
        _save_onnx(proto, fp32)
        _quantize_onnx(fp32, prepared, path, input_name, calibration)
    return path


def _quantize_onnx(fp32, prepared, path, input_name, calibration):
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i:i + 1] for i in range(len(calibration)))

        def get_next(self):
            image = next(self.batches, None)
            return None if image is None else {input_name: image}

    quant_pre_process(fp32, prepared)
    quantize_static(prepared, path, Images(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    proto = onnx.load(path)
    _tidy_onnx(proto, {})
    _drop_zero_zero_points(proto)
    _save_onnx(proto, path)


def _drop_zero_zero_points(proto):
    """Drop the all-zero per-channel zero points of int8 weights and int32 biases: optional in
    DequantizeLinear (default 0 of the input's type), they cost 5 bytes a channel, enough to
    push a CIFAR ResNet's int8 file over 27 % of the fp32 one. Unused opset domains go too."""
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


def _tidy_onnx(proto, renames):
    """Rename the graph's input and output (``renames``), call the batch dimension ``batch``,
    and give intermediate tensors and nodes short names: tf2onnx and the quantiser produce
    names such as ``model/conv2/Conv2D__12_quantized`` that are 14 % of a small int8 file."""
    graph = proto.graph
    keep = {v.name for v in (*graph.input, *graph.output)} | set(renames)
    short = dict(renames)

    def rename(name):
        if not name or (name in keep and name not in renames):
            return name
        return short.setdefault(name, f"t{len(short)}")

    for value in (*graph.input, *graph.output):
        value.name = rename(value.name)
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = "batch"
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
    onnx.save(proto, path)
