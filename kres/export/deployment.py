"""The deployment report of a .tflite or .onnx file: what a mobile engineer asks before building
the app. Works on any file, not only kres' own (``kres export --check FILE``).

TFLite: the op types and counts; which of them LiteRT's default XNNPACK delegate took (read from
the interpreter's nodes after delegation); the GPU delegate's verdict, integer-only from input
QUANTIZE to output DEQUANTIZE, and the ops the Edge TPU would leave on the CPU
(:mod:`kres.export.delegates`); the cost: parameters, multiply-accumulates per image, file size
and the activation arena the interpreter allocates, measured.
ONNX: op types and counts, opset, the share of compute nodes that are quantised, and the
execution provider each node of the optimised graph ran on (onnxruntime's session profiling).

>>> report = kres.export.deployment.report("exports/digits-resnet20/resnet20_int8.tflite")
>>> report["integer_only"]["integer_only"], report["gpu"]["compatible"]
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import tempfile

import numpy as np

from kres.errors import ExportError
from kres.export import delegates, tflite_graph
from kres.files import size_of

FORMATS = {".tflite": "tflite", ".onnx": "onnx"}
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
XNNPACK_NODE = "DELEGATE"  # LiteRT's name for a delegate kernel node (TfLiteXNNPackDelegate)


def report(path) -> dict:
    """The deployment report of a .tflite or .onnx file; ExportError for anything else."""
    path = os.fspath(path)
    kind = FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None or not os.path.isfile(path):
        raise ExportError(f"{path!r} is not a .tflite or .onnx file" if os.path.exists(path)
                          else f"{path!r} does not exist; give a .tflite or .onnx file or an "
                          "export directory")
    return tflite_report(path) if kind == "tflite" else onnx_report(path)


def check(path) -> list:
    """(file name, report) for a .tflite / .onnx file, or for every such file in a directory (an
    export directory, or any other); ExportError when there is none."""
    path = os.fspath(path)
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if os.path.splitext(n)[1].lower() in FORMATS)
        if not names:
            raise ExportError(f"{path!r} holds no .tflite or .onnx file")
        return [(n, report(os.path.join(path, n))) for n in names]
    return [(os.path.basename(path), report(path))]


# ------------------------------------------------------------------------------ TFLite


def tflite_report(path) -> dict:
    try:
        graph = tflite_graph.read(path)
    except Exception as error:  # the flatbuffer reader raises anything on a foreign file
        raise ExportError(f"{path!r} is not a readable .tflite file ({error})") from None
    return {
        "format": "tflite",
        "ops": dict(collections.Counter(op.name for op in graph.ops)),
        "xnnpack": xnnpack_plan(path, graph),
        "gpu": delegates.gpu(graph),
        "integer_only": delegates.integer_only(graph),
        "edge_tpu": delegates.edge_tpu(graph),
        "cost": {"parameters": tflite_parameters(graph), "macs": tflite_macs(graph),
                 "bytes": size_of(path), "arena_bytes": arena_bytes(path, graph)},
    }


def xnnpack_plan(path, graph) -> dict:
    """Which ops LiteRT's default XNNPACK delegate took. After delegation the interpreter holds
    the model's nodes plus one DELEGATE node per partition; a model op belongs to a partition when
    it lies between that node's inputs and outputs (walked back from its outputs)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        with _quiet_stderr():
            interpreter = Interpreter(model_path=path, num_threads=1)
            interpreter.allocate_tensors()  # delegates are applied here
    except (RuntimeError, ValueError) as error:  # e.g. Flex ops without the Flex delegate
        return {"ops": len(graph.ops), "delegated": 0, "partitions": 0, "on_cpu": None,
                "error": str(error).strip().splitlines()[0]}
    native = interpreter._interpreter  # node lists: the only view of the delegated plan
    taken = set()
    partitions = 0
    for node in range(len(graph.ops), native.NumNodes()):
        if native.NodeName(node) != XNNPACK_NODE:
            continue
        partitions += 1
        boundary = {int(t) for t in native.NodeInputs(node)}
        stack = [int(t) for t in native.NodeOutputs(node)]
        while stack:
            op = graph.producer(graph.tensors[stack.pop()])
            if op is None or op.index in taken:
                continue
            taken.add(op.index)
            stack += [t.index for t in op.inputs if t is not None and t.index not in boundary]
    left = collections.Counter(op.name for op in graph.ops if op.index not in taken)
    return {"ops": len(graph.ops), "delegated": len(taken), "partitions": partitions,
            "on_cpu": dict(left)}


def tflite_parameters(graph) -> int:
    """Weights and biases of the ops with weights (``MAC_OPS``), op by op: the converter stores
    equal constants once (a fresh model's all-zero biases share one buffer), the network still
    has one per op. BatchNorm is folded into the convolutions, so this is less than Keras'
    count_params when the convolutions have no bias of their own."""
    return int(sum(t.size for op in graph.ops if op.name in MAC_OPS
                   for t in op.inputs[1:] if t is not None and t.constant))


def tflite_macs(graph) -> int:
    """Multiply-accumulates for one image: CONV_2D output x kernel height x width x input
    channels; DEPTHWISE_CONV_2D output x kernel area; FULLY_CONNECTED / TRANSPOSE_CONV output
    (resp. input) x what each element sums over."""
    total = 0
    for op in graph.ops:
        if op.name not in MAC_OPS:
            continue
        out = op.outputs[0].shape
        per_image = int(np.prod(out[1:], dtype=np.int64)) if len(out) > 1 else 1
        weights = op.inputs[1].shape  # TRANSPOSE_CONV: (output shape, weights, input)
        if op.name == "CONV_2D":
            total += per_image * int(np.prod(weights[1:]))
        elif op.name == "DEPTHWISE_CONV_2D":
            total += per_image * weights[1] * weights[2]
        elif op.name == "FULLY_CONNECTED":
            total += per_image * weights[-1]
        else:  # TRANSPOSE_CONV: every input element is spread over the kernel
            source = op.inputs[2].shape
            total += int(np.prod(source[1:])) * int(np.prod(weights[:3]))
    return int(total)


