"""Which accelerator delegates can take a .tflite graph (:mod:`kres.export.tflite_graph`), by
their published rules, checked op by op without the accelerator.

- GPU delegate: the rules of TensorFlow's own offline checker,
  ``tensorflow/lite/tools/versioning/gpu_compatibility.cc`` (``CheckGpuDelegateCompatibility``,
  which the GPU delegate's model builder runs too), for the ops it lists; any other op, builtin or
  custom (a Flex / SELECT_TF op), is "Not supported op", as that file's default branch says.
  ``tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`` is not used: with
  TensorFlow 2.21 it printed "Your model looks compatible with GPU delegate" for a model of one
  TOPK_V2 op, which the checker's source rejects (measured here).
- Integer-only (what NPU / DSP delegates need: the NNAPI, Edge TPU and Qualcomm QNN/Hexagon
  delegates run quantised int8/uint8 kernels only; a float op between them falls back to the CPU):
  no float tensor between the input QUANTIZE and the output DEQUANTIZE; see ``INTEGER_RULES``.
- Edge TPU: the supported-operations table of the Edge TPU compiler
  (https://coral.ai/docs/edgetpu/models-intro/#supported-operations) with its restrictions for
  the ops ResNets use; see ``EDGE_TPU_SOURCE``.
"""

from __future__ import annotations

import collections

GPU_SOURCE = ("TensorFlow tensorflow/lite/tools/versioning/gpu_compatibility.cc "
              "(CheckGpuDelegateCompatibility), rules re-implemented in kres.export.delegates")

# Ops gpu_compatibility.cc accepts (subject to the checks in _GPU_CHECKS); anything else is
# "Not supported op NAME".
GPU_OPS = frozenset("""
ABS ADD ADD_N ATAN2 AVERAGE_POOL_2D BATCH_MATMUL CAST CEIL CONCATENATION CONV_2D COS CUMSUM DENSIFY
DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP
FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GELU GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU
LESS LESS_EQUAL LOG LOGICAL_AND LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG
NOT_EQUAL ONE_HOT PACK PAD PADV2 POW PRELU QUANTIZE REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6
RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SELECT_V2 SIGN SIN SLICE
SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STABLEHLO_CLAMP STRIDED_SLICE SUB
SUM TANH TILE TRANSPOSE TRANSPOSE_CONV
""".split())
GPU_CUSTOM_OPS = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D",
                            "MaxUnpooling2D", "Resampler"})

INTEGER_RULES = (
    "every op between the input QUANTIZE and the output DEQUANTIZE reads and writes int8/uint8 "
    "tensors (int32 only for biases and shapes): NNAPI "
    "(https://developer.android.com/ndk/guides/neuralnetworks#quantized), the Edge TPU "
    "(https://coral.ai/docs/edgetpu/models-intro/#compatibility-overview: 'Tensor parameters are "
    "quantized (8-bit fixed-point numbers; int8 or uint8)') and Qualcomm's QNN HTP backend run "
    "quantised kernels; a float op there runs on the CPU",
    "the input shape is static (shape_signature has no -1): the Edge TPU requires 'Tensor sizes "
    "are constant at compile-time' (same page); NNAPI re-plans a dynamic shape on the CPU",
    "integer input and output (int8/uint8) lets the app feed camera bytes with no float "
    "QUANTIZE/DEQUANTIZE on the CPU: TFLiteConverter inference_input_type / inference_output_type",
)
EDGE_TPU_SOURCE = "https://coral.ai/docs/edgetpu/models-intro/#supported-operations"
EDGE_TPU_OPS = frozenset("""
ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEQUANTIZE EXPAND_DIMS FULLY_CONNECTED
HARD_SWISH L2_NORMALIZATION LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL PACK PAD PRELU QUANTIZE
REDUCE_MAX REDUCE_MIN RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT
SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM TANH TRANSPOSE
TRANSPOSE_CONV
""".split())

_FLOATS = ("float32", "float16", "bfloat16", "float64")


# ------------------------------------------------------------------------------ GPU delegate


def gpu(graph) -> dict:
    """``{"compatible", "incompatible": [{"op", "index", "reason"}], "checker"}`` by the rules of
    gpu_compatibility.cc."""
    problems = []
    for op in graph.ops:
        reason = gpu_problem(op)
        if reason:
            problems.append({"op": op.name, "index": op.index, "reason": reason})
    return {"compatible": not problems, "incompatible": problems, "checker": GPU_SOURCE}


