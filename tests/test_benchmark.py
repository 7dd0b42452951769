"""tools/benchmark.py: every table measured at toy sizes, as JSON whose figures are all usable.
No timing is asserted (figures depend on the machine and its load)."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The figures of each table's rows: all must be positive and finite.
FIGURES = {
    "inference": ("images_per_second", "first_call_seconds", "gmacs", "gemm_fraction", "ratio",
                  "cores_busy"),
    "deploy": ("median_ms", "p90_ms", "bytes", "speedup_vs_fp32", "size_vs_fp32"),
    "predict": ("images_per_second", "runtime_images_per_second", "vs_runtime",
                "decode_images_per_second", "cores_busy"),
    "training": ("images_per_second", "first_seconds", "vs_plain_fit", "cores_busy"),
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "benchmark.py"),
                           "--suite", "smoke", "--json", str(path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with open(path) as f:
        return json.load(f), proc.stdout


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_smoke_suite_measures_every_table_with_usable_figures(smoke):
    result, stdout = smoke
    machine = result["machine"]
    assert set(machine["cpu"]) == {"model", "arch", "cores", "flags"}
    assert positive(machine["gemm"]["gflops"])
    assert len(machine["load_start"]) == 3 and len(machine["load_end"]) == 3
    # The smoke suite's rows: every (model, batch, mode) of inference, both alternatives.
    assert [(r["model"], r["mode"]) for r in result["inference"]] == [
        ("keras_resnet50", "predict"), ("keras.applications.ResNet50", "predict"),
        ("keras_resnet50", "function"), ("keras.applications.ResNet50", "function")]
    assert [(r["format"], r["quantization"]) for r in result["deploy"]] == [
        ("tflite", "fp32"), ("tflite", "int8")]
    assert [(r["model"], r["file"], r["images"]) for r in result["predict"]] == [
        ("resnet20", "tflite int8", 6), ("resnet20", "onnx fp32", 6), ("resnet20", "keras", 6)]
    # Training: both paths in float32, and in mixed bfloat16 too where the CPU has bfloat16
    # instructions (the flags the benchmark itself reads).
    from kres.bench.training import precisions

    assert [(r["path"], r["xla"], r["precision"]) for r in result["training"]] == [
        *(("kres.training.train", False, p) for p in precisions()),
        *(("model.fit", False, p) for p in precisions())]
    for table, figures in FIGURES.items():
        for row in result[table]:
            for name in figures:
                if name in row:
                    assert positive(row[name]), (table, name, row)
    assert all("ratio" in r for r in result["inference"] if r["model"] == "keras_resnet50")
    # Where the suite's time went: one entry per step, in the order they ran.
    assert list(result["seconds"]) == ["machine", "inference, tensorflow backend",
                                       "deployment (TFLite, ONNX)",
                                       "pictures (kres.predict over JPEG files)",
                                       "training, tensorflow backend"]
    assert all(positive(s) for s in result["seconds"].values())
    deploy = {r["quantization"]: r for r in result["deploy"]}
    assert deploy["fp32"]["speedup_vs_fp32"] == 1.0 and deploy["fp32"]["size_vs_fp32"] == 1.0
    assert deploy["int8"]["size_vs_fp32"] < 0.5  # int8 weights: a quarter of the bytes, roughly
    for heading in ("## Machine", "## Inference (Keras)", "## Deployment",
                    "## Pictures (kres.predict)", "## Training",
                    "load average at end"):
        assert heading in stdout


def test_unknown_suite_is_one_clear_error():
    from kres.bench import BenchmarkError, run

    with pytest.raises(BenchmarkError, match="unknown suite 'quik'; accepted: full, quick, smoke"):
        run("quik")
    with pytest.raises(BenchmarkError, match="unknown table.*accepted: machine, inference"):
        run("smoke", tables=("speed",))


def test_alternated_runs_reverse_their_order_every_other_round():
    from kres.bench.common import alternate

    calls = []
    candidates = {name: (lambda name=name: calls.append(name), 2) for name in ("a", "b", "c")}
    seconds, cpu = alternate(candidates, rounds=3)
    assert calls == ["a", "a", "b", "b", "c", "c", "c", "c", "b", "b", "a", "a",
                     "a", "a", "b", "b", "c", "c"]
    assert {name: len(runs) for name, runs in seconds.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(len(cpu[name]) == 3 for name in candidates)


def test_training_profile_sums_op_time_by_op_type():
    from kres.bench import profile_training, report

    result = profile_training(steps=2, batch=16)
    # TensorFlow's own kernel (Conv2D) or oneDNN's (_MklNativeConv2D, on Intel CPUs): the
    # family is the op type either way.
    families = {o["family"] for o in result["ops"]}
    assert {"Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput"} <= families
    forward = sum(o["count"] for o in result["ops"] if o["family"] == "Conv2D")
    assert forward == 19 * 2  # resnet20's 19 convolutions, once per step
    assert math.isclose(sum(o["share"] for o in result["ops"]), 1.0)
    assert all(positive(o["seconds"]) for o in result["ops"])
    assert [o["seconds"] for o in result["ops"]] == sorted(
        (o["seconds"] for o in result["ops"]), reverse=True)
    backprop = next(o["op"] for o in result["ops"] if o["family"] == "Conv2DBackpropFilter")
    assert f"| {backprop} |" in report.ops(result)


def test_export_cost_table_has_a_row_per_step_and_the_total_with_peak_memory(manifest):
    from kres.bench import export_cost, report

    seconds = manifest.data["seconds"]
    row = {"model": "resnet20", "image_size": 32, "calibration_samples": 200,
           "seconds": seconds, "artifacts": {a["path"]: a["seconds"] for a in manifest.artifacts},
           "tries": {a["path"]: len(a["int8"]["tries"]) for a in manifest.artifacts
                     if "int8" in a},
           "peak_memory_bytes": export_cost.peak_memory(), "load_start": None, "load_end": None}
    lines = report.export_cost({"export": [row]}).splitlines()[2:]
    steps = [k for k in seconds if k != "total"]
    assert [line.split(" | ")[1] for line in lines] == [*steps, "**total**"]
    assert f"| {seconds['total']:.1f} | 100% | peak memory " in lines[-1]
    int8 = next(line for line in lines if "_int8.tflite" in line)
    assert "calibration " in int8 and " int8 tr" in int8
    assert row["peak_memory_bytes"] > 0