def arena_bytes(path, graph) -> int | None:
    """The activation arena, measured: the interpreter is built without its default delegates, so
    its arena planner places every intermediate tensor, and after ``allocate_tensors`` this is
    the span from the lowest to the highest byte of any non-constant tensor (the planner reuses
    memory between tensors that are not alive together, and the span also covers its scratch
    buffers placed between them). Addresses change from run to run, the span does not: the
    planner's offsets are deterministic. Weights dequantised at load time (fp16 files) are kept
    in a separate persistent buffer and left out. XNNPACK keeps a workspace of its own."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        with _quiet_stderr():
            interpreter = Interpreter(
                model_path=path, num_threads=1,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            interpreter.allocate_tensors()
    except (RuntimeError, ValueError):
        return None
    spans = []
    for t in graph.tensors:  # only the model's own tensors: reading scratch tensors crashes
        if t.constant:  # weights, also dequantised ones: those live outside the activation arena
            continue
        try:
            array = interpreter.tensor(t.index)()
        except ValueError:  # no data allocated (e.g. an unused optional tensor)
            continue
        if array.nbytes:
            spans.append((array.ctypes.data, array.ctypes.data + array.nbytes))
        del array
    if not spans:
        return None
    return int(max(e for _, e in spans) - min(s for s, _ in spans))


@contextlib.contextmanager
def _quiet_stderr():
    """LiteRT prints 'INFO: Created TensorFlow Lite XNNPACK delegate' from C++ on every load."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ------------------------------------------------------------------------------ ONNX

QDQ = ("QuantizeLinear", "DequantizeLinear")
PLUMBING = {"Constant", "Shape", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze",
            "Identity", "Cast", *QDQ}


def onnx_report(path) -> dict:
    import onnx

    try:
        model = onnx.load(path)
    except Exception as error:  # a protobuf decode error on a foreign file
        raise ExportError(f"{path!r} is not a readable .onnx file ({error})") from None
    graph = model.graph
    quantized, compute = _quantized_share(graph)
    return {
        "format": "onnx",
        "ops": dict(collections.Counter(n.op_type for n in graph.node)),
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                     default=None),
        "quantized_nodes": {"quantized": quantized, "compute": compute},
        "providers": onnx_providers(path),
        "cost": {"parameters": _onnx_parameters(graph), "bytes": size_of(path),
                 "arena_bytes": None},
    }


def _quantized_share(graph):
    """(quantised, all) compute nodes: compute is every node but the quantise/dequantise pairs
    and shape plumbing; quantised ones are integer ops (QLinear*, *Integer) or, in the QDQ
    format onnxruntime fuses into integer kernels, nodes whose inputs all come from a
    DequantizeLinear or an initializer and whose outputs all go to a QuantizeLinear."""
    producers = {o: n for n in graph.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    initializers = {i.name for i in graph.initializer}
    compute = [n for n in graph.node if n.op_type not in PLUMBING]

    def quantized(n):
        if n.op_type.startswith("QLinear") or n.op_type.endswith("Integer"):
            return True
        data = [i for i in n.input if i and i not in initializers]
        fed = data and all(getattr(producers.get(i), "op_type", None) == "DequantizeLinear"
                           for i in data)
        feeds = all(c.op_type == "QuantizeLinear" for o in n.output for c in consumers[o]) \
            and any(consumers[o] for o in n.output)
        return bool(fed and feeds)

    return sum(map(quantized, compute)), len(compute)


def _onnx_parameters(graph) -> int:
    """Elements of the initializers that weight Conv / Gemm / MatMul nodes and the biases added
    to a MatMul (through their DequantizeLinear in a quantised file)."""
    sizes = {i.name: int(np.prod(i.dims, dtype=np.int64)) for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    counted = set()
    for n in graph.node:
        after_matmul = n.op_type == "Add" and any(
            getattr(producers.get(i), "op_type", None) == "MatMul" for i in n.input)
        if n.op_type not in ("Conv", "Gemm", "MatMul", "ConvInteger", "QLinearConv") \
                and not after_matmul:  # tf2onnx writes a Dense layer as MatMul + Add
            continue
        for name in n.input[0 if after_matmul else 1:]:
            source = producers.get(name)
            if source is not None and source.op_type == "DequantizeLinear":
                name = source.input[0]
            if name in sizes and sizes[name] > 1:
                counted.add(name)
    return int(sum(sizes[n] for n in counted))


def onnx_providers(path) -> dict:
    """The execution provider every node of onnxruntime's optimised graph ran on, from one run
    with session profiling (the CPU execution provider is the one kres runs)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as directory:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(directory, "profile")
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feeds = {i.name: _zeros(i) for i in session.get_inputs()}
        session.run(None, feeds)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    nodes = {}
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and "provider" in args:
            nodes[args.get("node_index", e["name"])] = args["provider"]
    by_provider = collections.Counter(nodes.values())
    return {"requested": ["CPUExecutionProvider"], "nodes": len(nodes),
            "by_provider": dict(by_provider),
            "all_on_requested": set(by_provider) <= {"CPUExecutionProvider"}}


def _zeros(value):
    types = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
             "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in value.shape]
    return np.zeros(shape, types.get(value.type, np.float32))
