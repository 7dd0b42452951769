"""Issue 5: quantised, verified TFLite / ONNX / SavedModel artifacts with a manifest.

One resnet20 is trained on digits (~45 s) and exported once in every format; most tests read that
export. Under xdist both workers share them: the first builds them under a file lock.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from filelock import FileLock

import kres
import kres.data
import kres.export
from kres.export import ExportError, IntegrityError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def shared(tmp_path_factory, worker_id):
    """A directory all xdist workers of this session see."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def once(path, make):
    """``path``, made by ``make(path)`` by whichever worker gets here first."""
    with FileLock(f"{path}.lock"):
        if not path.exists():
            make(path)
    return path


def train_digits_run(run):
    """A training run directory: resnet20 trained on digits (~95 % test accuracy) as best.keras,
    with the config.json a kres training run writes beside it."""
    import keras

    keras.utils.set_random_seed(0)
    model = kres.build("resnet20", input_shape=(32, 32, 1), num_classes=10,
                       include_preprocessing=True)
    x, y = kres.data.arrays("digits", "train")
    epochs, steps = 7, -(-len(x) // 64)
    # 5 epochs at 2e-3 then 2 at 2e-4: settled weights and BatchNorm statistics, so the
    # model's margins (and int8 agreement) do not depend on where training stopped.
    lr = keras.optimizers.schedules.PiecewiseConstantDecay([steps * (epochs - 2)], [2e-3, 2e-4])
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    partial = run.with_name(run.name + ".partial")
    partial.mkdir()
    model.save(partial / "best.keras")
    (partial / "config.json").write_text(json.dumps(
        {"config": {"model": "resnet20", "data": "digits", "image_size": None,
                    "data_dir": None}, "resolved": {}}))
    partial.rename(run)


@pytest.fixture(scope="session")
def digits_run(shared):
    return once(shared / "digits-resnet20-run", train_digits_run)


@pytest.fixture(scope="session")
def digits_model(digits_run):
    return kres.export.load(digits_run / "best.keras").model


@pytest.fixture(scope="session")
def held_out():
    return kres.data.arrays("digits", "test")


@pytest.fixture(scope="session")
def keras_logits(digits_model, held_out):
    return digits_model.predict(held_out[0], verbose=0)


@pytest.fixture(scope="session")
def manifest(digits_run, shared):
    """Every format and quantisation of the digits model; data comes from the run's config."""
    out = once(shared / "digits-resnet20-export",
               lambda out: kres.export.export(digits_run / "best.keras", out))
    return kres.export.Manifest.read(out)


def tree(path):
    """{relative path: bytes} of every file under ``path``: what 'left as it was' compares."""
    return {os.path.relpath(os.path.join(r, f), path): open(os.path.join(r, f), "rb").read()
            for r, _, files in os.walk(path) for f in files}


def run_cli(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, **kwargs)


# 1. fp32 artifacts match Keras; quantised ones load and run.

@pytest.mark.parametrize("format", ["saved_model", "tflite", "onnx"])
def test_fp32_artifact_matches_keras_to_1e4(manifest, format, held_out, keras_logits):
    logits = kres.export.load(manifest.artifact(format, "fp32")).predict(held_out[0])
    assert logits.shape == (269, 10)
    assert np.abs(logits - keras_logits).max() <= 1e-4


@pytest.mark.parametrize("format,quantization", [
    ("tflite", "fp16"), ("tflite", "dynamic"), ("tflite", "int8"), ("onnx", "int8")])
def test_quantised_artifact_runs_in_its_runtime(manifest, format, quantization, held_out):
    runner = kres.export.load(manifest.artifact(format, quantization))
    assert runner.format == format
    logits = runner.predict(held_out[0][:5])
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    assert np.isfinite(logits).all()


# 2. int8 on the digits model: small and faithful.

@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_int8_file_is_at_most_27_percent_of_fp32(manifest, format):
    size = {q: os.path.getsize(manifest.artifact(format, q)) for q in ("fp32", "int8")}
    assert size["int8"] <= 0.27 * size["fp32"]


@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_int8_agrees_with_keras_on_98_percent_of_test_images(manifest, format, held_out,
                                                             keras_logits):
    logits = kres.export.load(manifest.artifact(format, "int8")).predict(held_out[0])
    assert (logits.argmax(1) == keras_logits.argmax(1)).mean() >= 0.98


def test_int8_accuracy_stays_within_a_point_of_keras(manifest):
    keras_accuracy = manifest.data["source"]["keras"]["accuracy"]
    assert keras_accuracy >= 0.9
    for a in manifest.artifacts:
        assert a["accuracy"] >= keras_accuracy - 0.01, a["path"]


def test_tflite_files_use_builtin_ops_only(manifest):
    from tensorflow.lite.tools import flatbuffer_utils

    for q in ("fp32", "fp16", "dynamic", "int8"):
        model = flatbuffer_utils.read_model(manifest.artifact("tflite", q))
        assert [c.customCode for c in model.operatorCodes if c.customCode] == []


def test_onnx_int8_is_per_channel_qdq_with_uint8_activations_and_int8_weights(manifest):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(manifest.artifact("onnx", "int8")).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "QLinearConv" not in ops
    float_weights = [n.input[1] for n in graph.node
                     if n.op_type == "Conv" and n.input[1] in initializers]
    assert float_weights == []  # every Conv reads a dequantised tensor, not a float initializer
    weights = [(initializers[n.input[0]], initializers[n.input[1]]) for n in graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in initializers
               and initializers[n.input[0]].dtype == np.int8]
    assert len(weights) == 20  # resnet20's 19 convolutions and its classifier
    assert all(s.shape == (w.shape[0],) for w, s in weights if w.ndim == 4)  # per channel
    activations = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert {initializers[n.input[2]].dtype for n in activations} == {np.dtype(np.uint8)}


def test_every_artifact_names_its_input_and_output_like_the_keras_model(manifest):
    for a in manifest.artifacts:
        runner = kres.export.load(os.path.join(os.path.dirname(manifest.path), a["path"]))
        assert [t["name"] for t in runner.inputs + runner.outputs] == ["images", "predictions"]
        assert (a["inputs"], a["outputs"]) == (runner.inputs, runner.outputs)


def test_onnx_has_named_input_dynamic_batch_and_opset_17(manifest):
    import onnx

    for q in ("fp32", "int8"):
        model = onnx.load(manifest.artifact("onnx", q))
        (value,) = model.graph.input
        assert value.name == "images"
        assert [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] == [
            "batch", 32, 32, 1]
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]


