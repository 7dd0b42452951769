import functools
import os
import sys

import pytest

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


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (``--dist loadgroup``)
def pytest_collection_modifyitems(items):
    """Every test that reads the main job runs on the worker that runs it: a test sent to the
    other worker would block there on the fixture's file lock for the job's whole run."""
    for item in items:
        if "main_job" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("main_job"))
