"""Where training time goes, op by op: a TensorFlow profiler trace (``tf.profiler``) of
``model.fit`` steps of a kres model on in-memory images, its op time summed by op type
(``Conv2DBackpropFilter``, ``Conv2D``, ``Mul``, ...). Runs on the TensorFlow backend, in a
process of its own (the inter-op thread count is fixed before TensorFlow starts)."""

from __future__ import annotations

import collections
import glob
import os
import re
import tempfile
import time

import numpy as np


def training_ops(model="resnet20", size=32, batch=128, steps=18, inter_op_threads=1) -> dict:
    """Profile ``steps`` training steps of ``kres.build(model)`` at ``size`` x ``size`` x 1
    (10 classes, SGD with momentum, batch ``batch``) after a warm-up epoch. With one inter-op
    thread (the default) ops run one at a time, so their times add up instead of overlapping.

    Returns ``{"model", "size", "batch", "steps", "inter_op_threads", "wall_seconds",
    "op_seconds", "ops": [{"op", "family", "seconds", "share", "count"}, ...]}``, ops by time,
    largest first; ``op`` is the kernel that ran, ``family`` the op type it implements. The profiler slows the steps down; the shares are what it is for."""
    import tensorflow as tf

    if inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(int(inter_op_threads))
    import keras

    import kres

    net = kres.build(model, input_shape=(size, size, 1), num_classes=10)
    net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * steps, size, size, 1)).astype("float32")
    y = rng.integers(0, 10, len(x))
    net.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # compiles the step
    wall, seconds, counts, _ = _profiled(lambda: net.fit(x, y, batch_size=batch, epochs=1,
                                                         verbose=0))
    return {"task": "training", "model": model, "size": size, "batch": batch, "steps": steps,
            "inter_op_threads": inter_op_threads, "wall_seconds": wall,
            "op_seconds": sum(seconds.values()), "ops": _rows(seconds, counts)}


def inference_ops(model="resnet50", size=224, batch=32, steps=3, inter_op_threads=1,
                  gemm_gflops=None) -> dict:
    """Profile ``steps`` calls of a compiled inference function (``tf.function``, no XLA: the
    benchmark's "compiled function" row) of ``kres.build(model)`` on ``batch`` random images of
    ``size`` x ``size`` x 3, after a warm-up call. Returns what :func:`training_ops` returns,
    plus ``convolutions``: one row per kernel size (``1x1``, ``3x3``, ``7x7``; the classifier's
    matrix product as ``dense``) with its multiply-accumulates, seconds and achieved GFLOP/s
    (2 x MACs / seconds), and its fraction of ``gemm_gflops`` when given."""
    import tensorflow as tf

    if inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(int(inter_op_threads))
    import kres

    net = kres.build(model, input_shape=(size, size, 3))
    forward = tf.function(lambda x: net(x, training=False))
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)),
                    tf.float32)
    forward(x).numpy()  # traces and compiles

    def work():
        for _ in range(steps):
            forward(x).numpy()
    wall, seconds, counts, by_node = _profiled(work)
    return {"task": "inference", "model": model, "size": size, "batch": batch, "steps": steps,
            "inter_op_threads": inter_op_threads, "wall_seconds": wall,
            "op_seconds": sum(seconds.values()), "ops": _rows(seconds, counts),
            "convolutions": _convolutions(net, by_node, batch * steps, gemm_gflops)}


def _profiled(work):
    """``work()`` under the TensorFlow profiler: its wall seconds and the op seconds and
    counts by op type, and the seconds by (layer, op type) of the ops inside a layer."""
    with tempfile.TemporaryDirectory(prefix="kres-profile-") as logdir:
        tf_profiler().start(logdir)
        start = time.perf_counter()
        work()
        wall = time.perf_counter() - start
        tf_profiler().stop()
        times = _op_times(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    return (wall, *times)


def tf_profiler():
    import tensorflow as tf

    return tf.profiler.experimental


def _rows(seconds, counts) -> list:
    """Op rows by time, largest first, with their share of the op time."""
    total = sum(seconds.values())
    return [{"op": op, "family": family(op), "seconds": s, "share": s / total,
             "count": counts[op]} for op, s in seconds.most_common()]


def _convolutions(net, by_node, images, gemm_gflops) -> list:
    """Achieved GFLOP/s of the convolution and matrix-product ops, by kernel size: each
    layer's MACs per image (kres.analysis.counting) over the seconds of its Conv2D/MatMul ops."""
    from kres.analysis.counting import layer_macs

    groups = {}
    for layer in net.layers:
        macs = layer_macs(layer)
        if not macs:
            continue
        kernel = getattr(layer, "kernel_size", None)
        key = f"{kernel[0]}x{kernel[1]}" if kernel else "dense"
        seconds = sum(s for (node, op), s in by_node.items()
                      if node == layer.name and ("Conv2D" in op or "MatMul" in op))
        group = groups.setdefault(key, {"kernel": key, "layers": 0, "gmacs": 0.0,
                                        "seconds": 0.0})
        group["layers"] += 1
        group["gmacs"] += macs * images / 1e9
        group["seconds"] += seconds
    for group in groups.values():
        group["gflops"] = 2 * group["gmacs"] / group["seconds"] if group["seconds"] else None
        if gemm_gflops and group["gflops"]:
            group["of_gemm"] = group["gflops"] / gemm_gflops
    return sorted(groups.values(), key=lambda g: -g["seconds"])


# oneDNN (TensorFlow's default CPU library on x86-64) replaces some ops by kernels of its own
# whose names add a prefix: on an Intel Xeon with AVX-512, resnet20's convolutions ran as
# _MklNativeConv2D, _MklNativeConv2DBackpropFilter and _MklNativeConv2DBackpropInput; on an AMD
# EPYC they ran as Conv2D, Conv2DBackpropFilter and Conv2DBackpropInput.
ONEDNN_PREFIXES = ("_MklNative", "_Mkl")


def family(op: str) -> str:
    """The TensorFlow op type a kernel implements: ``_MklNativeConv2D`` -> ``Conv2D``."""
    for prefix in ONEDNN_PREFIXES:
        if op.startswith(prefix):
            return op[len(prefix):]
    return op


def _op_times(paths):
    """Seconds and counts by op type of the TensorFlow ops in the XSpace traces ``paths`` (the
    events of the executor threads, ``tf_Compute``, ``tf_numa``, named ``node:OpType``), and
    seconds by (layer, op type), the layer being the node name's first part."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    seconds, counts, by_node = (collections.Counter(), collections.Counter(),
                                collections.Counter())
    for path in paths:
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            for line in plane.lines:
                if not line.name.startswith(("tf_Compute", "tf_numa")):
                    continue
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    if ":" not in name or "::" in name:  # executor bookkeeping, not an op
                        continue
                    node, op = name.rsplit(":", 1)
                    seconds[op] += event.duration_ps / 1e12
                    counts[op] += 1
                    by_node[(_layer(node), op)] += event.duration_ps / 1e12
    return seconds, counts, by_node


def _layer(node: str) -> str:
    """The Keras layer of a graph node: ``resnet18_1/conv2_block1_1_conv_1/convolution`` ->
    ``conv2_block1_1_conv`` (the name scope under the model's, less Keras' call counter)."""
    parts = node.split("/")
    return re.sub(r"_\d+$", "", parts[1] if len(parts) > 2 else parts[0])
