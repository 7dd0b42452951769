import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # tools/ and tests/helpers import kres from this checkout

import kres  # noqa: E402


@functools.lru_cache(maxsize=None)
def model_info(name):
    """kres.model_info, built once per test session."""
    return kres.model_info(name)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def info():
    """``info(name)``: kres.model_info of a registered model, cached for the session."""
    return model_info
