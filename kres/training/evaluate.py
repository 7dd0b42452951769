"""Evaluating a checkpoint the way its source did: top-1 and top-5 on a dataset split.

A pretrained tag is evaluated at its published resolution, centre-crop fraction and
interpolation (``kres.preprocessing(name, tag)``: timm's ``test_input_size``/``crop_pct``/
``interpolation``, Keras Applications' 224 px at 0.875), with its own input statistics; a local
file at the input size it was saved with, with kres' default evaluation view.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import kres
from kres import data as kdata
from kres.errors import KresError
from kres.training import finetune


@dataclasses.dataclass
class Evaluation:
    """What :func:`evaluate` measured, and how the images were prepared."""

    model: str
    weights: str
    data: str
    split: str
    examples: int
    top1: float
    top5: float
    image_size: int
    crop_fraction: float | None  # None: a plain resize (small images)
    interpolation: str

    def line(self) -> str:
        crop = "no crop" if self.crop_fraction is None else f"crop {self.crop_fraction:g}"
        return (f"{self.model} {self.weights} on {self.data} {self.split} ({self.examples} images, "
                f"{self.image_size} px, {crop}, {self.interpolation}): top-1 {self.top1:.4f}, "
                f"top-5 {self.top5:.4f}")


def evaluate(model: str, weights: str, data: str, *, split: str = "test", batch_size: int = 64,
             image_size: int | None = None, limit: int | None = None,
             data_dir: str | None = None) -> Evaluation:
    """Top-1 and top-5 accuracy of ``model`` with ``weights`` on ``data``'s ``split``.

    >>> kres.training.evaluate("resnet50", "a1_in1k", "tfds:imagenet2012",
    ...                        split="validation", data_dir="~/tensorflow_datasets").line()
    """
    finetune.check_weights(model, weights)
    meta = kdata.info(data, data_dir=data_dir)
    crop, interpolation = None, "bilinear"
    size = image_size or finetune.checkpoint_size(model, weights) or meta.image_shape[0]
    if not finetune.is_file(weights):
        pre = kres.preprocessing(model, weights)
        size = image_size or pre["eval_size"]
        crop, interpolation = pre["eval_crop"], pre["interpolation"]
    net = kres.build(model, weights=weights, input_shape=(size, size, meta.image_shape[2]),
                     num_classes=meta.num_classes, include_preprocessing=True)
    skipped = [n for n in net.kres_weights.get("notes", []) if "not loading the classifier" in n]
    if skipped:
        raise KresError(f"weights {weights!r} cannot be evaluated on {data}: {skipped[0]}")
    ds = kdata.load(data, split, batch_size=batch_size, image_size=size, limit=limit,
                    data_dir=data_dir, crop_fraction=crop, interpolation=interpolation)
    k = min(5, meta.num_classes)
    hits1 = hits5 = count = 0
    for images, labels in ds.as_numpy_iterator():
        logits = np.asarray(net.predict_on_batch(images))
        top = np.argsort(-logits, axis=1)[:, :k]
        hits1 += int(np.sum(top[:, 0] == labels))
        hits5 += int(np.sum(np.any(top == labels[:, None], axis=1)))
        count += len(labels)
    if count == 0:
        raise kdata.DataError(f"{data} {split} holds no images to evaluate")
    return Evaluation(model=model, weights=weights, data=data, split=split, examples=count,
                      top1=hits1 / count, top5=hits5 / count, image_size=size,
                      crop_fraction=crop, interpolation=interpolation)
