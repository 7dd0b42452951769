"""kres.rundir.Run: a training run directory's name, files and records, known in one place."""

import os

import pytest

from kres.errors import RunError
from kres.rundir import Run


@pytest.mark.parametrize("data, model, seed, path", [
    ("digits", "resnet20", 0, "runs/digits-resnet20"),
    ("digits", "resnet20", 1, "runs/digits-resnet20-s1"),
    ("tfds:imagenette/160px-v2", "resnet50", 0, "runs/imagenette-160px-v2-resnet50"),
    ("folder:/data/my pics", "resnet18", 2, "runs/data-my-pics-resnet18-s2"),
])
def test_a_run_is_named_for_its_data_model_and_seed(data, model, seed, path):
    assert Run.named(data, model, seed=seed).path == os.path.join(*path.split("/"))


def test_train_config_names_its_run_by_the_same_rule():
    from kres.training import TrainConfig

    assert TrainConfig(model="resnet56", seed=3).run_dir() == Run.named("digits", "resnet56", 3)
    assert TrainConfig(out="elsewhere/mine", seed=3).run_dir() == Run("elsewhere/mine")


def test_a_run_knows_its_files_and_related_runs(tmp_path):
    run = Run(tmp_path / "digits-resnet20")
    assert run.best == str(tmp_path / "digits-resnet20" / "best.keras")
    assert run.final == str(tmp_path / "digits-resnet20" / "final.keras")
    assert run.worker(1) == Run(tmp_path / "digits-resnet20" / "worker-1")
    assert run.qat_run == Run(tmp_path / "digits-resnet20-qat")
    assert run.qat_run.is_qat and not run.is_qat
    assert run.qat_run.float_run == run and run.float_run is None
    assert os.path.join(run, "notes.txt") == str(tmp_path / "digits-resnet20" / "notes.txt")


def test_a_run_reads_what_training_recorded(tmp_path):
    run = Run(tmp_path / "run")
    assert (run.config, run.resolved, run.data, run.metrics, run.history) == (
        None, None, None, None, [])
    os.makedirs(run)
    run.write_config({"data": "tfds:cifar10", "data_dir": "/d", "seed": 0}, {"epochs": 3})
    run.write_metrics({"test_accuracy": 0.5})
    with open(run.history_file, "w") as f:
        f.write("epoch,loss\n1,0.9\n2,0.5\n")
    assert run.config == {"data": "tfds:cifar10", "data_dir": "/d", "seed": 0}
    assert run.resolved == {"epochs": 3}
    assert run.data == ("tfds:cifar10", "/d") and run.data.name == "tfds:cifar10"
    assert run.metrics == {"test_accuracy": 0.5}
    assert run.history == [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.5}]
    assert run.started and not Run.is_run(run)


@pytest.mark.parametrize("make, message", [
    (lambda path: None, r"no training run at '.*run': no such directory"),
    (lambda path: path.write_text("x"), r"'.*run' is a file, not a training run directory"),
    (lambda path: path.mkdir(), r"'.*run' is not a training run: it holds neither config.json "
                                r"nor best.keras"),
    (lambda path: (path.mkdir(), (path / "config.json").write_text("{}")),
     r"training run '.*run' holds no best.keras yet: it has not finished an epoch"),
])
def test_a_directory_that_is_not_a_trained_run_is_one_clear_line(tmp_path, make, message):
    make(tmp_path / "run")
    with pytest.raises(RunError, match=message) as error:
        Run.open(tmp_path / "run")
    assert "\n" not in str(error.value)


def test_a_trained_run_opens(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.keras").write_bytes(b"")
    assert Run.open(tmp_path / "run") == Run(tmp_path / "run") and Run.is_run(tmp_path / "run")


def test_a_damaged_record_is_one_clear_line(tmp_path):
    run = Run(tmp_path)
    with open(run.config_file, "w") as f:
        f.write('{"config": ')
    with pytest.raises(RunError, match=r"config.json' is not valid JSON .*the run's record is "
                                       "damaged") as error:
        run.config
    assert "\n" not in str(error.value)
