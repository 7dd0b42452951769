"""Table 6, export cost: what ``kres.export.export`` itself costs for every format and
quantisation of a model, its wall seconds by step (manifest.json's ``seconds``) and its peak
memory. Each export runs in a child process of its own, whose peak resident memory (VmHWM) is the
export's (plus TensorFlow's import and building the model). Random weights, int8 calibrated on
uniform random images: the cost is measured, not the accuracy."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from kres.bench.common import in_backend, loadavg

# The suites' rows: (model, image side, calibration images). Only the full suite exports (a
# ResNet-50 export takes minutes).
ROWS = {"full": (("resnet50", 224, 200),), "quick": (), "smoke": ()}


def measure(rows) -> list:
    """One row per (model, side, calibration images), each exported in a child process."""
    return [in_backend("tensorflow", "export_cost.export_one", model=model, size=size,
                       calibration_samples=samples) for model, size, samples in rows]


def export_one(model, size, calibration_samples) -> dict:
    """Export ``model`` (built at ``size``) to every format and quantisation in this process:
    the manifest's seconds, each artifact's, the int8 tries and this process's peak memory."""
    import kres
    import kres.export

    built = kres.build(model, input_shape=(size, size, 3), include_preprocessing=True)
    calibration = np.random.default_rng(0).uniform(
        0, 255, (calibration_samples, size, size, 3)).astype(np.float32)
    start_load = loadavg()
    with tempfile.TemporaryDirectory(prefix="kres-bench-export-cost-") as tmp:
        manifest = kres.export.export(built, os.path.join(tmp, model), calibration=calibration)
    return {"model": model, "image_size": size, "calibration_samples": calibration_samples,
            "seconds": manifest.data["seconds"],
            "artifacts": {a["path"]: a["seconds"] for a in manifest.artifacts},
            "tries": {a["path"]: len(a["int8"]["tries"]) for a in manifest.artifacts
                      if "int8" in a},
            "peak_memory_bytes": peak_memory(), "load_start": start_load, "load_end": loadavg()}


def peak_memory() -> int | None:
    """This process's peak resident memory (VmHWM in /proc/self/status), in bytes; None where
    there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024
