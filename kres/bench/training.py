"""Table 4, training: images per second of a kres model trained through
``kres.training.train`` (the default recipe: its data pipeline, callbacks and validation) and
through a plain ``model.fit`` on in-memory arrays (what a user would write instead), with and
without XLA, in float32 and, where the CPU has bfloat16 instructions, mixed bfloat16; and the
wall time of the main job (resnet20 on digits, the default recipe). Runs once per backend."""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np

from kres.bench.common import cores_busy
from kres.machine import cpu_info
from kres.training.callbacks import EpochTimer

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86-64 and arm64 names (kres.machine)


class EpochClock(EpochTimer):
    """The training loop's EpochTimer (wall seconds of each epoch, timed inside ``fit``) that
    also records the CPU seconds of this process over each epoch."""

    def __init__(self):
        super().__init__()
        self.cpu_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._cpu_start = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


def precisions() -> tuple:
    """float32, and mixed bfloat16 when the CPU computes in bfloat16 natively (elsewhere it is
    emulated and only slower)."""
    has_bf16 = any(f in cpu_info()["flags"] for f in BF16_FLAGS)
    return ("float32", "bfloat16") if has_bf16 else ("float32",)


def _plain(name, size, batch, xla, precision, x, y):
    """A kres model compiled the way a Keras user would, for ``model.fit(x, y)``."""
    import keras

    import kres

    previous = keras.config.dtype_policy()
    if precision != "float32":
        keras.config.set_dtype_policy(f"mixed_{precision}")
    try:
        model = kres.build(name, input_shape=(size, size, x.shape[-1]), num_classes=y.shape[-1],
                           include_preprocessing=True)
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=xla)
    return model


def _kres_train(name, size, batch, steps, precision, epochs, out):
    """``kres.training.train`` on digits for ``epochs`` epochs of ``steps`` steps: its result
    (``metrics["step_images_per_second"]``: the epochs after the first, training steps only)."""
    from kres.training import TrainConfig, train

    return train(TrainConfig(model=name, data="digits", image_size=size, batch_size=batch,
                             epochs=epochs, steps_per_epoch=steps, out=out, verbose=0,
                             mixed_precision="none" if precision == "float32" else precision))


def _kres_run(name, size, batch, steps, precision, epochs, out):
    """The seconds of every epoch of :func:`_kres_train` (the first includes compilation),
    from the run's history."""
    return [row["seconds"] for row in _kres_train(name, size, batch, steps, precision, epochs,
                                                  out).history]


def measure(rows, steps, xla_options, rounds) -> list:
    """One row per (model, path, XLA, precision): images/s of the median of ``rounds`` runs of
    ``steps`` steps, runs of all paths alternated; ``first_seconds`` is the first run, with
    its compilation. A run is one epoch timed from inside ``fit`` (as the training loop's
    ``EpochTimer`` does), so ``fit``'s own set-up is left out for both paths."""
    import keras

    from kres import data as kdata

    backend = keras.backend.backend()
    results = []
    for name, size, batch in rows:
        x, labels = kdata.arrays("digits", "train", image_size=size)
        y = np.eye(10, dtype=np.float32)[labels]
        n = batch * steps
        plain = {(xla, p): _plain(name, size, batch, xla, p, x, y)
                 for xla in xla_options for p in precisions()}
        seconds = {key: [] for key in plain}
        cpu = {key: [] for key in plain}
        kres_seconds = {p: [] for p in precisions()}
        first = {}
        with tempfile.TemporaryDirectory(prefix="kres-bench-train-") as tmp:
            for r in range(rounds + 1):  # round 0: compilation and warm-up
                for key, model in plain.items():
                    timer = EpochClock()
                    model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0, shuffle=False,
                              callbacks=[timer])
                    if r:
                        seconds[key].append(timer.seconds[0])
                        cpu[key].append(timer.cpu_seconds[0])
                    else:
                        first[key] = timer.seconds[0]
                for p in precisions():
                    if r == 0:
                        continue
                    epochs = _kres_run(name, size, batch, steps, p, 2,
                                       os.path.join(tmp, f"{p}-{r}"))
                    first.setdefault(("kres", p), epochs[0])
                    kres_seconds[p].append(epochs[1])
        common = {"model": name, "backend": backend, "image_size": size, "batch": batch,
                  "steps_per_run": steps, "runs": rounds}
        for p in precisions():
            results.append({**common, "path": "kres.training.train", "xla": False,
                            "precision": p, "images_per_second": n / statistics.median(
                                kres_seconds[p]), "first_seconds": first[("kres", p)],
                            "includes": "each epoch's validation pass (the loop's own images/s)"})
        for (xla, p), secs in seconds.items():
            results.append({**common, "path": "model.fit", "xla": xla, "precision": p,
                            "images_per_second": n / statistics.median(secs),
                            "first_seconds": first[(xla, p)],
                            "cores_busy": cores_busy(secs, cpu[(xla, p)]),
                            "includes": "training steps only (arrays in memory)"})
    return results


def main_job(epochs=None) -> dict:
    """Wall time and test accuracy of the main job's training: resnet20 on digits with the
    default recipe (``epochs``: None for the recipe's own)."""
    from kres.training import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="kres-bench-main-") as tmp:
        start = time.perf_counter()
        result = train(TrainConfig(model="resnet20", data="digits", epochs=epochs,
                                   out=os.path.join(tmp, "run"), verbose=0))
        wall = time.perf_counter() - start
    return {"model": "resnet20", "data": "digits", "epochs": result.recipe.epochs,
            "wall_seconds": wall, "test_accuracy": result.metrics["test_accuracy"],
            "images_per_second": result.metrics["images_per_second"]}
