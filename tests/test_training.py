"""kres.training: recipe defaults, the optimiser, the run directory, resume and the CLI."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import kres
import kres.data
from kres.data import DatasetInfo
from kres.training import ConfigError, TrainConfig, decay_exempt, make_optimizer, resolve, train
from kres.training import callbacks as cb
from kres.training.distribute import Plan

REPO = Path(__file__).resolve().parents[1]
TINY = dict(model="resnet20", data="digits", image_size=16, limit=128, batch_size=32, verbose=0)


def env_for_subprocess(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env.pop("KERAS_BACKEND", None)
    return env


# ------------------------------------------------------------------------------------ recipe


def test_defaults_make_digits_need_no_flag():
    recipe = resolve(TrainConfig(model="resnet20", data="digits"))
    assert recipe.family == "cifar"
    assert recipe.epochs == 30
    assert recipe.batch_size == 128
    assert recipe.peak_lr == pytest.approx(0.1)
    assert recipe.weight_decay == 5e-4
    assert recipe.label_smoothing == 0.0
    assert recipe.warmup_epochs == 5.0
    assert recipe.out == os.path.join("runs", "digits-resnet20")


IMAGENETTE = DatasetInfo(name="imagenette/160px-v2", num_classes=10, image_shape=(160, 160, 3),
                         class_names=[str(i) for i in range(10)],
                         splits={"train": 9469, "validation": 1000, "test": 3925})


def test_imagenet_family_defaults_and_lr_scaling():
    recipe = resolve(TrainConfig(model="resnet50", data="tfds:imagenette/160px-v2", batch_size=1024),
                     meta=IMAGENETTE)
    assert recipe.family == "imagenet"
    assert recipe.epochs == 90
    assert recipe.label_smoothing == 0.1
    assert recipe.peak_lr == pytest.approx(0.4)  # 0.1 per 256 images, global batch 1024
    assert recipe.out == os.path.join("runs", "imagenette-160px-v2-resnet50")


def test_global_batch_must_divide_over_replicas():
    with pytest.raises(ConfigError, match="batch_size=30 is the global batch.*multiple of 4"):
        resolve(TrainConfig(batch_size=30), Plan("mirrored", "four devices", replicas=4))


@pytest.mark.parametrize("field, value, accepted", [
    ("batch_size", 0, "a positive integer"),
    ("lr", -1.0, "a non-negative number"),
    ("label_smoothing", 1.0, r"a number in \[0, 1\)"),
    ("distribute", "horovod", "auto, none, mirrored, tpu, data-parallel"),
    ("mixed_precision", "fp8", "auto, none, float16, bfloat16"),
])
def test_bad_options_name_the_option_and_what_is_accepted(field, value, accepted):
    with pytest.raises(ConfigError, match=rf"{field}={value!r} is invalid; accepted: {accepted}"):
        TrainConfig(**{field: value}).check()


# --------------------------------------------------------------------------------- optimiser


def _tiny_model():
    keras.utils.set_random_seed(0)
    return kres.build("resnet20", input_shape=(16, 16, 1), num_classes=10, include_preprocessing=True)


def test_warmup_then_cosine_schedule():
    recipe = resolve(TrainConfig(epochs=10, warmup_epochs=2, batch_size=256, lr=0.4))
    optimizer = make_optimizer(_tiny_model(), recipe, steps_per_epoch=10)
    schedule = optimizer._learning_rate  # the LearningRateSchedule itself
    lr = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    assert lr == pytest.approx([0.0, 0.2, 0.4, 0.2, 0.0], abs=1e-6)
    # Serialisable, so a saved optimizer resumes the same schedule.
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert [float(restored(s)) for s in (0, 10, 20, 60, 100)] == pytest.approx(lr, abs=1e-7)


def test_sgd_is_nesterov_with_momentum():
    optimizer = make_optimizer(_tiny_model(), resolve(TrainConfig()), steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.nesterov is True and optimizer.momentum == 0.9


def test_weight_decay_spares_batchnorm_and_bias():
    model = _tiny_model()
    exempt = {id(v) for v in decay_exempt(model)}
    bn = [v for l in model.layers if isinstance(l, keras.layers.BatchNormalization)
          for v in (l.gamma, l.beta)]
    assert {id(v) for v in bn} | {id(model.get_layer("predictions").bias)} == exempt
    # One step with zero gradients: only weight decay moves the weights.
    recipe = resolve(TrainConfig(warmup_epochs=0, lr=2.56, batch_size=256, weight_decay=0.01))
    optimizer = make_optimizer(model, recipe, steps_per_epoch=100)
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in model.trainable_variables])
    for v, old in zip(model.trainable_variables, before):
        factor = 1.0 if id(v) in exempt else 1.0 - 2.56 * 0.01
        np.testing.assert_allclose(v.numpy(), old * factor, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------ run directory


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    return train(TrainConfig(out=str(out), epochs=2, **TINY))


@pytest.mark.xdist_group("tiny_run")  # one worker trains the shared run once
def test_run_directory_holds_everything(tiny_run):
    files = set(os.listdir(tiny_run.run_dir))
    assert {"config.json", "history.csv", "best.keras", "final.keras", "metrics.json",
            "curves.png", "logs", "backup"} <= files
    assert any(Path(tiny_run.run_dir, "logs").rglob("events.out.tfevents*"))


@pytest.mark.xdist_group("tiny_run")
def test_history_has_one_row_per_epoch(tiny_run):
    with open(Path(tiny_run.run_dir, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])


@pytest.mark.xdist_group("tiny_run")
def test_metrics_json(tiny_run):
    metrics = json.loads(Path(tiny_run.run_dir, "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["images_per_second"] > 0
    # The training steps alone are faster than whole epochs, which add a validation pass.
    assert metrics["step_images_per_second"] > metrics["images_per_second"]
    assert metrics == tiny_run.metrics


@pytest.mark.xdist_group("tiny_run")
def test_config_json_reproduces_the_run(tiny_run):
    saved = json.loads(Path(tiny_run.run_dir, "config.json").read_text())
    assert TrainConfig(**saved["config"]) == TrainConfig(out=tiny_run.run_dir, epochs=2, **TINY)
    assert saved["resolved"]["peak_lr"] == pytest.approx(0.1 * 32 / 128)
    assert saved["resolved"]["backend"] == "tensorflow"


@pytest.mark.xdist_group("tiny_run")
def test_saved_models_take_raw_pixels(tiny_run):
    x, _ = kres.data.arrays("digits", "test", image_size=16, limit=16)
    final = keras.saving.load_model(Path(tiny_run.run_dir, "final.keras"))
    np.testing.assert_allclose(final.predict(x, verbose=0), tiny_run.model.predict(x, verbose=0),
                               atol=1e-5)
    best = keras.saving.load_model(Path(tiny_run.run_dir, "best.keras"))
    assert best.input_shape == (None, 16, 16, 1)


@pytest.mark.xdist_group("tiny_run")
def test_existing_run_is_not_overwritten(tiny_run):
    with pytest.raises(ConfigError, match="already holds a run; pass resume=True"):
        train(TrainConfig(out=tiny_run.run_dir, epochs=2, **TINY))


@pytest.mark.xdist_group("tiny_run")
def test_resume_of_a_finished_run_trains_no_more(tiny_run):
    again = train(TrainConfig(out=tiny_run.run_dir, resume=True, verbose=0))
    assert [r["epoch"] for r in again.history] == [1, 2]
    assert int(again.model.optimizer.iterations) == 2 * 4


# ------------------------------------------------------------------------- atomic checkpoints


def test_history_drops_epochs_after_the_checkpoint(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n1,0.9\n2,0.5\n3,0.4\n")
    history = cb.HistoryCSV(str(path), initial_epoch=2)
    assert [r["epoch"] for r in history.rows] == [1, 2]
    assert path.read_text() == "epoch,loss\n1,0.9\n2,0.5\n"


def test_failed_save_leaves_the_previous_file_intact(tmp_path):
    model = _tiny_model()
    path = tmp_path / "best.keras"
    cb.atomic_save_model(model, str(path))
    good = path.read_bytes()

    class Killed(Exception):
        pass

    class HalfSaving:  # stands in for a process killed half-way through writing
        def save(self, p):
            Path(p).write_bytes(good[:100])
            raise Killed

    with pytest.raises(Killed):
        cb.atomic_save_model(HalfSaving(), str(path))
    assert path.read_bytes() == good


def test_checkpoint_restores_weights_optimizer_and_epoch(tmp_path):
    first = train(TrainConfig(out=str(tmp_path / "a"), epochs=2, **TINY))
    model = _tiny_model()
    model.compile(optimizer=make_optimizer(model, first.recipe, 4), loss="categorical_crossentropy")
    backup = tmp_path / "a" / "backup"
    assert sorted(os.listdir(backup)) == ["epoch-0001.weights.h5", "epoch-0002.weights.h5",
                                          "state.json"]
    epoch = cb.Checkpoint(str(backup)).restore(model)
    assert epoch == 2
    assert int(model.optimizer.iterations) == 8
    for a, b in zip(model.weights, first.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The previous epoch stays restorable (hosts of a multi-host run may be one commit apart).
    assert cb.Checkpoint(str(backup)).restore(model, 1) == 1
    assert int(model.optimizer.iterations) == 4


# ---------------------------------------------------------------------- precision and CLI


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains(tmp_path, precision):
    result = train(TrainConfig(out=str(tmp_path / precision), epochs=1, steps_per_epoch=2,
                               mixed_precision=precision, **TINY))
    assert result.model.get_layer("conv1_conv").compute_dtype == precision
    assert np.isfinite(result.history[0]["loss"])
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer) == (
        precision == "float16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_cli_reports_bad_data_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "tools/train.py"), "--data", f"folder:{tmp_path}/none",
         "--out", str(tmp_path / "run")],
        cwd=REPO, env=env_for_subprocess(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "tools/train.py: Image folder" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_reports_an_unknown_model_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "train.py"), "--model", "resnet5",
                           "--out", str(tmp_path / "run")], cwd=REPO, env=env_for_subprocess(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2  # a usage error, as argparse's own
    assert "unknown model 'resnet5'; closest names: resnet56, resnet50" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_best_model_breaks_validation_accuracy_ties_by_the_lower_validation_loss(tmp_path):
    """best.keras is the epoch with the highest validation accuracy; among epochs that tie on
    it, the one with the lowest validation loss (a resumed run knows its earlier epochs)."""
    from kres.saving import load_keras_model
    from kres.training import callbacks as cb

    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))
    path = tmp_path / "best.keras"
    best = cb.BestModel(str(path), rows=[{"epoch": 1, "val_accuracy": 0.5, "val_loss": 2.0}])
    best.set_model(model)
    saved = {}
    for epoch, (accuracy, loss) in enumerate([(0.5, 3.0), (0.9, 0.5), (0.9, 0.4), (0.9, 0.6),
                                              (0.8, 0.1), (float("nan"), 0.0)], start=2):
        model.layers[-1].kernel.assign([[float(epoch)]])
        best.on_epoch_end(epoch - 1, {"val_accuracy": accuracy, "val_loss": loss})
        if path.exists():
            saved[epoch] = float(load_keras_model(path).layers[-1].kernel.numpy()[0, 0])
    assert saved == {3: 3.0, 4: 4.0, 5: 4.0, 6: 4.0, 7: 4.0}
