"""Table 2, inference in Keras: images per second of kres models and of what a user would pick
instead (keras.applications.ResNet50, the same architecture as ``keras_resnet50``), through
``model.predict`` and through a compiled function, with and without XLA, on this process's
Keras backend. Run once per backend (``kres.bench.common.in_backend``)."""

from __future__ import annotations

import statistics

import numpy as np

from kres.bench.common import alternate, cores_busy, rate, repeat_for, timed

# mode: (how the model is called, XLA)
MODES = {
    "predict": ("model.predict", False),
    "predict_xla": ("model.predict", True),
    "function": ("compiled function", False),
    "function_xla": ("compiled function", True),
}
# What a user would pick instead of a kres model, where the same architecture exists elsewhere.
ALTERNATIVES = {"keras_resnet50": "keras.applications.ResNet50"}


def build(name: str, size: int):
    """A kres model, or the alternative named in ALTERNATIVES, with random weights."""
    import keras

    import kres

    if name == "keras.applications.ResNet50":
        return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    return kres.build(name, input_shape=(size, size, 3))


def caller(model, mode: str, batch: int):
    """A function of one argument ``x`` that runs ``model`` on it in ``mode`` and waits for the
    result."""
    import keras

    how, xla = MODES[mode]
    if how == "model.predict":
        model.compile(jit_compile=xla)
        return lambda x: model.predict(x, batch_size=batch, verbose=0)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda x: model(x, training=False), jit_compile=xla)
        return lambda x: function(x).numpy()
    if keras.backend.backend() == "jax":
        import jax

        def forward(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        # Without XLA a JAX model runs op by op (each op dispatched on its own).
        forward = jax.jit(forward) if xla else forward
        variables = ([v.value for v in model.trainable_variables],
                     [v.value for v in model.non_trainable_variables])
        return lambda x: np.asarray(forward(*variables, x))
    raise NotImplementedError(f"no compiled function for the {keras.backend.backend()} backend")


def measure(models, size, batches, modes, rounds, min_seconds, gemm_gflops=None) -> list:
    """One row per (model, batch, mode): images/s (median of ``rounds`` alternated runs), the
    first call's seconds (compilation included), the ratio to the alternative model and the
    fraction of ``gemm_gflops`` reached (2 x MACs x images/s)."""
    import keras

    from kres.analysis.counting import count_macs

    names = list(models) + [ALTERNATIVES[m] for m in models if m in ALTERNATIVES]
    built = {name: build(name, size) for name in names}
    macs = {name: count_macs(model) for name, model in built.items()}
    rows = []
    for batch in batches:
        x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
        for mode in modes:
            for name in models:
                group = [name] + ([ALTERNATIVES[name]] if name in ALTERNATIVES else [])
                calls = {n: caller(built[n], mode, batch) for n in group}
                first = {n: timed(lambda f=calls[n]: f(x)) for n in group}
                candidates = {n: (lambda f=calls[n]: f(x),
                                  repeat_for(lambda f=calls[n]: f(x), min_seconds))
                              for n in group}
                seconds, cpu = alternate(candidates, rounds)
                speed = {n: rate(batch, candidates[n][1], seconds[n]) for n in group}
                for n in group:
                    row = {"model": n, "backend": keras.backend.backend(), "batch": batch,
                           "mode": mode, "call": MODES[mode][0], "xla": MODES[mode][1],
                           "image_size": size, "images_per_second": speed[n],
                           "first_call_seconds": first[n], "runs": rounds,
                           "calls_per_run": candidates[n][1],
                           "spread": _spread(seconds[n]), "gmacs": macs[n] / 1e9,
                           "cores_busy": cores_busy(seconds[n], cpu[n])}
                    if n in ALTERNATIVES:
                        row["vs"] = ALTERNATIVES[n]
                        row["ratio"] = speed[n] / speed[ALTERNATIVES[n]]
                    if gemm_gflops:
                        row["gemm_fraction"] = 2 * macs[n] * speed[n] / (gemm_gflops * 1e9)
                    rows.append(row)
    return rows


def _spread(seconds) -> float:
    """(slowest - fastest) / median of the runs: how steady the machine was."""
    return (max(seconds) - min(seconds)) / statistics.median(seconds)
