"""A trained QAT model becomes int8 TFLite and ONNX files that use its own ranges: no
calibration.

TFLite: the converter reads the fake-quantisation ops (``optimizations = DEFAULT`` without a
representative dataset) and gives every int8 tensor the scale and zero point of its quantiser;
weights are re-quantised per channel from their (already int8-exact) values. The input
normalisation stays in float, ahead of the first QUANTIZE op.

ONNX: tf2onnx turns each per-tensor fake-quantisation into a QuantizeLinear/DequantizeLinear
pair, but folds the per-channel weight fake-quantisation into float weights, which onnxruntime
then runs as float convolutions. So the pairs are read (their scales and zero points are the QAT
ranges), removed, and handed to onnxruntime's own static quantiser as ``TensorQuantOverrides``,
with the weights' own grid (max|w| / 127 per output channel) beside them: it writes a QDQ file
with exactly the QAT model's activation ranges and weights.

The weights are stored as uint8 with zero point 128 ("U8U8"), not as int8: 8-bit int8 weights
saturate onnxruntime's u8 x s8 kernels on x86-64 CPUs without VNNI (VPMADDUBSW sums two
products in 16 bits), and the 7-bit weights post-training export uses there (``reduce_range``,
:class:`kres.export.onnx.OnnxInt8`) would round the trained 8-bit weights to a grid the QAT
model never saw. Its u8 x u8 kernels widen to 16 bits before multiplying and cannot saturate.
Measured on an AVX2 CPU without VNNI, the untrained QAT twin of the digits resnet20: top-1
agreement with the QAT Keras model 100 % (U8U8), 99.63 % (int8, reduce_range), 98.14 % (int8,
8-bit: saturation). The price is speed on x86-64, where u8 x u8 takes the slower path:
single-image latency, 2 threads, medians of 6 alternated runs on that CPU, trained QAT models:
resnet20 0.78 ms U8U8, 0.68 ms reduce_range, 1.06 ms fp32; resnet18 at 32x32 1.32, 1.07 and
1.57 ms. (ARM's UDOT instruction multiplies u8 x u8 natively.)
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from kres.errors import ExportError
from kres.export import onnx_edit, tflite
from kres.export.common import io_names
from kres.export.onnx import calibration_reader, onnx_graph, quantize_static, write_quantized

QUANTISED_OPS = ("Conv", "MatMul", "Gemm", "Add", "Relu", "MaxPool", "Pad", "GlobalAveragePool",
                 "AveragePool", "Reshape", "Squeeze", "Flatten")


def to_tflite(model, path, *, metadata=None):
    """Write the QAT ``model`` as a full-integer .tflite file (float input and output) with its
    learned ranges."""
    import tensorflow as tf

    def read_fake_quantisation(converter):  # DEFAULT without a representative dataset
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

    data = tflite.flatbuffer(model, "QAT int8", read_fake_quantisation)
    input_name, output_names = io_names(model)
    return tflite.write_tflite(data, path, input_name, output_names, metadata)


def qdq_ranges(proto):
    """Remove the QuantizeLinear/DequantizeLinear pairs tf2onnx made of the fake-quantisation
    ops from ``proto`` (in place); return {tensor name: (scale, zero point)} of the tensors they
    quantised."""
    import onnx.numpy_helper

    graph = proto.graph
    values = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    nodes = list(graph.node)
    by_input = onnx_edit.readers(graph)
    ranges, drop, renames = {}, [], {}
    for node in nodes:
        if node.op_type != "QuantizeLinear":
            continue
        readers = by_input.get(node.output[0], [])
        if len(readers) != 1 or readers[0].op_type != "DequantizeLinear":
            raise ExportError(f"unexpected ONNX graph: QuantizeLinear {node.name} is not "
                              "followed by one DequantizeLinear")
        dequantize = readers[0]
        scale, zero_point = (values[name] for name in node.input[1:3])
        ranges[node.input[0]] = (float(scale), int(zero_point))
        renames[dequantize.output[0]] = node.input[0]
        drop += [node, dequantize]
    for node in drop:
        graph.node.remove(node)
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    onnx_edit.drop_unused_initializers(graph)  # the pairs' scales and zero points
    for output in graph.output:
        if output.name in renames:  # a model output that was quantised: keep its name
            graph.node.append(onnx.helper.make_node("Identity", [renames[output.name]],
                                                    [output.name]))
    return ranges


def _matmul_add_to_gemm(proto):
    """MatMul + bias Add (tf2onnx's Dense) as one Gemm, so that the quantiser does not give the
    product before the bias a range of its own (calibrated, not learned: the QAT model never
    sees that tensor)."""
    import onnx

    graph = proto.graph
    initializers = {i.name: i for i in graph.initializer}
    readers = onnx_edit.readers(graph)
    for node in list(graph.node):
        if node.op_type != "MatMul" or node.input[1] not in initializers:
            continue
        add = readers.get(node.output[0], [])
        if len(add) != 1 or add[0].op_type != "Add":
            continue
        add = add[0]
        bias = [name for name in add.input if name != node.output[0]]
        if len(bias) != 1 or bias[0] not in initializers or \
                len(initializers[bias[0]].dims) != 1:
            continue
        gemm = onnx.helper.make_node("Gemm", [node.input[0], node.input[1], bias[0]],
                                     list(add.output), name=f"{node.name}_gemm")
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.remove(add)
        graph.node.insert(index, gemm)


WEIGHT_ZERO_POINT = 128  # uint8 weights: 128 + [-127, 127], the symmetric int8 grid


def weight_grids(proto):
    """{weight initializer: (channel axis, per-channel scales)} of the graph's Conv and Gemm
    weights, which hold the QAT model's fake-quantised values: Conv per output channel (axis 0,
    max|w| / 127 of each), Gemm per tensor (``QuantDense``), repeated over its output axis 1
    since the quantiser quantises it per channel."""
    import onnx.numpy_helper

    values = {i.name: i for i in proto.graph.initializer}
    grids = {}
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.input[1] not in values:
            continue
        w = onnx.numpy_helper.to_array(values[node.input[1]]).astype(np.float64)
        if node.op_type == "Conv":
            bound = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
            axis = 0
        else:
            bound = np.full(w.shape[1], np.abs(w).max())
            axis = 1
        grids[node.input[1]] = (axis, np.maximum(bound, 1e-12) / 127.0)
    return grids


class OnnxQAT:
    """The QAT model as a float ONNX graph plus the activation ranges its quantisers hold;
    :meth:`write` quantises it with onnxruntime. A context manager (it owns a directory)."""

    def __init__(self, model, opset=17):
        self.input_name, self.output_names = io_names(model)
        self._tmp = tempfile.TemporaryDirectory()
        self.float_path = os.path.join(self._tmp.name, "float.onnx")
        proto = onnx_graph(model, opset)
        self.ranges = qdq_ranges(proto)
        _matmul_add_to_gemm(proto)
        self.weights = weight_grids(proto)
        onnx_edit.save(proto, self.float_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._tmp.cleanup()

    def overrides(self):
        """onnxruntime's ``TensorQuantOverrides``: each activation's QAT range, and each
        weight's per-channel grid (uint8, zero point 128)."""
        activations = {name: [{"scale": np.array(scale, np.float32),
                               "zero_point": np.array(zero_point, np.uint8)}]
                       for name, (scale, zero_point) in self.ranges.items()}
        weights = {}
        for name, (axis, scales) in self.weights.items():
            channels = [{"scale": np.array(scale, np.float32),
                         "zero_point": np.array(WEIGHT_ZERO_POINT, np.uint8)} for scale in scales]
            channels[0]["axis"] = axis
            weights[name] = channels
        return {**activations, **weights}

    def write(self, path, calibration):
        """Quantise (uint8 activations at the QAT ranges, the QAT model's per-channel weights)
        and write ``path``. ``calibration``: images for the few tensors without a QAT range
        (none in a kres ResNet: every quantised op's inputs and output have one)."""
        from onnxruntime.quantization import QuantType

        raw = os.path.join(self._tmp.name, "quantized.onnx")
        reader = calibration_reader(self.input_name, calibration)
        quantize_static(self.float_path, raw, reader, "ONNX int8 quantisation of the QAT model",
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                        per_channel=True, reduce_range=False, op_types_to_quantize=QUANTISED_OPS,
                        extra_options={"TensorQuantOverrides": self.overrides()})
        return write_quantized(raw, path)


