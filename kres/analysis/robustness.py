"""Robustness measured by attacking: accuracy under the fast gradient sign method (Goodfellow,
Shlens & Szegedy 2015, "Explaining and Harnessing Adversarial Examples", arXiv:1412.6572) and
projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks", arXiv:1706.06083), both in the L-infinity ball of radius epsilon."""

from __future__ import annotations

import keras
import numpy as np

from kres.analysis.chain import value_and_gradient
from kres.analysis.dynamics import classification_loss
from kres.analysis.units import check_images, check_labels
from kres.errors import KresError


def robustness(model, images, labels, epsilons=(0, 1, 2, 4, 8, 16), *, steps=10,
               pixel_range=(0.0, 255.0), batch_size=128):
    """Accuracy of ``model`` (inference mode) on ``images`` perturbed by FGSM and by PGD, for
    each epsilon (in the units of the model's input: raw pixels for kres models built with
    ``include_preprocessing=True``).

    FGSM moves each image by ``epsilon * sign(dL/dx)``; PGD takes ``steps`` such steps of
    ``2.5 * epsilon / steps`` from the clean image (Madry et al.'s step size, no random start,
    so the attack is deterministic), projecting back into the epsilon ball after each. Both
    clip to ``pixel_range``. An image counts as correct if the last perturbed image is.

    Returns a dict: ``model``, ``epsilons``, ``clean`` (accuracy), ``fgsm`` and ``pgd`` (one
    accuracy per epsilon), ``steps``.

    >>> x, y = kres.data.arrays("digits", "test")
    >>> robustness(trained_resnet56, x, y, epsilons=(0, 4, 16))["pgd"]
    """
    images = check_images(model, images)
    labels = check_labels(model, images, labels)
    epsilons = _check_epsilons(epsilons)
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise KresError(f"invalid steps {steps!r}: accepted is a positive integer (PGD steps)")
    low, high = pixel_range
    batches = [(images[s:s + batch_size], labels[s:s + batch_size])
               for s in range(0, len(images), batch_size)]

    def accuracy(attack):
        return float(sum(np.sum(_predict(model, attack(x, y)) == y) for x, y in batches)
                     / len(images))

    def fgsm(eps):
        return lambda x, y: np.clip(x + eps * np.sign(_gradient(model, x, y)), low, high)

    def pgd(eps):
        def attack(x, y):
            adversarial = x
            for _ in range(steps):
                step = adversarial + 2.5 * eps / steps * np.sign(_gradient(model, adversarial, y))
                adversarial = np.clip(np.clip(step, x - eps, x + eps), low, high)
            return adversarial
        return attack

    return {
        "model": model.name,
        "epsilons": np.array(epsilons),
        "clean": accuracy(lambda x, y: x),
        "fgsm": np.array([accuracy(fgsm(e)) for e in epsilons]),
        "pgd": np.array([accuracy(pgd(e)) for e in epsilons]),
        "steps": int(steps),
    }


def _gradient(model, x, y):
    # The sum, not the mean: each image's gradient is its own loss's, whatever the batch size.
    return value_and_gradient(
        lambda t: classification_loss(model, y, model(t, training=False)) * len(y), x)[1]


def _predict(model, x):
    return np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), axis=-1)


def _check_epsilons(epsilons):
    values = list(epsilons) if isinstance(epsilons, (list, tuple, np.ndarray)) else None
    if (not values or any(isinstance(e, bool) or not isinstance(e, (int, float, np.number))
                          or not np.isfinite(e) or e < 0 for e in values)):
        raise KresError(f"invalid epsilons {epsilons!r}: accepted are non-negative numbers, "
                        "perturbation sizes in the model's input units (raw pixels: 0-255)")
    return [float(e) for e in values]