def test_tflite_int8_with_uint8_io_takes_pixel_values(digits_model, tmp_path, held_out,
                                                      keras_logits):
    calibration, _ = kres.data.arrays("digits", "train", limit=100)
    path = kres.export.to_tflite(digits_model, tmp_path / "m.tflite", "int8", io="uint8",
                                 calibration=calibration)
    runner = kres.export.load(path)
    assert runner.inputs[0]["dtype"] == "uint8" and runner.outputs[0]["dtype"] == "uint8"
    # Calibrated on raw pixels 0..255: one uint8 step is one pixel value.
    assert runner.inputs[0]["quantization"] == {"scale": 1.0, "zero_point": 0}
    logits = runner.predict(held_out[0])
    assert (logits.argmax(1) == keras_logits.argmax(1)).mean() >= 0.98


# The manifest.

def test_manifest_describes_every_artifact_by_its_bytes(manifest):
    directory = os.path.dirname(manifest.path)
    assert sorted((a["format"], a["quantization"]) for a in manifest.artifacts) == [
        ("onnx", "fp32"), ("onnx", "int8"), ("saved_model", "fp32"), ("tflite", "dynamic"),
        ("tflite", "fp16"), ("tflite", "fp32"), ("tflite", "int8")]
    for a in manifest.artifacts:
        path = os.path.join(directory, a["path"])
        assert a["sha256"] == kres.export.sha256_of(path)
        assert a["latency_ms"] > 0 and a["threads"] == 2
        assert a["inputs"][0]["shape"] == [None, 32, 32, 1]
        assert a["outputs"][0]["shape"] == [None, 10]
    assert sorted(os.listdir(directory)) == sorted(
        [a["path"] for a in manifest.artifacts] + ["labels.txt", "manifest.json"])


