"""Every registered model builds, runs, and is listed correctly in the README's table."""

import pathlib
import re

import numpy as np
import pytest

import keras
import kres
from kres.analysis import describe
from tools.model_table import table_row

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
TABLE = re.search(r"<!-- model-table:start -->(.*?)<!-- model-table:end -->",
                  README.read_text(), re.S).group(1)
README_ROWS = {re.match(r"\| `([^`]+)`", line).group(1): line
               for line in TABLE.strip().splitlines()[2:]}
HEAVY = {"resnet1202", "preact_resnet1001", "resnet200", "resnet152", "seresnet152",
         "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2", "keras_resnet152",
         "keras_resnet152v2", "resnetv2_152", "resnetrs152", "resnetrs200", "resnetrs270",
         "resnetrs350", "resnetrs420", "resnetv2_50x3_bit", "resnetv2_101x3_bit",
         "resnetv2_152x2_bit", "resnetv2_152x4_bit"}


def test_readme_lists_exactly_the_registered_models():
    assert sorted(README_ROWS) == kres.list_models()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in kres.list_models()])
def test_model_builds_runs_and_matches_its_readme_row(name):
    spec = kres.models.get_spec(name)
    model = kres.build(name)
    if name not in HEAVY:  # the heavy ones are deeper or wider stacks of blocks run here
        x = np.random.default_rng(0).uniform(0, 1, (1, *spec.input_shape)).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        assert y.shape == (1, spec.num_classes)
        assert np.all(np.isfinite(y))
    assert tuple(model.output.shape) == (None, spec.num_classes)
    info = {"name": name, "family": spec.family, "architecture": spec.architecture,
            "reference": spec.reference, "input_shape": spec.input_shape,
            **describe(model, spec)}
    assert README_ROWS[name] == table_row(info), "README table is stale: python tools/model_table.py --write"
