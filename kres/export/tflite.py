"""TFLite files: a Keras model becomes a .tflite file, fp32, fp16, dynamic-range or full-integer
int8, with tidy tensor names and, for image classifiers, metadata.

The functions write a file and check nothing. That is `kres.export.export`'s job: some conversion
paths fail silently (TensorFlow's ``from_concrete_functions`` produced a TFLite model that
outputs NaN for a ResNet), or call `kres.export.load(path).predict(images)` yourself and compare
with the Keras model.

int8 comes in settings (per-channel or per-tensor weight scales, some layers left in float):
:class:`TFLiteInt8` calibrates a model once and writes any setting quickly, which is what the
accuracy-gated search in `kres.export.precision` needs.
"""

from __future__ import annotations

import os
import tempfile

from kres import native
from kres.errors import ExportError
from kres.export import metadata as tflite_metadata
from kres.export.common import calibration_sample, check_calibration, check_choice, io_names
from kres.export.savedmodel import to_saved_model
from kres.files import atomic_write_bytes

TFLITE_QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
IO_TYPES = ("float", "int8", "uint8")


def flatbuffer(model, what, configure=None, saved_model=None):
    """``model`` through TensorFlow's TFLite converter, builtin ops only: from a SavedModel (the
    path that matched Keras on every model; converting concrete functions directly once gave NaN
    outputs), ``saved_model`` when given (the model's, as `to_saved_model` writes it: several
    conversions share one), else one written for this conversion. ``configure(converter)`` sets
    the converter's options first; ``what`` names the conversion in the ExportError raised when
    it fails."""
    if saved_model is not None:
        return _convert(saved_model, what, configure)
    with tempfile.TemporaryDirectory() as tmp:
        to_saved_model(model, tmp)
        return _convert(tmp, what, configure)


def _convert(saved_model, what, configure):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.exclude_conversion_metadata = True
    if configure is not None:
        configure(converter)
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

    def __init__(self, model, calibration, *, io="float", metadata=None, saved_model=None):
        import tensorflow as tf

        check_choice("io", io, IO_TYPES)
        calibration = self.calibration = check_calibration(calibration, model)
        self.io, self.metadata = io, metadata
        self.input_name, self.output_names = io_names(model)

        def calibrate_only(converter):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter._experimental_calibrate_only = True

        self.calibrated = flatbuffer(model, "int8 calibration", calibrate_only, saved_model)

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
        data = self.quantize(per_channel=per_channel, keep_float=keep_float)
        return write_tflite(data, path, self.input_name, self.output_names, self.metadata)


def to_tflite(model, path, quantization="fp32", *, io="float", calibration=None,
              per_channel=True, keep_float=(), metadata=None, saved_model=None):
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
    ``saved_model``: the model's SavedModel directory already written (`to_saved_model`), which
    the converter then reads instead of writing its own.

    >>> x, _ = kres.data.arrays("digits", "train", limit=200)
    >>> kres.export.to_tflite(model, "m.tflite", "int8", io="uint8", calibration=x)
    """
    import tensorflow as tf

    check_choice("quantization", quantization, TFLITE_QUANTIZATIONS)
    check_choice("io", io, IO_TYPES)
    if io != "float" and quantization != "int8":
        raise ExportError(f"io={io!r} needs quantization='int8' (got {quantization!r})")
    if quantization == "int8":
        return TFLiteInt8(model, calibration, io=io, metadata=metadata,
                          saved_model=saved_model).write(
            path, per_channel=per_channel, keep_float=keep_float)

    def configure(converter):
        if quantization != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "fp16":
            converter.target_spec.supported_types = [tf.float16]

    data = flatbuffer(model, quantization, configure, saved_model)
    input_name, output_names = io_names(model)
    return write_tflite(data, path, input_name, output_names, metadata)


def write_tflite(data, path, input_name, output_names, metadata=None):
    """Tidy the flatbuffer ``data`` (below), embed ``metadata`` and write it atomically to
    ``path``."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    _tidy(model, input_name, output_names)
    if metadata is not None:
        tflite_metadata.attach(model, metadata)
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    if metadata is not None:
        data = tflite_metadata.append_files(data, metadata)
    atomic_write_bytes(os.fspath(path), data)
    return os.fspath(path)


def _tidy(model, input_name, output_names):
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