def gpu_problem(op) -> str | None:
    """Why the GPU delegate rejects ``op`` (the checker's message), or None."""
    if op.custom:
        return None if op.name in GPU_CUSTOM_OPS else f"Not supported custom op {op.name}"
    if op.name not in GPU_OPS:
        return f"Not supported op {op.name}"
    check = _GPU_CHECKS.get(op.name)
    return check(op) if check else None


def _runtime_inputs(op):
    return [t for t in op.inputs if t is not None and not t.constant]


def _activation(op):
    code = getattr(op.options, "fusedActivationFunction", 0)
    return "TfLiteFusedActivation.kTfLiteActSignBit" if code == 6 else None  # SIGN_BIT


def _conv(op):
    if len(_runtime_inputs(op)) > 2:
        return f"Expected 1 or 2 input tensor(s), but node has {len(_runtime_inputs(op))} " \
               "runtime inputs."
    o = op.options
    if min(o.strideH, o.strideW) <= 0:
        return f"Incorrect stride values: stride_height = {o.strideH}, stride_width = {o.strideW}"
    if min(getattr(o, "dilationHFactor", 1), getattr(o, "dilationWFactor", 1)) <= 0:
        return "Incorrect dilation values"
    if op.name == "DEPTHWISE_CONV_2D" and o.depthMultiplier != 1 and op.inputs[0].shape[-1] != 1:
        return "depth_multiplier != 1 && input.c != 1"
    return _activation(op)


def _pool(op):
    o = op.options
    if len(_runtime_inputs(op)) != 1 or len(op.outputs) != 1:
        return "Expected 1 runtime input tensor(s) and 1 output tensor(s)"
    if min(o.filterHeight, o.filterWidth) <= 0:
        return f"Incorrect kernel values: kernel_height = {o.filterHeight}, " \
               f"kernel_width = {o.filterWidth}"
    if min(o.strideH, o.strideW) <= 0:
        return f"Incorrect stride values: stride_height = {o.strideH}, stride_width = {o.strideW}"
    return _activation(op)


def _axes(op):
    axes = op.inputs[1]
    if not axes.const:
        return f"{op.name} is only supported with constant axes."
    if axes.dtype != "int32":
        return f"{op.name} supports int32 tensor for axes. But node has {axes.dtype}"
    return None


def _pad(op):
    if op.name == "MIRROR_PAD" and op.options.mode != 0:  # 0: REFLECT
        return "Only Reflective padding is supported for Mirror Pad operation."
    if len(_runtime_inputs(op)) != 1:
        return f"Expected 1 runtime input tensor(s), but node has {len(_runtime_inputs(op))}"
    paddings = op.inputs[1].shape
    if len(paddings) != 2 or paddings[0] not in (3, 4) or paddings[1] != 2:
        return f"Invalid paddings tensor shape: expected 4x2 or 3x2, got {paddings}"
    return None


def _broadcastable(op):
    """ADD / MUL with the offline checker's enhanced broadcast: numpy-style broadcasting."""
    if len(op.inputs) != 2:
        return f"{op.name} requires two input tensors."
    a, b = (t.shape for t in op.inputs)
    if len(a) > 1 and len(b) > 1 and len(a) != len(b):
        for x, y in zip(reversed(a), reversed(b)):
            if x != y and 1 not in (x, y):
                return f"Doesn't support broadcasting - input0: {list(a)}, input1: {list(b)}"
    if op.name == "MUL" and len(a) == len(b) and any(x < y for x, y in zip(a, b)) \
            and any(y < x for x, y in zip(a, b)):
        return "MUL requires one tensor that not less than second in all dimensions."
    return _activation(op) if op.name == "MUL" else None


def _fully_connected(op):
    if getattr(op.options, "weightsFormat", 0) != 0:
        return "Unsupported FullyConnected weights format"
    if op.inputs[0].constant:
        return "FullyConnected doesn't support constant input."
    if len(_runtime_inputs(op)) > 2:
        return "FullyConnected doesn't support more than 2 runtime inputs."
    return None


def _softmax(op):
    return None if op.options.beta == 1 else "Softmax.beta != 1 is not supported."


def _dequantize(op):
    return "Unsupported dequantization type." if op.inputs[0].dtype == "int16" else None


def _strided_slice(op):
    o = op.options
    for mask in ("ellipsisMask", "newAxisMask", "shrinkAxisMask"):
        if getattr(o, mask):
            return f"Slice does not support {mask}."
    if len(op.inputs[0].shape) not in (3, 4):
        return "STRIDED_SLICE supports for 3 or 4 dimensional tensors only."
    return None