def test_manifest_records_source_preprocessing_labels_and_converters(manifest):
    data = manifest.data
    assert data["source"]["name"] == "resnet20"
    assert data["source"]["run_config"]["data"] == "digits"
    assert data["preprocessing"]["inside_model"] is True
    assert data["calibration"] == {"source": "digits:train", "samples": 200}
    assert data["verification"]["source"] == "digits:test"
    assert data["verification"]["samples"] == 269
    labels = open(os.path.join(os.path.dirname(manifest.path), "labels.txt")).read()
    assert labels.split() == [str(i) for i in range(10)]
    assert set(data["converters"]) == {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime",
                                       "ai-edge-litert"}
    assert all(data["converters"].values())


def test_table_lists_size_accuracy_and_latency_of_every_artifact(manifest):
    table = manifest.table()
    for a in manifest.artifacts:
        line = next(line for line in table.splitlines() if line.startswith(a["path"] + " "))
        assert f"{a['accuracy']:.2%}" in line and f"{a['latency_ms']:.2f} ms" in line


# 3. Failed or interrupted exports leave nothing behind.

def test_miscalibrated_export_fails_and_writes_nothing(digits_run, tmp_path):
    calibration, _ = kres.data.arrays("digits", "train", limit=100)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"resnet20_int8\.tflite: top-1 agreement"):
        # The classic mistake: images scaled to [0, 1] for a model that takes [0, 255].
        kres.export.export(digits_run / "best.keras", out, formats="tflite", quantize="int8",
                           calibration=calibration / 255.0)
    assert os.listdir(tmp_path) == []


def test_cli_names_the_failing_artifact_and_keeps_the_previous_export(manifest, digits_run,
                                                                      tmp_path):
    out = tmp_path / "digits-resnet20"
    shutil.copytree(os.path.dirname(manifest.path), out)
    before = tree(out)
    result = run_cli(digits_run / "best.keras", "--out", out, "--formats", "tflite",
                     "--quantize", "fp32", "--verify-samples", "20", "--max-abs-diff", "1e-12",
                     "--max-rel-diff", "0")
    assert result.returncode == 1
    assert "resnet20_fp32.tflite: max abs difference from Keras" in result.stderr
    assert tree(out) == before
    assert os.listdir(tmp_path) == ["digits-resnet20"]


def test_interrupted_export_leaves_out_as_it_was(manifest, digits_run, tmp_path):
    out = tmp_path / "digits-resnet20"
    shutil.copytree(os.path.dirname(manifest.path), out)
    before = tree(out)
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "export.py"),
                                str(digits_run / "best.keras"), "--out", str(out)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not any(".partial-" in name for name in os.listdir(tmp_path)):
        assert process.poll() is None and time.time() < deadline, "export never started"
        time.sleep(0.2)
    time.sleep(1.0)  # in the middle of converting
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 130
    assert tree(out) == before
    assert os.listdir(tmp_path) == ["digits-resnet20"]


def test_exporting_again_replaces_the_previous_export(digits_run, tmp_path):
    out = tmp_path / "out"
    for formats in ("onnx", "tflite"):
        manifest = kres.export.export(digits_run / "best.keras", out, formats=formats,
                                      quantize="fp32", verify_samples=20, latency_repeats=3)
    assert [a["path"] for a in manifest.artifacts] == ["resnet20_fp32.tflite"]
    assert sorted(os.listdir(out)) == ["labels.txt", "manifest.json", "resnet20_fp32.tflite"]
    assert os.listdir(tmp_path) == ["out"]


