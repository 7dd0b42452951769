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
from kres.rundir import Run
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


class PoisonAfterFirstEpoch(keras.callbacks.Callback):
    """Makes every weight NaN once the first epoch is recorded: the second epoch's loss is NaN."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            for variable in self.model.trainable_variables:
                variable.assign(np.full(variable.shape, np.nan, variable.dtype))


def test_an_epoch_that_turns_nan_leaves_the_previous_best_and_checkpoint(tmp_path):
    from kres.training import callbacks as cb

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    x, y = np.ones((8, 4), "float32"), np.eye(2, dtype="float32")[[0, 1] * 4]
    callbacks = [cb.StopOnNonFinite(3, 0.1), cb.HistoryCSV(str(tmp_path / "history.csv")),
                 cb.BestModel(str(tmp_path / "best.keras")),
                 cb.Checkpoint(str(tmp_path / "backup")), PoisonAfterFirstEpoch()]
    with pytest.raises(TrainingError, match="training stopped at epoch 2 of 3: the loss is nan "
                                            r".*; best.keras and the checkpoint keep epoch 1"):
        model.fit(x, y, validation_data=(x, y), epochs=3, callbacks=callbacks, verbose=0)
    assert [r["epoch"] for r in kres.rundir.read_history(tmp_path / "history.csv")] == [1]
    assert Checkpoint(str(tmp_path / "backup")).committed_epoch() == 1
    best = load_keras_model(tmp_path / "best.keras")
    assert np.isfinite(best.predict(x, verbose=0)).all()


# ------------------------------------------------------------------ a resume that does not match


@pytest.mark.parametrize("option, value", [
    ("model", "resnet32"), ("image_size", 16), ("data", "tfds:mnist")])
def test_resume_with_another_model_data_or_size_is_refused(run_copy, option, value):
    with pytest.raises(RunError, match=rf"cannot resume .* with other {option}={value!r} "
                                       r"\(the run has ") as error:
        train(TrainConfig(out=str(run_copy), resume=True, verbose=0, **{option: value}))
    one_line(error)


def test_resume_refuses_a_typed_option_that_differs_from_the_run_even_at_its_default(run_copy,
                                                                                     capsys):
    from kres.cli import train as train_command

    edit_json(run_copy / "config.json", lambda d: d["config"].update(model="resnet32"))
    status = train_command.main(["--out", str(run_copy), "--resume", "--model", "resnet20"])
    assert status == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "with other model='resnet20' (the run has 'resnet32')" in last, last


def test_resume_takes_the_runs_values_for_options_left_out(run_copy):
    from kres.training.loop import _saved_config

    edit_json(run_copy / "config.json", lambda d: d["config"].update(model="resnet32"))
    typed = {"out", "resume", "epochs"}  # kres train --out RUN --resume --epochs 2
    config = TrainConfig(out=str(run_copy), resume=True, epochs=2)
    resumed = _saved_config(Run(run_copy), config, typed)
    assert resumed.model == "resnet32" and resumed.resume


def test_resume_of_a_run_whose_dataset_has_other_classes_now_is_refused(run_copy):
    edit_json(run_copy / "config.json", lambda d: d["resolved"].update(num_classes=9))
    with pytest.raises(RunError, match=r"it was trained on 9 classes, and digits now has 10 "
                                       r"\(0, 1, 2, 3, 4, 5, 6, 7, 8, 9\)") as error:
        train(TrainConfig(out=str(run_copy), resume=True, verbose=0))
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


# ------------------------------------------------------------------- every bad input is one line

# (command, arguments, exit status, what the last line of stderr says). {run} is a trained run,
# {tmp} a directory holding: regular (a file), emptydir/, loose/ (a text file), notkres/ (a
# directory that is not an export), empty.keras (0 bytes), junk.keras and junk.png (text).
BAD_COMMANDS = [
    ("train", "--model resnet5", 2, "unknown model 'resnet5'; closest names: resnet56"),
    ("train", "--data nope", 2, "Unknown dataset 'nope'. Accepted: 'digits'"),
    ("train", "--data folder:{tmp}/none", 1, "does not exist; expected PATH/train/CLASS/IMAGE"),
    ("train", "--epochs 0", 2, "epochs=0 is invalid; accepted: a positive integer"),
    ("train", "--epochs 1.5", 2, "argument --epochs: invalid int value: '1.5'"),
    ("train", "--batch-size 0", 2, "batch_size=0 is invalid; accepted: a positive integer"),
    ("train", "--lr -1", 2, "lr=-1.0 is invalid; accepted: a non-negative number"),
    ("train", "--lr nan", 2, "lr=nan is invalid; accepted: a non-negative number"),
    ("train", "--image-size 4", 2, "image_size=4 is invalid; accepted: at least 8 pixels"),
    ("train", "--optimizer adam", 2, "invalid choice: 'adam' (choose from 'sgd', 'adamw', 'lamb')"),
    ("train", "--recipe fancy", 2, "invalid choice: 'fancy' (choose from 'classic', 'modern')"),
    ("train", "--seed abc", 2, "argument --seed: invalid int value: 'abc'"),
    ("train", "--label-smoothing 1", 2, "label_smoothing=1.0 is invalid; accepted: a number in"),
    ("train", "--freeze stages9", 2, "names no part of a model with 3 stages; accepted: none"),
    ("train", "--weights nosuchtag", 2, "invalid weights 'nosuchtag' for model 'resnet20': acce"),
    ("train", "--mixed-precision fp8", 2, "invalid choice: 'fp8' (choose from 'auto', 'none'"),
    ("train", "--head-epochs 2", 2, "head_epochs=2 is invalid; accepted: 0 without weights"),
    ("train", "--weights {tmp}/junk.keras", 1, "is not a readable .keras file"),
    ("train", "--out {tmp}/regular", 1, "is a file; give a directory for the run"),
    ("train", "--out {tmp}/regular/run", 1, "a file is in the way"),
    ("train", "--out {tmp}/missing --resume", 1, "there is no run at '{tmp}/missing' to continue"),
    ("export", "resnet5", 1, "unknown model 'resnet5'; closest names: resnet56"),
    ("export", "{run} --formats pdf", 2, "formats: unknown 'pdf'; accepted: saved_model, tflite"),
    ("export", "{run} --quantize int4", 2, "quantize: unknown 'int4'; accepted: fp32, fp16"),
    ("export", "{run} --io int16", 2, "invalid choice: 'int16' (choose from 'float', 'int8'"),
    ("export", "{run} --calibration-samples -1", 2, "calibration_samples=-1: accepted is an "
                                                    "integer >= 0"),
    ("export", "{run} --verify-samples -5", 2, "verify_samples=-5: accepted is an integer >= 1"),
    ("export", "{run} --threads 0", 2, "threads=0: accepted is an integer >= 1"),
    ("export", "{run} --latency-repeats 0", 2, "latency_repeats=0: accepted is an integer >= 1"),
    ("export", "{run} --opset 1", 2, "opset=1: accepted is an ONNX opset from 13 to 18"),
    ("export", "{run} --opset 99", 2, "opset=99: accepted is an ONNX opset from 13 to 18"),
    ("export", "{tmp}/nope.keras", 1, "model file not found: '{tmp}/nope.keras'"),
    ("export", "{tmp}/empty.keras", 1, "is not a valid .keras archive: it is not a zip file (0 "),
    ("export", "{tmp}/junk.keras", 1, "is not a valid .keras archive: it is not a zip file (4 "),
    ("export", "{tmp}/emptydir", 1, "is not a training run: it holds neither config.json nor "),
    ("export", "{run} --out {tmp}/regular", 1, "out='{tmp}/regular' is a file; give a directory"),
    ("export", "{run} --out {tmp}/notkres", 1, "is not a kres export (no manifest.json); refusi"),
    ("export", "{run} --out {tmp}/regular/out", 1, "a file is in the way"),
    ("export", "{run} --data nope", 1, "Unknown dataset 'nope'. Accepted: 'digits'"),
    ("export", "{run} --formats saved_model --quantize int8", 1, "none of quantize=['int8'] "
                                                                  "applies to formats="),
    ("predict", "{tmp}/nope {tmp}/junk.png", 1, "no such file or folder: '{tmp}/nope'; expected"),
    ("predict", "{tmp}/loose {tmp}/junk.png", 1, "is not a model: a folder with no manifest.json"),
    ("predict", "{tmp}/emptydir {tmp}/junk.png", 1, "is not a model: a folder with no manifest"),
    ("predict", "{run} {tmp}/junk.png", 1, "junk.png: not an image (expected a JPEG, PNG"),
    ("predict", "{run} {tmp}/missing.png", 1, "missing.png: no such file or folder (expected "),
    ("predict", "{run} {tmp}/junk.png --top-k 0", 2, "--top-k: expected a positive integer"),
    ("validate", "resnet20 --weights {run}/best.keras --data nope", 1, "Unknown dataset 'nope'"),
    ("validate", "resnet20 --weights {run}/best.keras --data digits --split bogus", 1,
     "split must be one of ['train', 'validation', 'test'], got 'bogus'"),
    ("validate", "resnet20 --weights {tmp}/junk.keras --data digits", 1,
     "is not a readable .keras file"),
    ("validate", "resnet20 --weights {run}/best.keras --data digits --batch-size 0", 2,
     "argument --batch-size: expected a positive integer, got 0"),
    ("validate", "resnet20 --weights {run}/best.keras --data digits --limit -1", 2,
     "argument --limit: expected a positive integer, got -1"),
]


@pytest.fixture(scope="module")
def junk(tmp_path_factory):
    """The directory of bad files BAD_COMMANDS names as {tmp}."""
    tmp = tmp_path_factory.mktemp("junk")
    for name in ("emptydir", "loose", "notkres"):
        (tmp / name).mkdir()
    (tmp / "loose" / "a.txt").write_text("hi")
    (tmp / "notkres" / "f").write_text("x")
    (tmp / "regular").write_text("text")
    (tmp / "empty.keras").write_bytes(b"")
    (tmp / "junk.keras").write_text("junk")
    (tmp / "junk.png").write_text("junk")
    return tmp


def run_command(command, argv, capsys):
    """``kres <command> argv`` in this process: its exit status and stderr."""
    import importlib
    import signal

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    capsys.readouterr()
    try:
        status = importlib.import_module(f"kres.cli.{command}").main(argv)
    except SystemExit as done:  # argparse's own usage errors
        status = done.code
    finally:
        for number, handler in handlers.items():  # export treats SIGTERM like Ctrl-C
            signal.signal(number, handler)
    return status, capsys.readouterr().err


@pytest.mark.parametrize("command, arguments, status, says", BAD_COMMANDS,
                         ids=[f"{c} {a}" for c, a, _, _ in BAD_COMMANDS])
def test_a_bad_command_line_is_one_line(command, arguments, status, says, junk, digits_run,
                                        capsys):
    fill = dict(tmp=junk, run=digits_run)
    argv = [a.format(**fill) for a in arguments.split()]
    if command in ("train", "export") and "--out" not in argv:
        argv += ["--out", str(junk / "out" / command)]
    got, stderr = run_command(command, argv, capsys)
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert got == status, stderr[-2000:]
    assert says.format(**fill) in last, last


def bad_calls(tmp):
    import kres

    return [
        (lambda: kres.build("resnet5"), "unknown model 'resnet5'; closest names"),
        (lambda: kres.build("resnet20", num_classes=0), "got 0; accepted: a positive integer"),
        (lambda: kres.build("resnet20", input_shape=(32, 32, 0)), "with channels >= 1"),
        (lambda: kres.build("resnet20", input_shape=(32, 32)), "accepted is (height, width, ch"),
        (lambda: kres.build("resnet20", weights="nosuch"), "invalid weights 'nosuch'"),
        (lambda: kres.export.load(tmp / "missing.tflite"), "no artifact at"),
        (lambda: kres.export.load(tmp / "regular"), "cannot tell the format of"),
        (lambda: kres.export.load(tmp / "emptydir"), "is a directory but not a SavedModel"),
        (lambda: kres.export.load(tmp / "junk.keras"), "is not a valid .keras archive"),
        (lambda: kres.export.Manifest.read(tmp / "emptydir"), "no manifest.json at"),
        (lambda: kres.export.export(tmp / "emptydir", tmp / "o", formats="gif"), "formats: unknown 'gif'"),
        (lambda: kres.predict(tmp / "nope", tmp / "junk.png"), "no such file or folder"),
        (lambda: kres.training.train("resnet20"), "train() takes a TrainConfig, got str"),
        (lambda: TrainConfig(epochs=-1).check(), "epochs=-1 is invalid; accepted: a positive"),
    ]


@pytest.mark.parametrize("index", range(14))
def test_a_bad_call_of_a_public_function_is_one_line(index, junk):
    call, says = bad_calls(junk)[index]
    with pytest.raises(KresError) as error:
        call()
    assert says in one_line(error)