def _elementwise(op):
    runtime = len(_runtime_inputs(op))
    if (runtime, len(op.inputs) - runtime) not in ((2, 0), (1, 1)):
        return "Op can only handle 1 or 2 operand(s)."
    return _activation(op) if op.options is not None else None


_GPU_CHECKS = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool,
    "MEAN": _axes, "SUM": _axes, "REDUCE_MAX": _axes, "REDUCE_MIN": _axes, "REDUCE_PROD": _axes,
    "PAD": _pad, "PADV2": _pad, "MIRROR_PAD": _pad, "ADD": _broadcastable, "MUL": _broadcastable,
    "FULLY_CONNECTED": _fully_connected, "SOFTMAX": _softmax, "DEQUANTIZE": _dequantize,
    "STRIDED_SLICE": _strided_slice, "SUB": _elementwise, "DIV": _elementwise,
    "MAXIMUM": _elementwise, "MINIMUM": _elementwise, "SQUARED_DIFFERENCE": _elementwise,
}


# ------------------------------------------------------------------------------ NPU / DSP


def integer_only(graph) -> dict:
    """Whether the graph is integer from the input QUANTIZE to the output DEQUANTIZE
    (``INTEGER_RULES``): the float ops in between, the input's shape signature, integer I/O."""
    boundary = {op.index for op in graph.ops if _is_boundary(op, graph)}
    float_ops = collections.Counter(op.name for op in graph.ops
                                    if op.index not in boundary and _has_float(op))
    signature = [list(t.signature) for t in graph.inputs]
    return {
        "integer_only": not float_ops,
        "float_ops": dict(float_ops),
        "input_quantize": any(graph.ops[i].name == "QUANTIZE" for i in boundary),
        "output_dequantize": any(graph.ops[i].name == "DEQUANTIZE" for i in boundary),
        "integer_io": all(t.dtype in ("int8", "uint8") for t in (*graph.inputs, *graph.outputs)),
        "input_signature": signature,
        "static_input_shape": all(-1 not in s for s in signature),
        "rules": list(INTEGER_RULES),
    }


def _is_boundary(op, graph):
    """The QUANTIZE of a float graph input or the DEQUANTIZE to a graph output."""
    inputs = {t.index for t in graph.inputs}
    outputs = {t.index for t in graph.outputs}
    if op.name == "QUANTIZE":
        return op.inputs[0].index in inputs and op.inputs[0].dtype in _FLOATS
    if op.name == "DEQUANTIZE":
        return op.outputs[0].index in outputs
    return False


def _has_float(op):
    """Reads or writes a float tensor at run time (a dequantised constant weight is a float
    tensor too: the op runs a float kernel)."""
    return any(t is not None and t.dtype in _FLOATS and not t.const
               for t in (*op.inputs, *op.outputs))


def edge_tpu(graph) -> dict:
    """The ops the Edge TPU compiler would leave on the CPU, by its published table: ops it does
    not list, and PAD beyond height and width ('Supported padding is only on height and width
    dimensions'), MEAN beyond x/y ('Supports reduction along x- and/or y-dimensions only')."""
    flagged = []
    for op in graph.ops:
        reason = None
        if op.custom or op.name not in EDGE_TPU_OPS:
            reason = "not in the Edge TPU's supported operations"
        elif op.name == "PAD" and _pads_beyond_hw(op):
            reason = "pads the channel (or batch) dimension; only height and width are supported"
        elif op.name == "MEAN" and _mean_axes(op) - {1, 2}:
            reason = f"reduces axes {sorted(_mean_axes(op))}; only x and y are supported"
        if reason:
            flagged.append({"op": op.name, "index": op.index, "reason": reason})
    return {"flagged": flagged, "source": EDGE_TPU_SOURCE,
            "global_pool": _global_pool(graph)}


def _pads_beyond_hw(op):
    values = op.inputs[1].value
    return values is None or any(values[d].any() for d in (0, 3) if d < len(values))


def _mean_axes(op):
    values = op.inputs[1].value
    return set() if values is None else {int(a) for a in values.ravel()}


def _global_pool(graph):
    """How global average pooling lowered: MEAN over axes 1 and 2 (what Keras'
    GlobalAveragePooling2D converts to) or AVERAGE_POOL_2D; both are in the Edge TPU table, MEAN
    with the x/y restriction, and NNAPI has both since Android 9 (API 28)."""
    for op in graph.ops:
        if op.name == "MEAN" and _mean_axes(op) == {1, 2}:
            return "MEAN over height and width"
        if op.name == "AVERAGE_POOL_2D" and op.outputs[0].shape[1:3] == (1, 1):
            return "AVERAGE_POOL_2D to 1x1"
    return None
