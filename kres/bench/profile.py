"""Where training time goes, op by op: a TensorFlow profiler trace (``tf.profiler``) of
``model.fit`` steps of a kres model on in-memory images, its op time summed by op type
(``Conv2DBackpropFilter``, ``Conv2D``, ``Mul``, ...). Runs on the TensorFlow backend, in a
process of its own (the inter-op thread count is fixed before TensorFlow starts)."""

from __future__ import annotations

import collections
import glob
import os
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
    with tempfile.TemporaryDirectory(prefix="kres-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        net.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        seconds, counts = _op_times(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                                              recursive=True))
    total = sum(seconds.values())
    ops = [{"op": op, "family": family(op), "seconds": s, "share": s / total,
            "count": counts[op]} for op, s in seconds.most_common()]
    return {"model": model, "size": size, "batch": batch, "steps": steps,
            "inter_op_threads": inter_op_threads, "wall_seconds": wall, "op_seconds": total,
            "ops": ops}


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
    """Seconds and counts by op type of the TensorFlow ops in the XSpace traces ``paths``: the
    events of the executor threads (``tf_Compute``, ``tf_numa``) named ``name:OpType``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    seconds, counts = collections.Counter(), collections.Counter()
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
                    op = name.rsplit(":", 1)[1]
                    seconds[op] += event.duration_ps / 1e12
                    counts[op] += 1
    return seconds, counts
