"""Faults on purpose: files from elsewhere, a loss that diverges, a resume that does not match,
two processes at once, writes that fail. Each is refused in one line, and nothing already on disk
is lost or taken for what it is not.

The run and export damaged here are copies of the main job's (``digits_run``, ``manifest``).
"""

import json
import os
import resource
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import kres.export
from kres.errors import IntegrityError, KresError, LockedError, RunError, TrainingError, WriteError
from kres.files import atomic_write_text, hold, lock_path
from kres.saving import load_keras_model
from kres.training import TrainConfig, train
from kres.training.callbacks import Checkpoint

from conftest import ROOT, subprocess_env

TINY = dict(model="resnet20", data="digits", image_size=16, limit=128, batch_size=32, verbose=0)


def one_line(error):
    text = str(error.value if hasattr(error, "value") else error)
    assert "\n" not in text, text
    return text


def dead_pid():
    """The id of a process that has finished (and been reaped)."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@pytest.fixture
def live_pid():
    sleeper = subprocess.Popen(["sleep", "60"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


@pytest.fixture
def export_copy(manifest, tmp_path):
    """A copy of the main job's export directory, to damage."""
    copy = tmp_path / "export"
    shutil.copytree(os.path.dirname(manifest.path), copy)
    return copy


@pytest.fixture
def run_copy(digits_run, tmp_path):
    """A copy of the main job's run directory (without its TensorBoard logs), to damage."""
    copy = tmp_path / "run"
    shutil.copytree(digits_run, copy, ignore=shutil.ignore_patterns("logs"))
    return copy


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------ files from elsewhere


def test_a_manifest_path_that_leaves_the_export_is_refused(export_copy, digits_run):
    shutil.copy(digits_run / "best.keras", export_copy.parent / "elsewhere.keras")

    def point_out(data):
        entry = next(a for a in data["artifacts"] if a["format"] == "tflite")
        entry["path"] = "../elsewhere.keras"

    edit_json(export_copy / "manifest.json", point_out)
    manifest = kres.export.Manifest.read(export_copy)
    fmt, quantization = next((a["format"], a["quantization"]) for a in manifest.artifacts
                             if a["path"] == "../elsewhere.keras")
    with pytest.raises(IntegrityError, match="outside the export directory") as error:
        manifest.artifact(fmt, quantization)
    one_line(error)


def test_a_symlink_that_leaves_the_export_is_refused(export_copy, tmp_path):
    artifact = export_copy / "resnet20_fp32.tflite"
    outside = tmp_path / "same-bytes.tflite"
    shutil.move(artifact, outside)
    artifact.symlink_to(outside)  # the same bytes, so the SHA-256 alone would pass
    with pytest.raises(IntegrityError, match="outside the export directory") as error:
        kres.export.load(artifact)
    one_line(error)


def test_an_artifact_whose_sha256_differs_is_refused(export_copy):
    artifact = export_copy / "resnet20_fp32.tflite"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match manifest.json") as error:
        kres.export.load(artifact)
    one_line(error)


@pytest.mark.parametrize("text, message", [
    ('{"artifacts": [', "is not a readable JSON manifest"),
    ('{"kres": "0"}', 'needs a list "artifacts"'),
    ('[1, 2]', 'needs a list "artifacts"'),
])
def test_a_damaged_manifest_is_one_line(export_copy, text, message):
    (export_copy / "manifest.json").write_text(text)
    with pytest.raises(IntegrityError, match=message) as error:
        kres.export.load(export_copy / "resnet20_fp32.tflite")
    one_line(error)
    with pytest.raises(IntegrityError, match=message):
        kres.export.Manifest.read(export_copy)


def test_a_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(KresError, match="safe mode refuses") as error:
        load_keras_model(tmp_path / "lambda.keras")
    one_line(error)


# --------------------------------------------------------------- a loss that is not a number


def test_a_diverging_loss_stops_training_at_its_epoch_and_keeps_the_best(tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"training stopped at epoch (\d) of 3: the loss is "
                                            r"(nan|inf)") as error:
        train(TrainConfig(out=str(out), epochs=3, lr=1e12, warmup_epochs=0, **TINY))
    epoch = int(one_line(error).split("epoch ")[1].split(" ")[0])
    rows = kres.rundir.Run(out).history
    assert [r["epoch"] for r in rows] == list(range(1, epoch))
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert Checkpoint(str(out / "backup")).committed_epoch() == epoch - 1
    assert not (out / "final.keras").exists() and not (out / "metrics.json").exists()
    if epoch > 1:  # the best epoch so far is a model that still computes numbers
        best = load_keras_model(out / "best.keras")
        assert np.isfinite(best.predict(np.zeros((1, 16, 16, 1)), verbose=0)).all()


# ------------------------------------------------------------------ a resume that does not match


@pytest.mark.parametrize("option, value", [
    ("model", "resnet32"), ("image_size", 16), ("data", "tfds:mnist")])
def test_resume_with_another_model_data_or_size_is_refused(run_copy, option, value):
    with pytest.raises(RunError, match=rf"cannot resume .* with other {option}={value!r} "
                                       r"\(the run has ") as error:
        train(TrainConfig(out=str(run_copy), resume=True, verbose=0, **{option: value}))
    one_line(error)


