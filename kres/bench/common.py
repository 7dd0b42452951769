"""What every table shares: the suites, alternated timing, and running a measurement under
another Keras backend (Keras fixes its backend when it is first imported, so a JAX figure and a
TensorFlow figure come from two processes)."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from kres.errors import KresError, suggest

BACKENDS = ("tensorflow", "jax")


class BenchmarkError(KresError):
    """A benchmark was asked for something it cannot measure, or a measurement failed."""


@dataclasses.dataclass(frozen=True)
class Suite:
    """How much to measure. Every figure is the median of ``rounds`` alternated runs; a run
    repeats its work until it lasts ``min_seconds`` (at least once)."""

    name: str
    rounds: int
    min_seconds: float
    gemm_size: int  # side of the square float32 matrices of the machine's GEMM rate
    gemm_repeats: int
    backends: tuple
    # Inference: models, image side, batches, modes (see kres.bench.inference.MODES).
    inference_models: tuple
    inference_size: int
    inference_batches: tuple
    inference_modes: tuple
    # Deployment: models, image side, quantisations per format, single-image runs per round.
    deploy_models: tuple
    deploy_size: int
    deploy_formats: dict
    deploy_repeats: int
    calibration_samples: int
    # Training: (model, image side, batch) rows, steps per run, and the main job's epochs
    # (None: the recipe's own; 0: left out).
    training_rows: tuple
    training_steps: int
    training_xla: tuple
    main_job_epochs: int | None
    # Pictures: (model, input side, (JPEG width, height), JPEG files) rows, batch, rounds.
    predict_rows: tuple
    predict_batch: int
    predict_rounds: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


ALL_QUANTIZATIONS = {"tflite": ("fp32", "fp16", "dynamic", "int8"), "onnx": ("fp32", "int8")}

SUITES = {
    # For reports: every row the tables define, at the models' real sizes.
    "full": Suite(
        name="full", rounds=5, min_seconds=1.0, gemm_size=4096, gemm_repeats=5,
        backends=BACKENDS,
        inference_models=("keras_resnet50", "resnet50", "resnet18"), inference_size=224,
        inference_batches=(1, 32), inference_modes=("predict", "function", "function_xla"),
        deploy_models=("resnet50", "resnet18"), deploy_size=224, deploy_formats=ALL_QUANTIZATIONS,
        deploy_repeats=20, calibration_samples=32,
        training_rows=(("resnet20", 32, 128), ("resnet50", 224, 8)), training_steps=10,
        training_xla=(False, True), main_job_epochs=None,
        predict_rows=(("resnet20", 32, (64, 64), 1000), ("resnet50", 224, (500, 375), 1000)),
        predict_batch=32, predict_rounds=3),
    # A few minutes on two cores: the same tables with fewer rows and runs, on TensorFlow (the
    # JAX steps took 338 of a 624 s run on a 2-core AVX2 host; --backends adds them back).
    "quick": Suite(
        name="quick", rounds=3, min_seconds=0.5, gemm_size=2048, gemm_repeats=5,
        backends=("tensorflow",),
        inference_models=("keras_resnet50", "resnet18"), inference_size=224,
        inference_batches=(1, 32), inference_modes=("function", "function_xla"),
        deploy_models=("resnet18",), deploy_size=224, deploy_formats=ALL_QUANTIZATIONS,
        deploy_repeats=10, calibration_samples=8,
        training_rows=(("resnet20", 32, 128),), training_steps=9, training_xla=(False,),
        main_job_epochs=0,
        predict_rows=(("resnet20", 32, (64, 64), 300),), predict_batch=32, predict_rounds=3),
    # Seconds: every table at toy sizes, for the test suite (figures mean nothing).
    "smoke": Suite(
        name="smoke", rounds=1, min_seconds=0.0, gemm_size=256, gemm_repeats=2,
        backends=("tensorflow",),
        inference_models=("keras_resnet50",), inference_size=32, inference_batches=(2,),
        inference_modes=("predict", "function"),
        deploy_models=("resnet18",), deploy_size=32, deploy_formats={"tflite": ("fp32", "int8")},
        deploy_repeats=2, calibration_samples=4,
        training_rows=(("resnet20", 32, 16),), training_steps=2, training_xla=(False,),
        main_job_epochs=0,
        predict_rows=(("resnet20", 32, (64, 64), 6),), predict_batch=4, predict_rounds=1),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise BenchmarkError(f"unknown suite {name!r}; accepted: {', '.join(SUITES)} "
                             f"(close: {suggest(name, SUITES)})")
    return SUITES[name]


def loadavg() -> list | None:
    """The 1, 5 and 15-minute load averages (None where the OS does not report them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def repeat_for(work, min_seconds: float) -> int:
    """How many calls of ``work`` make one run of at least ``min_seconds`` (``work`` is called
    once here, warm)."""
    start = time.perf_counter()
    work()
    once = max(time.perf_counter() - start, 1e-9)
    return max(1, int(min_seconds / once + 0.999))


def alternate(candidates: dict, rounds: int) -> tuple:
    """Run each candidate ``(work, calls)`` once per round, in turn, ``rounds`` times, in reverse
    order every other round: the wall seconds and the CPU seconds (of this process, all its
    threads) of each run, per candidate. Alternating spreads a shared machine's load changes over
    all candidates alike, so their ratios hold when their absolute figures do not; reversing the
    order keeps one candidate from always running straight after another's. (With a fixed order,
    one quick-suite run put kres' ResNet-50 at 0.79x keras.applications' identical graph under
    JAX with XLA; six rounds in alternating order put it at 0.99x.)"""
    seconds = {name: [] for name in candidates}
    cpu = {name: [] for name in candidates}
    for round_ in range(rounds):
        order = list(candidates.items())
        for name, (work, calls) in (order if round_ % 2 == 0 else order[::-1]):
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                work()
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return seconds, cpu


def cores_busy(wall: list, cpu: list) -> float:
    """Cores this process kept busy on average (CPU seconds / wall seconds of the median runs):
    on a quiet machine, below the core count means the work left cores idle (serial parts,
    waiting); on a loaded one it is the share the process got."""
    return statistics.median(cpu) / statistics.median(wall)


def timed(work) -> float:
    """Seconds of one call (the first call of a compiled function: its compilation)."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def rate(items_per_call: float, calls: int, seconds: list) -> float:
    """Items per second of the median run."""
    return items_per_call * calls / statistics.median(seconds)


def in_backend(backend: str, function: str, **kwargs):
    """``kres.bench.<function>(**kwargs)`` run in a fresh Python process with Keras on
    ``backend``; its JSON-able result. The child imports this same kres."""
    if backend not in BACKENDS:
        raise BenchmarkError(f"backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "KERAS_BACKEND": backend,
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="kres-bench-") as tmp:
        out = os.path.join(tmp, "result.json")
        with open(os.path.join(tmp, "kwargs.json"), "w") as f:
            json.dump(kwargs, f)
        proc = subprocess.run(
            [sys.executable, "-m", "kres.bench.worker", function, f.name, out], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
            raise BenchmarkError(f"{function} on the {backend} backend failed "
                                 f"(exit {proc.returncode}):\n{tail}")
        with open(out) as f:
            return json.load(f)
