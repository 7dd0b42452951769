"""The notebooks run top to bottom in a real Jupyter kernel, as a user would run them, in fast
mode (KRES_FAST=1: fewer epochs and smaller sizes, the same cells); none is committed with
outputs."""

import os
import pathlib
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
# What the last cell of each notebook prints when everything before it worked.
LAST_WORDS = {
    "01_quickstart.ipynb": "int8 TFLite accuracy on 64 test digits:",
    "02_train_on_colab_tpu.ipynb": "resumed from epoch",
    "03_deploy_to_mobile.ipynb": "int8 file on the interpreter:",
    "04_why_residual_networks.ipynb": "outputs converge",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    executed = [i for i, cell in enumerate(nb.cells)
                if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
    assert executed == [], f"cells {executed} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_opens_by_installing_kres_when_missing(path):
    first_code = next(c for c in nbformat.read(path, as_version=4).cells
                      if c.cell_type == "code")
    assert 'importlib.util.find_spec("kres") is None' in first_code.source


def execute(path, directory, monkeypatch):
    """Run the notebook at ``path`` in fast mode with ``directory`` as its working directory."""
    monkeypatch.setenv("KRES_FAST", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))  # the kernel's kres
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(directory)}}).execute()
    if path.name in LAST_WORDS:
        printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
        assert LAST_WORDS[path.name] in printed
    return nb


DEPLOY = ROOT / "notebooks" / "03_deploy_to_mobile.ipynb"


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p != DEPLOY],
                         ids=[p.name for p in NOTEBOOKS if p != DEPLOY])
def test_notebook_runs_in_fast_mode(tmp_path, monkeypatch, path):
    execute(path, tmp_path, monkeypatch)


@pytest.mark.slow
def test_deploy_notebook_runs_in_fast_mode_on_a_trained_run(tmp_path, monkeypatch, digits_run):
    """The deployment notebook on the main job's run (the same recipe, copied to where the
    notebook trains): int8 agreement is only meaningful for a trained model, and a 3-epoch model
    at chance level agreed with its int8 files on 69-94 % of images, by chance too."""
    shutil.copytree(digits_run, tmp_path / "runs" / "deploy-resnet20")
    nb = execute(DEPLOY, tmp_path, monkeypatch)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "after 30 epochs" in printed  # evaluated, not trained again
