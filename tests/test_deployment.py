"""The deployment report (what runs on which accelerator, what it costs) and the model card.

The main job's export is read as it is (the ``manifest`` fixture); the other files are converted
here from small models: one with an op the GPU delegate rejects, resnet20 at two input sizes,
and keras.applications' ResNet50 converted straight to .tflite, not made by kres.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

import kres
import kres.export
from kres.cli import export as export_cli
from kres.export import deployment


def by_file(manifest, fmt, quantization):
    return next(a for a in manifest.artifacts
                if (a["format"], a["quantization"]) == (fmt, quantization))


def convert(model, path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with open(path, "wb") as f:
        f.write(converter.convert())
    return path


# ------------------------------------------------------------------------------ the main job


def test_every_tflite_and_onnx_file_of_the_export_has_a_report_and_a_card(manifest):
    for a in manifest.artifacts:
        assert ("deployment" in a) == (a["format"] != "saved_model"), a["path"]
    assert manifest.data["card"] == "README.md"
    assert os.path.isfile(os.path.join(os.path.dirname(manifest.path), "README.md"))


def test_demo_prints_the_deployment_table_after_the_manifest_table(main_job, manifest):
    assert main_job.returncode == 0, main_job.stderr[-3000:]
    table = manifest.deployment_table()
    assert table in main_job.stdout
    assert main_job.stdout.index("top-1 agree") < main_job.stdout.index(table.splitlines()[0])


def test_the_int8_tflite_file_is_integer_from_input_quantize_to_output_dequantize(manifest):
    report = by_file(manifest, "tflite", "int8")["deployment"]["integer_only"]
    assert report["integer_only"] and report["float_ops"] == {}
    assert report["input_quantize"] and report["output_dequantize"]
    assert not report["integer_io"]  # float I/O: --io float, the default
    assert report["input_signature"] == [[-1, 32, 32, 1]]  # the batch is dynamic, said so
    assert not report["static_input_shape"]


def test_the_float_files_are_not_integer_only_and_the_fp32_one_is_gpu_compatible(manifest):
    fp32 = by_file(manifest, "tflite", "fp32")["deployment"]
    assert fp32["gpu"] == {"compatible": True, "incompatible": [],
                           "checker": fp32["gpu"]["checker"]}
    assert not fp32["integer_only"]["integer_only"]
    assert fp32["integer_only"]["float_ops"]["CONV_2D"] == 19


def test_xnnpack_takes_every_op_of_resnet20_but_the_two_shortcut_max_pools(manifest):
    for quantization in ("fp32", "int8"):
        plan = by_file(manifest, "tflite", quantization)["deployment"]["xnnpack"]
        assert plan["on_cpu"] == {"MAX_POOL_2D": 2}
        assert plan["delegated"] == plan["ops"] - 2 and plan["partitions"] == 3


def test_cost_is_the_same_network_in_every_tflite_file_and_the_arena_shrinks_with_int8(
        manifest):
    reports = {a["quantization"]: a["deployment"]["cost"] for a in manifest.artifacts
               if a["format"] == "tflite"}
    assert {c["parameters"] for c in reports.values()} == {268_746}  # BatchNorm folded
    assert {c["macs"] for c in reports.values()} == {40_256_128}
    assert reports["int8"]["arena_bytes"] * 3 < reports["fp32"]["arena_bytes"]
    # fp16 weights are dequantised into a buffer of their own, not into the activations'
    assert reports["fp16"]["arena_bytes"] == reports["fp32"]["arena_bytes"]


def test_the_edge_tpu_rules_flag_the_two_channel_pads_and_global_pooling_is_a_mean(manifest):
    tpu = by_file(manifest, "tflite", "int8")["deployment"]["edge_tpu"]
    assert [p["op"] for p in tpu["flagged"]] == ["PAD", "PAD"]
    assert tpu["global_pool"] == "MEAN over height and width"


def test_onnx_int8_is_quantised_and_runs_every_node_on_the_cpu_provider(manifest):
    report = by_file(manifest, "onnx", "int8")["deployment"]
    share = report["quantized_nodes"]
    # all but the input's normalisation and the classifier, whose logits are left in float
    assert share["quantized"] >= share["compute"] - 2 > 30
    assert report["providers"]["all_on_requested"]
    assert report["providers"]["by_provider"] == {"CPUExecutionProvider":
                                                  report["providers"]["nodes"]}
    assert report["opset"] == 17 and report["cost"]["parameters"] == 268_746


# ------------------------------------------------------------------------------ the model card


def card_parts(manifest):
    text = open(os.path.join(os.path.dirname(manifest.path), "README.md")).read()
    front, body = re.fullmatch(r"---\n(.*?)\n---\n(.*)", text, re.S).groups()
    return yaml.safe_load(front), body


def test_the_card_front_matter_is_yaml_in_the_hugging_face_layout(manifest):
    front, _ = card_parts(manifest)
    assert front["license"] == "apache-2.0"  # trained by kres: the project's licence
    assert front["library_name"] == "tflite"
    assert front["datasets"] == ["digits"] and front["metrics"] == ["accuracy"]
    assert {"image-classification", "tflite", "onnx", "int8"} <= set(front["tags"])


def test_the_card_states_each_file_with_the_manifest_figures(manifest):
    _, body = card_parts(manifest)
    for a in manifest.artifacts:
        assert a["sha256"] in body and f"{a['bytes']:,} B" in body
        assert f"{a['latency']['median_ms']:.2f} ms" in body
    assert "40,256,128" in body and manifest.data["machine"]["model"] in body
    assert manifest.deployment_table() in body


def test_the_card_python_snippet_runs_against_the_real_files(manifest, tmp_path):
    _, body = card_parts(manifest)
    snippet = re.search(r"```python\n(.*?)```", body, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", snippet], cwd=os.path.dirname(manifest.path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in [str(d) for d in range(10)]


# ------------------------------------------------------------------------------ other files


def test_an_op_the_gpu_delegate_rejects_is_named(tmp_path):
    import keras
    import tensorflow as tf

    inputs = keras.Input((8,))
    outputs = keras.layers.Lambda(lambda x: tf.math.top_k(x, 2).values)(inputs)
    report = deployment.report(convert(keras.Model(inputs, outputs), tmp_path / "topk.tflite"))
    assert report["gpu"]["compatible"] is False
    assert report["gpu"]["incompatible"] == [
        {"op": "TOPK_V2", "index": 0, "reason": "Not supported op TOPK_V2"}]


def test_the_arena_is_measured_and_grows_with_the_input_size(tmp_path):
    arenas = {}
    for size in (32, 64):
        model = kres.build("resnet20", input_shape=(size, size, 1), num_classes=10,
                           include_preprocessing=True)
        path = kres.export.to_tflite(model, tmp_path / f"r{size}.tflite") or \
            tmp_path / f"r{size}.tflite"
        arenas[size] = deployment.report(path)["cost"]["arena_bytes"]
    assert arenas[64] == 4 * arenas[32]  # every activation has 4x the pixels
    assert arenas[32] > 32 * 32 * 16 * 4 * 3  # at least three 32x32x16 float maps alive


def test_uint8_io_makes_the_int8_file_integer_in_and_out(tmp_path):
    model = kres.build("resnet20", input_shape=(32, 32, 1), num_classes=10,
                       include_preprocessing=True)
    images, _ = kres.data.arrays("digits", "train", limit=32)
    path = tmp_path / "u8.tflite"
    kres.export.to_tflite(model, path, "int8", io="uint8", calibration=images)
    report = deployment.report(path)["integer_only"]
    assert report["integer_only"] and report["integer_io"]


def test_check_reports_keras_applications_resnet50_not_made_by_kres(tmp_path, capsys):
    import keras

    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    path = convert(model, tmp_path / "keras_resnet50.tflite")
    assert export_cli.main(["--check", str(path)]) == 0
    out = capsys.readouterr().out
    report = deployment.report(path)
    weighted = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D,
                                                          keras.layers.Dense))]
    # v1 convolutions have biases, so folding BatchNorm into them adds no parameter; the
    # converter drops the classifier's bias, all zeros in a fresh model
    dense = model.get_layer("predictions")
    assert not np.any(dense.bias.numpy())
    assert report["cost"]["parameters"] == sum(l.count_params() for l in weighted) - dense.units
    assert report["cost"]["macs"] == sum(_macs(l) for l in weighted)
    assert report["gpu"]["compatible"] and report["xnnpack"]["on_cpu"] == {}
    assert "keras_resnet50.tflite" in out and "compatible" in out
    assert f"{report['cost']['parameters']:,}" in out


def _macs(layer):
    if hasattr(layer, "kernel_size"):
        out = layer.output.shape
        return out[1] * out[2] * out[3] * int(np.prod(layer.kernel.shape[:3]))
    return int(np.prod(layer.kernel.shape))


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.tflite", "does not exist"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "is not a .tflite"),
    (lambda d: (d / "broken.tflite").write_bytes(b"\0" * 64) and d / "broken.tflite",
     "is not a readable .tflite"),
    (lambda d: d, "holds no .tflite or .onnx file"),
])
def test_check_says_in_one_line_what_is_wrong(tmp_path, capsys, make, message):
    assert export_cli.main(["--check", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