def test_refuses_to_replace_a_directory_that_is_not_an_export(digits_run, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not a kres export"):
        kres.export.export(digits_run / "best.keras", tmp_path, formats="onnx", quantize="fp32")
    assert os.listdir(tmp_path) == ["notes.txt"]


# 4. Corrupted artifacts are refused.

@pytest.fixture
def export_copy(manifest, tmp_path):
    out = tmp_path / "export"
    shutil.copytree(os.path.dirname(manifest.path), out)
    return out


def test_load_refuses_a_tampered_tflite_file(export_copy):
    path = export_copy / "resnet20_int8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="modified or truncated"):
        kres.export.load(path)


def test_load_refuses_a_truncated_onnx_file(export_copy):
    path = export_copy / "resnet20_fp32.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(IntegrityError, match="1000 bytes"):
        kres.export.load(path)


def test_load_refuses_a_saved_model_with_a_changed_file(export_copy):
    with open(export_copy / "saved_model" / "saved_model.pb", "ab") as f:
        f.write(b"\0")
    with pytest.raises(IntegrityError, match="modified or truncated"):
        kres.export.load(export_copy / "saved_model")


def test_load_refuses_a_file_the_manifest_does_not_list(export_copy):
    shutil.copy(export_copy / "resnet20_fp32.onnx", export_copy / "other.onnx")
    with pytest.raises(IntegrityError, match="not listed"):
        kres.export.load(export_copy / "other.onnx")


# 5. Bad input.

def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="model file not found: .*missing.keras"):
        kres.export.export(tmp_path / "missing.keras", tmp_path / "out")


def test_cli_reports_a_missing_model_file(tmp_path):
    result = run_cli(tmp_path / "missing.keras", "--out", tmp_path / "out")
    assert result.returncode == 1
    assert "model file not found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("argument,value,message", [
    ("formats", "tflite,coreml", "formats: unknown 'coreml'; accepted: saved_model, tflite, onnx"),
    ("quantize", "int4", "quantize: unknown 'int4'; accepted: fp32, fp16, dynamic, int8"),
    ("io", "int16", "io='int16' is not supported; accepted: float, int8, uint8"),
])
def test_unknown_choice_names_the_argument_and_what_it_accepts(digits_run, tmp_path, argument,
                                                               value, message):
    with pytest.raises(ExportError, match=message.replace("(", r"\(")):
        kres.export.export(digits_run / "best.keras", tmp_path / "out", **{argument: value})


def test_dataset_that_does_not_fit_the_model_is_a_clear_error(tmp_path):
    rgb = kres.build("resnet20", input_shape=(32, 32, 3), num_classes=10)
    with pytest.raises(ExportError, match="digits.* 1-channel images .* takes 3 channels"):
        kres.export.export(rgb, tmp_path / "out", data="digits")


def test_int8_without_real_calibration_data_is_refused(digits_model, tmp_path):
    with pytest.raises(ExportError, match="int8 needs real calibration images"):
        kres.export.export(digits_model, tmp_path / "out", quantize="int8")
    with pytest.raises(ExportError, match="needs calibration images"):
        kres.export.to_tflite(digits_model, tmp_path / "m.tflite", "int8")


def test_load_rejects_an_unknown_file_type(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ExportError, match=r"cannot tell the format .*\.tflite, \.onnx, \.keras"):
        kres.export.load(tmp_path / "model.pt")


# A model name: a freshly built model, verified on generated images.

def test_model_name_exports_a_fresh_model_verified_on_generated_images(tmp_path):
    manifest = kres.export.export("resnet20", tmp_path / "out", formats="tflite,onnx",
                                  quantize="fp32,dynamic", verify_samples=8, latency_repeats=3)
    assert [(a["format"], a["quantization"]) for a in manifest.artifacts] == [
        ("tflite", "fp32"), ("tflite", "dynamic"), ("onnx", "fp32")]
    assert manifest.data["verification"]["source"].startswith("generated")
    assert manifest.data["labels"] is None
    assert all(a["accuracy"] is None for a in manifest.artifacts)
    assert max(a["max_abs_diff"] for a in manifest.artifacts if a["quantization"] == "fp32") <= 1e-4


def test_model_name_with_data_is_built_for_the_dataset(tmp_path):
    manifest = kres.export.export("resnet20", tmp_path / "out", data="digits", formats="onnx",
                                  quantize="fp32", verify_samples=20, latency_repeats=3)
    assert manifest.data["source"]["input_shape"] == [32, 32, 1]
    assert manifest.data["source"]["output_shape"] == [10]
    assert manifest.artifacts[0]["max_abs_diff"] <= 1e-4
