"""Fixtures shared by every test file, and why they are shared.

CI runs the whole suite on 2 cores in a time budget, so anything trained is trained once per
session and read by every test that needs it:

- ``main_job``: the README's main command itself (``bash tools/run.sh demo``), run once as a
  subprocess in a fresh directory: resnet20 trained on digits with the project's default recipe,
  and its export. ``digits_run`` (the run directory) and ``manifest`` (the export) are its parts.
  Under xdist the first worker to need it runs it under a file lock (``once``); every test that
  reads it is sent to that worker (``pytest_collection_modifyitems`` below), so the other worker
  never waits out the job on the lock. The export, prediction and notebook tests read it instead
  of training a model of their own.
- ``info``: ``kres.model_info`` per model name, built once.
"""

import functools
import os
import shutil
import subprocess
import sys
import types

import pytest
from filelock import FileLock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # tools/ and tests/helpers import kres from this checkout

# kres (and so TensorFlow) is imported by the test modules, not here: the xdist controller
# process loads this file too and has no use for TensorFlow.


@functools.lru_cache(maxsize=None)
def model_info(name):
    """kres.model_info, built once per test session."""
    import kres

    return kres.model_info(name)


@pytest.fixture(scope="session")
def info():
    """``info(name)``: kres.model_info of a registered model, cached for the session."""
    return model_info


def subprocess_env(**extra):
    """The environment of a kres command run as a user would: this checkout's kres, TensorFlow's
    own log level, the default backend."""
    environment = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    environment.pop("KERAS_BACKEND", None)
    return environment


@pytest.fixture(scope="session")
def shared(tmp_path_factory, worker_id):
    """A directory all xdist workers of this session see."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def once(path, make):
    """``path``, made by ``make(partial)`` by whichever worker gets here first."""
    with FileLock(f"{path}.lock"):
        if not path.exists():
            partial = path.with_name(path.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            make(partial)
            partial.rename(path)
    return path


def run_main_job(directory):
    """``bash tools/run.sh demo`` exactly as the README says, in an empty directory."""
    done = subprocess.run(["bash", os.path.join(ROOT, "tools", "run.sh"), "demo"],
                          cwd=directory, env=subprocess_env(), capture_output=True, text=True,
                          timeout=3000)
    (directory / "stdout.txt").write_text(done.stdout)
    (directory / "stderr.txt").write_text(done.stderr)
    (directory / "returncode.txt").write_text(str(done.returncode))


@pytest.fixture(scope="session")
def main_job(shared):
    directory = once(shared / "main-job", run_main_job)
    return types.SimpleNamespace(
        dir=directory, stdout=(directory / "stdout.txt").read_text(),
        stderr=(directory / "stderr.txt").read_text(),
        returncode=int((directory / "returncode.txt").read_text()))


@pytest.fixture(scope="session")
def digits_run(main_job):
    """resnet20 trained on digits by the main job: the project's own recipe and defaults."""
    run = main_job.dir / "runs" / "digits-resnet20"
    assert (run / "best.keras").exists(), main_job.stderr[-3000:]
    return run


@pytest.fixture(scope="session")
def manifest(main_job):
    """The main job's export directory, read."""
    import kres.export

    path = main_job.dir / "exports" / "digits-resnet20"
    assert (path / "manifest.json").exists(), main_job.stderr[-3000:]
    return kres.export.Manifest.read(path)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (``--dist loadgroup``)
def pytest_collection_modifyitems(items):
    """Every test that reads the main job runs on the worker that runs it: a test sent to the
    other worker would block there on the fixture's file lock for the job's whole run."""
    for item in items:
        if "main_job" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("main_job"))
