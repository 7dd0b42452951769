"""Datasets for training and evaluating kres models.

Names: `digits` (scikit-learn's handwritten digits, embedded, no download), `tfds:NAME`
(tensorflow-datasets builders: cifar10, cifar100, imagenette/160px-v2, imagenet2012 with a
data_dir) and `folder:PATH` (PATH/split/class/image files). Splits: train, validation, test.

Every pipeline yields RAW pixels (float32 NHWC in [0, 255]) and int32 labels; models built with
`include_preprocessing=True` normalise inside.

>>> info = kres.data.info("digits")
>>> x, y = kres.data.arrays("digits", "test")
>>> ds = kres.data.load("digits", "train", batch_size=128, training=True)
"""

from kres.data.pipeline import arrays, evaluation_view, info, load, mix
from kres.data.sources import SPLITS, DataError, DataNotFoundError, DatasetInfo, check_name

__all__ = ["DataError", "DataNotFoundError", "DatasetInfo", "SPLITS", "arrays", "check_name",
           "evaluation_view", "info", "load", "mix"]
