"""A .tflite file's first subgraph as plain data: its ops (type, options, input and output
tensors) and tensors (dtype, shape, shape signature, constant or not, quantised or not), read
from the flatbuffer with the schema LiteRT ships (``ai_edge_litert.schema_py_generated``, the
``tensorflow/compiler/mlir/lite/schema/schema.fbs`` of TensorFlow). Reading needs no interpreter:
it works on any file, also ones with ops this host's runtime cannot run (Flex / SELECT_TF ops).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


SMALL_CONSTANT = 256  # bytes: integer constants up to this size are read (paddings, axes)


@dataclasses.dataclass(frozen=True, eq=False)
class Tensor:
    index: int
    name: str
    dtype: str  # "float32", "int8", ... (the schema's TensorType, lower case)
    shape: tuple  # as stored (a dynamic dimension is stored as 1)
    signature: tuple  # shape_signature: -1 marks a dynamic dimension; = shape when absent
    const: bool  # its data is in the file (weights, biases, shapes)
    quantized: bool  # has a scale and zero point
    value: object = None  # small integer constants (paddings, axes, shapes) as a numpy array
    dequantized: bool = False  # written by a DEQUANTIZE of a constant (fp16 / int8 weights)

    @property
    def constant(self) -> bool:
        """Known before the model runs: in the file, or dequantised from a constant (the GPU
        delegate and XNNPACK fold such a DEQUANTIZE into the weights)."""
        return self.const or self.dequantized

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def integer(self) -> bool:
        return self.dtype in ("int8", "uint8", "int16", "int32", "int4")


@dataclasses.dataclass(frozen=True, eq=False)
class Op:
    index: int
    name: str  # "CONV_2D", ..., or a custom op's code ("FlexConv2D", "TFLite_Detection...")
    custom: bool
    inputs: tuple  # Tensor, or None for an omitted optional input
    outputs: tuple
    options: object  # the schema's builtin options object (e.g. Conv2DOptionsT), or None


@dataclasses.dataclass(frozen=True)
class Graph:
    ops: tuple
    tensors: tuple
    inputs: tuple
    outputs: tuple

    def producer(self, tensor):
        """The op that writes ``tensor``, or None (an input or a constant)."""
        return self._producers.get(tensor.index)

    @functools.cached_property
    def _producers(self):
        return {t.index: op for op in self.ops for t in op.outputs}


def schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


@functools.lru_cache(maxsize=None)
def _names(enum):
    return {v: k for k, v in vars(getattr(schema(), enum)).items() if not k.startswith("_")}


def file_bytes(path_or_bytes) -> bytes:
    """The bytes of a .tflite file, given its path or its bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return path_or_bytes
    with open(path_or_bytes, "rb") as f:
        return f.read()


def read(path_or_bytes) -> Graph:
    """The first subgraph of a .tflite file (a path or its bytes)."""
    data = file_bytes(path_or_bytes)
    s = schema()
    model = s.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    ops = _names("BuiltinOperator")
    types = _names("TensorType")
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = ops[builtin] == "CUSTOM"
        codes.append(((code.CustomCode() or b"?").decode() if custom else ops[builtin], custom))

    def small_value(tensor, shape):
        buffer = model.Buffers(tensor.Buffer())
        dtype = {"int32": np.int32, "int64": np.int64}.get(types[tensor.Type()].lower())
        if dtype is None or not 0 < buffer.DataLength() <= SMALL_CONSTANT:
            return None
        return np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype).reshape(shape)

    def buffer_has_data(index):
        if index == 0:
            return False
        buffer = model.Buffers(index)
        return buffer.DataLength() > 0 or buffer.Offset() > 1  # large models: data after the file

    operators = [s.OperatorT.InitFromObj(graph.Operators(i))
                 for i in range(graph.OperatorsLength())]
    dequantized = {out for op in operators if codes[op.opcodeIndex][0] == "DEQUANTIZE"
                   and buffer_has_data(graph.Tensors(op.inputs[0]).Buffer())
                   for out in _list(op.outputs)}
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        signature = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) \
            if t.ShapeSignatureLength() else shape
        q = t.Quantization()
        const = buffer_has_data(t.Buffer())
        tensors.append(Tensor(i, (t.Name() or b"").decode(), types[t.Type()].lower(), shape,
                              signature, const, q is not None and q.ScaleLength() > 0,
                              small_value(t, shape) if const else None, i in dequantized))

    def pick(indices):
        return tuple(tensors[j] if j >= 0 else None for j in indices)

    result = []
    for i, op in enumerate(operators):
        name, custom = codes[op.opcodeIndex]
        result.append(Op(i, name, custom, pick(_list(op.inputs)), pick(_list(op.outputs)),
                         op.builtinOptions))
    return Graph(tuple(result), tuple(tensors), pick(_list(graph.InputsAsNumpy())),
                 pick(_list(graph.OutputsAsNumpy())))


def _list(values):
    return [] if values is None or isinstance(values, int) else [int(v) for v in values]
