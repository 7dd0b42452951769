"""Editing ONNX graphs in place (the precision search and the QAT export read and rewrite the
graphs tf2onnx and onnxruntime write), and saving them checked."""

from __future__ import annotations

import numpy as np

from kres.files import atomic_write_bytes


def readers(graph):
    """{tensor name: the nodes that read it}."""
    found = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def drop_unused_initializers(graph):
    """Remove the initializers no node reads."""
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def rename(proto, renames):
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


def shorten_names(proto):
    """Give intermediate tensors and nodes short names: tf2onnx and the quantiser produce names
    such as ``model/conv2/Conv2D__12_quantized`` that are 14 % of a small int8 file."""
    graph = proto.graph
    keep = {v.name for v in (*graph.input, *graph.output)}
    short = {}

    def short_name(name):
        if not name or name in keep:
            return name
        return short.setdefault(name, f"t{len(short)}")

    for initializer in graph.initializer:
        initializer.name = short_name(initializer.name)
    for index, node in enumerate(graph.node):
        node.name, node.doc_string = f"n{index}", ""
        node.input[:] = [short_name(name) for name in node.input]
        node.output[:] = [short_name(name) for name in node.output]
    del graph.value_info[:]  # shape annotations: recomputed by runtimes


def drop_zero_zero_points(proto):
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
    drop_unused_initializers(graph)
    domains = {node.domain for node in graph.node} | {"", "ai.onnx"}
    kept = [o for o in proto.opset_import if o.domain in domains]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)


def save(proto, path):
    """Check ``proto`` with onnx's checker and write it atomically to ``path``."""
    import onnx

    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