def to_onnx(model, path, calibration, *, opset=17):
    """Write the QAT ``model`` as an 8-bit QDQ ONNX file with its learned activation ranges and
    its weights exactly."""
    with OnnxQAT(model, opset) as quantizer:
        return quantizer.write(path, calibration)


# ------------------------------------------------------------------ the export pipeline's step


def plan(pairs, explicit, io="float"):
    """The (format, quantisation) pairs an export of a QAT model produces: its int8 files (and
    the SavedModel); float TFLite/ONNX files of a QAT model would be neither float nor int8."""
    if io != "float":
        raise ExportError(f"io={io!r}: int8 files of a QAT model take and give float tensors "
                          "(io='float'); the input normalisation runs in float before them")
    kept = [(f, q) for f, q in pairs if q == "int8" or f == "saved_model"]
    dropped = [f"{f} {q}" for f, q in pairs if (f, q) not in kept]
    if dropped and explicit:
        raise ExportError(f"a QAT model exports to int8 TFLite and ONNX (and a SavedModel); "
                          f"not {', '.join(dropped)}: export the float run for those")
    if not kept:
        raise ExportError("nothing to export for a QAT model: ask for quantize=int8")
    return kept


def write_int8(model, fmt, path, held_out, check, *, opset=17, classifier=None):
    """The int8 file of the QAT ``model`` (its ranges, no search): ``(entry, report)`` as
    :func:`kres.export.precision.search` returns them. The report says the ranges are the QAT
    model's and, when ``held_out.float_reference`` holds the float model's outputs, how the
    file agrees with the float model too."""
    from kres.export.runners import load
    from kres.quantize.observe import quantizers

    if fmt == "tflite":
        to_tflite(model, path, metadata=classifier)
        weights = "int8 per output channel"
    else:
        to_onnx(model, path, held_out.calibration[:8], opset=opset)
        weights = "8-bit per output channel, stored as uint8 with zero point 128 (U8U8)"
    entry = check(path)
    report = {"ranges": "qat", "kept": "QAT ranges", "activation_ranges": len(quantizers(model)),
              "weights": weights, "tries": [], "worst_layers": []}
    reference = getattr(held_out, "float_reference", None)
    if reference is not None:
        got = load(path, verify=False).predict(held_out.images)
        report["top1_agreement_with_float"] = float(
            (got.argmax(-1) == reference.argmax(-1)).mean())
    return entry, report


def float_reference(source, held_out, expected):
    """For a QAT model loaded from a QAT run (``runs/x-qat``): the float model of the trained
    run it fine-tuned (``runs/x``), its outputs kept in ``held_out.float_reference``, and its
    manifest record (its accuracy and agreement with the QAT model). None without that run."""
    from kres.export.runners import KerasRunner
    from kres.files import sha256_of
    from kres.rundir import Run
    from kres.saving import load_keras_model

    path = source.get("model") if source.get("from") == "file" else None
    float_run = Run(os.path.dirname(os.path.abspath(path))).float_run if path else None
    if float_run is None or not Run.is_run(float_run):
        return None
    float_path = float_run.best
    outputs = KerasRunner(load_keras_model(float_path)).predict(held_out.images)
    held_out.float_reference = outputs
    record = {"model": float_path, "sha256": sha256_of(float_path),
              "top1_agreement_with_qat": float((outputs.argmax(-1) == expected.argmax(-1)).mean())}
    if held_out.truth is not None:
        record["accuracy"] = float((outputs.argmax(-1) == held_out.truth).mean())
    return record
