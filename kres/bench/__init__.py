"""Measure kres against what its users would pick instead, on this machine, in one run.

>>> result = kres.bench.run("quick", json_path="bench.json")
>>> print(kres.bench.report.tables(result))

Six tables: the machine (CPU, load, float32 GEMM rate), inference in Keras (kres vs
keras.applications, predict vs a compiled function, XLA or not, TensorFlow and JAX), deployment
(TFLite and ONNX latency and size per quantisation), pictures (``kres.predict`` over a folder of
JPEG files vs the runtime alone on decoded pixels) and training (``kres.training.train`` vs a
plain ``model.fit``, backends, XLA, precision; the main job's wall time), and peers (kres /
timm on PyTorch, a PyTorch twin, onnxruntime on timm's ONNX: ``kres.bench.peers``). Every
figure is the median of alternated runs; first compilations are reported apart. Backends are measured in
child processes (Keras fixes its backend at import). ``kres benchmark`` is the command line.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

from kres.bench import export_cost, machine, report
from kres.bench.common import SUITES, BenchmarkError, Suite, get_suite, in_backend, loadavg

TABLES = ("machine", "inference", "deploy", "predict", "training", "peers", "export")

__all__ = ["BenchmarkError", "SUITES", "Suite", "TABLES", "get_suite", "profile_inference",
           "profile_training", "report", "run"]


def run(suite="quick", *, tables=TABLES, backends=None, main_job=None, json_path=None,
        log=None) -> dict:
    """Measure ``tables`` (the machine table is always measured) with ``suite`` (a name in
    SUITES or a Suite) on ``backends`` (default: the suite's); the result as a JSON-able dict,
    also written to ``json_path`` when given. ``main_job``: train the main job (resnet20 on
    digits, the default recipe) with the training table; None: when the suite does.
    ``log`` (default: stderr) gets one line per step.
    """
    suite = get_suite(suite) if isinstance(suite, str) else suite
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise BenchmarkError(f"unknown table(s) {', '.join(unknown)}; accepted: "
                             f"{', '.join(TABLES)}")
    backends = tuple(backends or suite.backends)
    log = log or (lambda line: print(f"kres.bench: {line}", file=sys.stderr, flush=True))
    log(f"suite {suite.name}; load average {loadavg()}")
    step = _Steps(log)
    with step("machine"):
        result = {"suite": suite.as_dict(), "machine": machine.measure(suite)}
    gemm = result["machine"]["gemm"]["gflops"]
    log(f"float32 GEMM {gemm:.1f} GFLOP/s")
    if "inference" in tables:
        result["inference"] = _per_backend(
            backends, "inference.measure", step, models=suite.inference_models,
            size=suite.inference_size, batches=suite.inference_batches,
            modes=suite.inference_modes, rounds=suite.rounds, min_seconds=suite.min_seconds,
            gemm_gflops=gemm)
        _versus_tensorflow(result["inference"], ("model", "batch", "mode"), "images_per_second")
    if "deploy" in tables:
        with step("deployment (TFLite, ONNX)"):
            result["deploy"] = in_backend(
                "tensorflow", "deploy.measure", models=suite.deploy_models,
                size=suite.deploy_size, formats=suite.deploy_formats,
                repeats=suite.deploy_repeats, rounds=suite.rounds,
                calibration_samples=suite.calibration_samples)
    if "predict" in tables:
        with step("pictures (kres.predict over JPEG files)"):
            result["predict"] = in_backend(
                "tensorflow", "pictures.measure", rows=suite.predict_rows,
                batch=suite.predict_batch, rounds=suite.predict_rounds)
    if "training" in tables:
        result["training"] = _per_backend(
            backends, "training.measure", step, rows=suite.training_rows,
            steps=suite.training_steps, xla_options=suite.training_xla, rounds=suite.rounds)
        _versus_plain_fit(result["training"])
        _versus_tensorflow(result["training"], ("model", "path", "xla", "precision"),
                           "images_per_second")
        if main_job or (main_job is None and suite.main_job_epochs != 0):
            with step("main job (resnet20 on digits, default recipe)"):
                result["main_job"] = in_backend("tensorflow", "training.main_job",
                                                epochs=suite.main_job_epochs or None)
    if "peers" in tables:
        result["peers"] = _peers(suite, step, log)
    export_rows = export_cost.ROWS.get(suite.name, ())
    if "export" in tables and export_rows:
        with step("export cost (kres.export.export, every format)"):
            result["export"] = export_cost.measure(export_rows)
    result["machine"]["load_end"] = loadavg()
    result["seconds"] = step.seconds
    log(f"done in {sum(step.seconds.values()):.0f} s; load average "
        f"{result['machine']['load_end']}")
    if json_path:
        _write_json(json_path, result)
    return result


def _peers(suite, step, log) -> dict:
    """The peer rows (kres.bench.peers) of ``suite``, or {"skipped": why}."""
    from kres.bench import peers

    if peers.PEER_SUITES.get(suite.name) is None:
        result = {"skipped": f"the {suite.name} suite has no peer rows (quick and full have)"}
    else:
        with step("peers (timm on PyTorch, onnxruntime on timm's ONNX, PyTorch twins)"):
            result = in_backend("tensorflow", "peers.measure", suite=suite.name,
                                rounds=suite.rounds, min_seconds=suite.min_seconds,
                                training_steps=suite.training_steps,
                                deploy_size=suite.deploy_size,
                                calibration_samples=suite.calibration_samples)
    if "skipped" in result:
        log(result["skipped"])
    return result


def profile_training(*, json_path=None, **kwargs) -> dict:
    """:func:`kres.bench.profile.training_ops` (``kwargs``: model, size, batch, steps,
    inter_op_threads) in a TensorFlow process of its own; also written to ``json_path``."""
    result = in_backend("tensorflow", "profile.training_ops", **kwargs)
    if json_path:
        _write_json(json_path, result)
    return result


def profile_inference(*, json_path=None, gemm=True, **kwargs) -> dict:
    """:func:`kres.bench.profile.inference_ops` (``kwargs``: model, size, batch, steps,
    inter_op_threads) in a TensorFlow process of its own, its convolutions compared with this
    machine's float32 GEMM rate (measured first, unless ``gemm`` is False); also written to
    ``json_path``."""
    if gemm:
        kwargs["gemm_gflops"] = machine.gemm_rate()["gflops"]
    result = in_backend("tensorflow", "profile.inference_ops", **kwargs)
    if json_path:
        _write_json(json_path, result)
    return result


def _write_json(path, result):
    from kres.files import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=2))


class _Steps:
    """``with step(name):`` logs the step, then how long it took; ``seconds`` keeps
    {step: seconds} (the JSON's ``seconds``: where a suite's time goes)."""

    def __init__(self, log):
        self.log, self.seconds = log, {}

    @contextlib.contextmanager
    def __call__(self, name):
        self.log(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.log(f"{name}: {self.seconds[name]:.0f} s")


def _per_backend(backends, function, step, **kwargs) -> list:
    """The rows of ``function`` measured on each backend in turn, each in its own process."""
    rows = []
    for backend in backends:
        with step(f"{function.split('.')[0]}, {backend} backend"):
            rows += in_backend(backend, function, **kwargs)
    return rows


def _versus_tensorflow(rows, keys, figure):
    """Each non-TensorFlow row gets ``vs_tensorflow``: its figure over the TensorFlow row's."""
    tf_rows = {tuple(r[k] for k in keys): r for r in rows if r["backend"] == "tensorflow"}
    for row in rows:
        twin = tf_rows.get(tuple(row[k] for k in keys))
        if row["backend"] != "tensorflow" and twin is not None:
            row["vs_tensorflow"] = row[figure] / twin[figure]


def _versus_plain_fit(rows):
    """Each training row gets ``vs_plain_fit``: its images/s over plain ``model.fit`` without
    XLA, same model, backend and precision."""
    plain = {(r["model"], r["backend"], r["precision"]): r for r in rows
             if r["path"] == "model.fit" and not r["xla"]}
    for row in rows:
        twin = plain.get((row["model"], row["backend"], row["precision"]))
        if twin is not None:
            row["vs_plain_fit"] = row["images_per_second"] / twin["images_per_second"]
