"""Lesions: a trained network with units deleted, after Veit, Wilber & Belongie 2016, "Residual
Networks Behave Like Ensembles of Relatively Shallow Networks" (arXiv:1605.06431). Deleting one
unit of a residual network costs little accuracy; deleting a layer of a plain network destroys
it; and a residual network's error grows smoothly with the number of units deleted."""

from __future__ import annotations

import keras
import numpy as np

from kres.analysis.chain import Chain
from kres.analysis.units import check_images, check_labels
from kres.errors import KresError


def lesion(model, images, labels, *, counts=None, samples=5, seed=0, batch_size=128):
    """The error of ``model`` on ``images`` with units deleted, in inference mode.

    A residual unit ``y = post(a * shortcut(x) + h * F(x))`` is deleted by routing its shortcut
    only (``F(x)`` replaced by zeros, the merge and what follows it kept); a unit without a
    shortcut (a plain or highway twin) is skipped (``y = x``), which only units that keep their
    input's shape allow. First each deletable unit alone, then ``samples`` random sets of each
    size in ``counts`` (default: about ten sizes from 0 to every deletable unit), drawn with
    ``seed``.

    Returns a dict: ``model``, ``error`` (nothing deleted), ``units``, ``unit_errors`` (one per
    unit, NaN where the unit cannot be deleted), ``deleted_by`` ("shortcut", "skip" or None per
    unit), ``counts``, ``count_errors`` (mean over the samples) and ``count_spread`` (their
    standard deviation).

    >>> x, y = kres.data.arrays("digits", "test")
    >>> result = lesion(trained_resnet56, x, y)
    >>> result["unit_errors"] - result["error"]   # a few points at most, per unit
    """
    images = check_images(model, images)
    labels = check_labels(model, images, labels)
    chain = Chain(model)
    deleted_by = [("shortcut" if u.residual else "skip" if chain.can_skip(i) else None)
                  for i, u in enumerate(chain.units)]
    deletable = [i for i, how in enumerate(deleted_by) if how]
    if not deletable:
        raise KresError(f"model {model.name!r} has no unit that can be deleted: none has a "
                        "shortcut, and none keeps its input's shape so that it could be skipped")

    def error(delete=()):
        replace = {i: deleted_by[i] for i in delete}
        wrong = 0
        for start in range(0, len(images), batch_size):
            logits = chain.run(images[start:start + batch_size], replace=replace)
            wrong += int(np.sum(np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
                                != labels[start:start + batch_size]))
        return wrong / len(images)

    counts = _counts(counts, len(deletable))
    rng = np.random.default_rng(seed)
    unit_errors = np.full(len(chain.units), np.nan)
    for i in deletable:
        unit_errors[i] = error([i])
    by_count = [[error(rng.choice(deletable, k, replace=False)) for _ in range(samples if 0 < k
                 < len(deletable) else 1)] for k in counts]
    return {
        "model": model.name,
        "error": error(),
        "units": [u.name for u in chain.units],
        "unit_errors": unit_errors,
        "deleted_by": deleted_by,
        "counts": np.array(counts),
        "count_errors": np.array([np.mean(e) for e in by_count]),
        "count_spread": np.array([np.std(e) for e in by_count]),
    }


def _counts(counts, deletable):
    if counts is None:
        return sorted(set(np.linspace(0, deletable, min(deletable, 10) + 1).round().astype(int)
                          .tolist()))
    counts = list(counts)
    if not counts or any(not isinstance(k, (int, np.integer)) or not 0 <= k <= deletable
                         for k in counts):
        raise KresError(f"invalid counts {counts!r}: accepted are numbers of units to delete, "
                        f"integers from 0 to {deletable} (the units this model can lose)")
    return [int(k) for k in counts]
