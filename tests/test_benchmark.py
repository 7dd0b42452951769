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


def test_pytorch_twin_of_resnet20_has_kres_parameter_count():
    pytest.importorskip("torch")
    import kres
    from kres.bench.torch_peers import trainable_params, twin

    for channels in (1, 3):
        model = kres.build("resnet20", input_shape=(32, 32, channels), num_classes=10)
        kres_params = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
        assert trainable_params(twin("resnet20", channels, 10)) == kres_params


def test_peer_rows_are_kres_over_peer_from_figures_measured_alternated():
    pytest.importorskip("torch")
    from kres.bench import report
    from kres.bench.common import in_backend

    rows = in_backend("tensorflow", "peers.inference", models=["resnet18"], size=32,
                      batches=[2], rounds=1, min_seconds=0.0, threads=1)
    assert [(r["model"], r["batch"], r["peer"]) for r in rows] == [
        ("resnet18", 2, "timm, PyTorch channels-last"), ("resnet18", 2, "timm, PyTorch contiguous")]
    for row in rows:
        assert positive(row["kres_per_second"]) and positive(row["peer_per_second"])
        assert row["ratio"] == row["kres_per_second"] / row["peer_per_second"]
        assert row["threads"] == 1 and row["kres"] == "kres, TensorFlow"
    text = report.peers({"peers": {"threads": 1, "rows": rows}})
    assert "pinned to 1 thread(s)" in text and f"| {rows[0]['ratio']:.2f} |" in text


def test_training_peer_runs_alternate_after_a_compiling_round():
    from kres.bench import report
    from kres.bench.peers import _train_seconds

    calls = []

    def candidate(name, seconds):
        def work():
            calls.append(name)
            return seconds
        return work

    got = _train_seconds({"fit": candidate("fit", 1.0), "twin": candidate("twin", 2.0)},
                         rounds=3)
    assert got == {"fit": [1.0] * 3, "twin": [2.0] * 3}  # round 0 (compiling) is not kept
    assert calls == ["fit", "twin", "twin", "fit", "fit", "twin", "twin", "fit"]
    row = {"table": "training", "model": "resnet20", "image_size": 32, "batch": 128,
           "kres": "kres model.fit", "peer": "PyTorch twin", "kres_per_second": 600.0,
           "peer_per_second": 500.0, "ratio": 1.2, "ratio_low": 0.95, "ratio_high": 1.31}
    assert "| 1.20 (0.95-1.31) |" in report.peers({"peers": {"threads": 2, "rows": [row]}})


def test_peer_rows_without_torch_are_skipped_with_one_line():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from kres.bench import peers\n"
            "print(peers.unavailable())\n"
            "print(peers.measure('quick', 1, 0, 1, 32, 1))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-2000:]
    reason, result = proc.stdout.strip().splitlines()
    assert reason == ("peer rows skipped: torch is not installed (pip install 'kres[bench]' "
                      "installs torch and timm)")
    assert result == repr({"skipped": reason})


def test_inference_profile_sums_op_time_and_rates_the_convolutions():
    from kres.bench import profile_inference, report

    result = profile_inference(model="resnet20", size=32, batch=4, steps=2, gemm=False)
    assert math.isclose(sum(o["share"] for o in result["ops"]), 1.0)
    convolutions = sum(o["count"] for o in result["ops"] if "Conv2D" in o["family"])
    assert convolutions == 19 * 2  # resnet20's 19 convolutions, once per call
    by_kernel = {c["kernel"]: c for c in result["convolutions"]}
    assert set(by_kernel) == {"3x3", "dense"} and by_kernel["3x3"]["layers"] == 19
    assert positive(by_kernel["3x3"]["gflops"])
    text = report.ops(result)
    assert "resnet20 inference, 32x32, batch 4" in text and "| 3x3 | 19 |" in text


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
