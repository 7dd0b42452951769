"""What every converter shares: argument checks, calibration images and the model's names.

Models take RAW pixels (float32 NHWC in [0, 255]) when built with ``include_preprocessing=True``;
calibration images must be given the same way, from real data, never random.
"""

from __future__ import annotations

import numpy as np

from kres.errors import ExportError


def check_choice(argument, value, accepted):
    """An ExportError naming ``argument``, what it got and what it accepts, unless ``value`` is
    one of ``accepted``."""
    if value not in accepted:
        raise ExportError(f"{argument}={value!r} is not supported; accepted: {', '.join(accepted)}")


def check_calibration(calibration, model, quantization="int8"):
    """``calibration`` as a float32 array, or an ExportError when there are no images or they do
    not have the model's input shape."""
    if calibration is None:
        raise ExportError(f"quantization={quantization!r} needs calibration images: real, "
                          "preprocessed like the model's inputs (never random data)")
    calibration = np.asarray(calibration, np.float32)
    expected = tuple(model.inputs[0].shape[1:])
    if calibration.ndim != len(expected) + 1 or len(calibration) == 0 or any(
            e is not None and e != g for e, g in zip(expected, calibration.shape[1:])):
        raise ExportError(f"calibration images have shape {calibration.shape}; the model takes "
                          f"(N, {', '.join('?' if e is None else str(e) for e in expected)})")
    return calibration


def calibration_sample(images, n):
    """``n`` images spread evenly over ``images`` (all of them when there are fewer)."""
    if len(images) <= n:
        return images
    return images[np.linspace(0, len(images) - 1, n).round().astype(int)]


def io_names(model):
    """The input's name and the outputs' names: the Keras input and output layers' names."""
    return model.inputs[0].name, list(model.output_names)
