"""Table 3, deployment: single-image latency and file size of each TFLite and ONNX artifact of
a model, as ``kres.export.export`` writes and verifies them, each compared with the fp32 file
of its format. Runs on the TensorFlow backend (the converters need it)."""

from __future__ import annotations

import os
import statistics
import tempfile

import numpy as np

from kres.machine import cpu_info


def measure(models, size, formats, repeats, rounds, calibration_samples, threads=None) -> list:
    """One row per (model, format, quantisation). Latency: ``repeats`` single-image runs per
    round (``Runner.latency``), ``rounds`` rounds alternating over the artifacts; the row holds
    the median over rounds of each round's median and 90th percentile.

    int8 files are calibrated on uniform random images: they are timed, not judged for
    accuracy (the export's own tests judge that on real data)."""
    import kres
    import kres.export

    threads = threads or os.cpu_count() or 1
    quantize = sorted({q for qs in formats.values() for q in qs},
                      key=kres.export.QUANTIZATIONS.index)
    rng = np.random.default_rng(0)
    rows = []
    for name in models:
        model = kres.build(name, input_shape=(size, size, 3), include_preprocessing=True)
        calibration = rng.uniform(0, 255, (calibration_samples, size, size, 3)).astype(np.float32)
        with tempfile.TemporaryDirectory(prefix="kres-bench-export-") as tmp:
            out = os.path.join(tmp, name)
            manifest = kres.export.export(
                model, out, formats=tuple(formats), quantize=quantize, calibration=calibration,
                verify_samples=2, latency_repeats=1, threads=threads)
            artifacts = [(a["format"], a["quantization"], a["bytes"])
                         for a in manifest.data["artifacts"]
                         if a["format"] in formats and a["quantization"] in formats[a["format"]]]
            runners = {(f, q): kres.export.load(manifest.artifact(f, q), threads=threads)
                       for f, q, _ in artifacts}
            image = calibration[:1]
            samples = {key: [] for key in runners}
            for _ in range(rounds):
                for key, runner in runners.items():
                    samples[key].append(runner.latency(image, repeats=repeats, warmup=2))
        for fmt, quantization, size_bytes in artifacts:
            got = samples[(fmt, quantization)]
            median = statistics.median(s["median_ms"] for s in got)
            reference = samples[(fmt, "fp32")] if (fmt, "fp32") in samples else got
            rows.append({
                "model": name, "format": fmt, "quantization": quantization, "image_size": size,
                "median_ms": median, "p90_ms": statistics.median(s["p90_ms"] for s in got),
                "bytes": size_bytes, "threads": threads, "runtime": got[0]["runtime"],
                "delegate": got[0]["delegate"], "runs": rounds, "repeats_per_run": repeats,
                "speedup_vs_fp32": statistics.median(s["median_ms"] for s in reference) / median,
                "size_vs_fp32": size_bytes / next(b for f, q, b in artifacts
                                                  if f == fmt and q == "fp32"),
                "cpu_flags": cpu_info()["flags"]})
    return rows