@pytest.mark.parametrize("damage, error_type, message", [
    (lambda run: (run / "config.json").write_text('{"config": {"model": '),
     RunError, "is not valid JSON"),
    (lambda run: edit_json(run / "config.json", lambda d: d["config"].update(colour=1)),
     RunError, "records options this kres does not know: colour"),
    (lambda run: (run / "history.csv").write_text(
        (run / "history.csv").read_text()[:-30]), RunError, "history.csv' is damaged"),
    (lambda run: (run / "best.keras").write_bytes(b""),
     KresError, r"best.keras' is not a valid .keras archive: it is not a zip file \(0 bytes\)"),
])
def test_resume_of_a_damaged_run_is_one_line(run_copy, damage, error_type, message):
    damage(run_copy)
    with pytest.raises(error_type, match=message) as error:
        train(TrainConfig(out=str(run_copy), resume=True, verbose=0))
    one_line(error)


def test_the_command_refuses_to_resume_a_directory_that_does_not_exist(tmp_path, capsys):
    from kres.cli import train as train_command

    status = train_command.main(["--out", str(tmp_path / "typo"), "--resume", "--epochs", "1",
                                 "--limit", "64", "--image-size", "16", "--quiet"])
    assert status == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "there is no run at" in last and "typo" in last and "leave out --resume" in last
    assert not (tmp_path / "typo").exists()


# ------------------------------------------------------------------------------ two at once


def test_a_second_training_into_a_held_run_directory_refuses(tmp_path, live_pid):
    out = tmp_path / "run"
    (tmp_path / ".run.lock").write_text(f"{live_pid}\n")
    with pytest.raises(LockedError, match=rf"is in use by process {live_pid}") as error:
        train(TrainConfig(out=str(out), epochs=1, **TINY))
    one_line(error)
    assert not out.exists()


def test_a_second_export_into_a_held_out_refuses(tmp_path, digits_run, live_pid):
    out = tmp_path / "out"
    (tmp_path / ".out.lock").write_text(f"{live_pid}\n")
    with pytest.raises(LockedError, match=rf"is in use by process {live_pid}") as error:
        kres.export.export(digits_run, out, formats="tflite", quantize="fp32")
    one_line(error)
    assert not out.exists()


def test_a_stale_lock_is_taken_over_and_a_killed_exports_leftovers_swept(tmp_path, digits_run,
                                                                         live_pid):
    out = tmp_path / "out"
    (tmp_path / ".out.lock").write_text(f"{dead_pid()}\n")
    killed = tmp_path / f".out.partial-{dead_pid()}-abc"
    killed.mkdir()
    (killed / "resnet20_fp32.tflite").write_bytes(b"half")
    running = tmp_path / f".out.partial-{live_pid}-abc"  # another export's, still alive
    running.mkdir()
    manifest = kres.export.export(digits_run, out, formats="tflite", quantize="fp32",
                                  verify_samples=16, latency_repeats=1)
    assert [a["path"] for a in manifest.artifacts] == ["resnet20_fp32.tflite"]
    assert not killed.exists() and running.exists()
    assert not os.path.exists(lock_path(out))  # released


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    with hold(tmp_path / "dir") as lock:
        assert open(lock).read() == f"{os.getpid()}\n"
        with pytest.raises(LockedError, match=f"process {os.getpid()}"):
            with hold(tmp_path / "dir"):
                pass
    assert not os.path.exists(lock)


def test_a_resumed_run_sweeps_a_killed_process_temporary_files(run_copy, live_pid):
    killed = run_copy / f".tmp-{dead_pid()}-best.keras"
    killed.write_bytes(b"\0" * 1000)
    running = run_copy / f".tmp-{live_pid}-history.csv"
    running.write_text("epoch\n")
    before = (run_copy / "best.keras").read_bytes()
    train(TrainConfig(out=str(run_copy), resume=True, verbose=0))
    assert not killed.exists() and running.exists()
    assert (run_copy / "best.keras").read_bytes() == before


# --------------------------------------------------------------------------- failing writes


def test_a_write_that_fails_names_the_path_and_leaves_no_temporary(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write '.*file/a.json': Not a directory"):
        atomic_write_text(str(tmp_path / "file" / "a.json"), "{}")
    assert os.listdir(tmp_path) == ["file"]


def limited(size):
    """A preexec_fn: files the process writes may not grow beyond ``size`` bytes (EFBIG)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_an_export_that_hits_a_file_size_limit_leaves_out_as_it_was(export_copy, digits_run):
    before = {p: (export_copy / p).read_bytes() for p in os.listdir(export_copy)
              if (export_copy / p).is_file()}
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "export.py"), str(digits_run),
         "--out", str(export_copy), "--formats", "tflite", "--quantize", "fp32",
         "--verify-samples", "8", "--latency-repeats", "1"],
        env=subprocess_env(), capture_output=True, text=True, timeout=600,
        preexec_fn=limited(100_000))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "cannot write" in last and "File too large" in last, last
    assert {p: (export_copy / p).read_bytes() for p in before} == before
    assert [n for n in os.listdir(export_copy.parent) if ".partial-" in n or ".old-" in n] == []


def test_a_training_that_hits_a_file_size_limit_is_one_line(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--out", str(out),
         "--epochs", "1", "--image-size", "16", "--limit", "128", "--batch-size", "32",
         "--quiet"], env=subprocess_env(), capture_output=True, text=True, timeout=600,
        preexec_fn=limited(200_000))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "cannot write" in last and "File too large" in last, last
    assert [n for n in os.listdir(out) if n.startswith(".tmp-")] == []
