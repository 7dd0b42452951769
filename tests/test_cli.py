"""The kres command: built as a wheel and installed, it runs from any directory; its subcommands
load only when they run; train's and export's options come from their config dataclasses, each
with its help text, through one helper (kres.cli.options)."""

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kres.cli
from kres.cli import options
from kres.options import option

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """kres as a user installs it: a wheel of this checkout (copied first, so that the build
    leaves nothing in it), installed without dependencies into a directory of its own, whose
    kres comes first on the path while the test environment provides the dependencies."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"
    shutil.copytree(REPO / "kres", source / "kres",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    def pip(*args):
        done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                               "--no-input", "-q", *map(str, args)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    pip("wheel", "--no-deps", "--no-build-isolation", "-w", root / "wheels", source)
    (wheel,) = (root / "wheels").glob("kres-*.whl")
    pip("install", "--no-deps", "--target", root / "target", wheel)
    env = dict(os.environ, PYTHONPATH=str(root / "target"), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("KERAS_BACKEND", None)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()

    def kres_command(*args, module=False):
        program = [sys.executable, "-m", "kres"] if module else [str(root / "target/bin/kres")]
        return subprocess.run([*program, *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=600)

    kres_command.root, kres_command.env, kres_command.cwd = root, env, elsewhere
    return kres_command


def test_the_installed_kres_is_the_one_that_runs(installed):
    done = subprocess.run([sys.executable, "-c", "import kres; print(kres.__file__)"],
                          cwd=installed.cwd, env=installed.env, capture_output=True, text=True)
    assert done.stdout.strip() == str(installed.root / "target" / "kres" / "__init__.py")


def test_kres_help_lists_every_command(installed):
    done = installed("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: kres <command> [options]\n")
    for name, summary in kres.cli.SUMMARIES.items():
        assert f"  {name}" in done.stdout and summary in done.stdout
    assert installed("--help", module=True).stdout == done.stdout  # python -m kres


def test_kres_list_prints_the_models_that_match(installed):
    done = installed("list", "resnet5*")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["resnet50", "resnet50d", "resnet56"]


def test_kres_export_help_lists_every_export_option(installed):
    done = installed("export", "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("usage: kres export ")
    for flag in ("--out", "--formats", "--quantize", "--io", "--calibration-samples",
                 "--verify-samples", "--threads", "--opset", "--latency-repeats", "--weights",
                 "--data", "--data-dir", "--metadata, --no-metadata", "--max-abs-diff",
                 "--max-rel-diff", "--min-agreement", "--max-quantized-error"):
        assert f"  {flag}" in done.stdout, flag


def test_installed_kres_predict_runs_outside_the_checkout(installed):
    """`kres predict` from the wheel, in a directory that holds no checkout: a small resnet saved
    as .keras names the classes of a real photograph, with the probabilities this process's
    kres.predict gives for the same file."""
    import json

    import keras
    import numpy as np
    from PIL import Image
    from skimage import data

    import kres
    import kres.predict

    folder = installed.cwd / "predict"
    folder.mkdir(exist_ok=True)
    model = kres.build("resnet20", input_shape=(40, 40, 3), num_classes=4, depths=(1, 1, 1))
    for layer in model.layers:  # random BatchNorm statistics, so that pictures differ
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-1, 1, layer.moving_mean.shape[0]))
    model.save(folder / "small.keras")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.jpg")
    done = installed("predict", "predict/small.keras", "predict/chelsea.jpg", "--top-k", "2",
                     "--json", "predict/out.json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].startswith("kres predict: 1 image in ")
    got = json.loads((folder / "out.json").read_text())["predictions"]
    want = kres.predict(str(folder / "small.keras"), [str(folder / "chelsea.jpg")], top_k=2)
    (top,) = [p["top_k"] for p in got]
    assert [t["index"] for t in top] == [int(i) for i in want[0].indices]
    assert [t["name"] for t in top] == list(want[0].names)
    np.testing.assert_allclose([t["probability"] for t in top], want[0].probabilities,
                               atol=1e-5)


def test_an_unknown_command_names_the_closest(capsys):
    assert kres.cli.main(["expotr"]) == 2
    assert "kres: unknown command 'expotr'; closest: export." in capsys.readouterr().err


def test_a_command_whose_module_is_missing_fails_with_one_line(monkeypatch, capsys):
    monkeypatch.setitem(kres.cli.COMMANDS, "nothing", "kres.cli.nothing")
    assert kres.cli.main(["nothing", "--help"]) == 1
    assert capsys.readouterr().err == (
        "kres nothing: this installation of kres has no nothing command (module "
        "kres.cli.nothing is missing)\n")


def test_kres_help_imports_no_subcommand_and_neither_keras_nor_tensorflow():
    code = ("import sys, kres.cli; kres.cli.main(['--help']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('keras', 'tensorflow') or m.startswith('kres.cli.')))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr[-3000:]


@pytest.mark.parametrize("command, config", [("train", "TrainConfig"), ("export", "ExportConfig")])
def test_every_option_has_help_text(command, config):
    import importlib

    parser = importlib.import_module(f"kres.cli.{command}").parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    assert all(action.help for action in parser._actions)
    module = importlib.import_module("kres.training" if command == "train" else "kres.export")
    fields = [f.name for f in dataclasses.fields(getattr(module, config))
              if f.name not in ("verbose", "calibration", "tolerances")]
    assert {f"--{name.replace('_', '-')}" for name in fields} <= flags


# ------------------------------------------------------------------------- the one helper


@dataclasses.dataclass(frozen=True)
class Limits:
    most: float = option(1.0, "the most")


@dataclasses.dataclass
class Example:
    name: str = option("a", "a name", ("a", "b"))
    count: int | None = option(None, "how many (default: all)")
    scale: float = option(0.5, "a scale")
    fresh: bool = option(False, "start again")
    check: bool = option(True, "check the result")
    sync: bool | None = option(None, "synchronise (default: when it helps)")
    parts: tuple[str, ...] = option(("x", "y"), "the parts", ("x", "y", "z"))
    limits: Limits = option(Limits(), "limits")
    data: object = None  # not an option: Python callers only


def parse(*argv):
    parser = argparse.ArgumentParser()
    options.add_options(parser, Example)
    return options.config_from(Example, parser.parse_args(argv))


def test_options_keep_the_config_defaults():
    assert parse() == Example()


def test_options_take_each_kind_of_field():
    assert parse("--name", "b", "--count", "3", "--scale", "2", "--fresh", "--no-check",
                 "--sync", "--parts", "z,x", "--most", "4") == Example(
        name="b", count=3, scale=2.0, fresh=True, check=False, sync=True, parts=("z", "x"),
        limits=Limits(most=4.0))


def test_option_help_says_the_default_and_the_choices():
    parser = argparse.ArgumentParser()
    options.add_options(parser, Example)
    text = " ".join(parser.format_help().split())
    for line in ("--name {a,b} a name (default: a)", "--count COUNT how many (default: all)",
                 "--scale SCALE a scale (default: 0.5)", "--fresh start again",
                 "--check, --no-check check the result (default: --check)",
                 "--sync, --no-sync synchronise (default: when it helps)",
                 "--parts PARTS the parts; comma-separated, of x, y, z (default: x,y)",
                 "limits: --most MOST the most (default: 1.0)"):
        assert line in text, line
    assert "--data" not in text


def test_a_field_without_a_command_line_form_is_refused():
    @dataclasses.dataclass
    class Odd:
        level: int | str = option(1, "a level")

    with pytest.raises(TypeError, match="Odd.level: .* has no command-line form"):
        options.add_options(argparse.ArgumentParser(), Odd)
