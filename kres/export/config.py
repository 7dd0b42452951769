"""What an export is asked to do: `ExportConfig` (every option but the model and the output
directory) and its `Tolerances`. Like `kres.training.TrainConfig`, each field carries its
command-line help and choices (``kres export``); a value that cannot be used fails here, when the
config is made, with one line naming the option.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kres.errors import ExportError, suggest
from kres.export.onnx import ONNX_QUANTIZATIONS
from kres.export.tflite import IO_TYPES, TFLITE_QUANTIZATIONS
from kres.options import option

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
APPLIES = {"saved_model": ("fp32",), "tflite": TFLITE_QUANTIZATIONS, "onnx": ONNX_QUANTIZATIONS}


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """When an artifact counts as the Keras model. fp32 files: outputs within ``max_abs_diff``,
    or ``max_rel_diff`` times the largest Keras output when that is more (a random-weight
    ResNet-50 has logits near 6000, where one float32 step is 5e-4). Quantised classifiers: top-1
    agreement of at least ``min_agreement`` on real held-out images. Quantised models with
    other outputs (feature maps): every output's relative error ||got - keras|| / ||keras|| at
    most ``max_quantized_error``."""

    max_abs_diff: float = option(1e-4, "fp32 files: largest |difference| from the Keras outputs")
    max_rel_diff: float = option(1e-5, "fp32 files: or this times the largest Keras output, "
                                       "when that is more")
    min_agreement: float = option(0.98, "quantised classifiers: least top-1 agreement with Keras")
    max_quantized_error: float = option(0.1, "quantised feature maps: largest relative error "
                                             "||file - keras|| / ||keras||")

    def __post_init__(self):
        for name in ("max_abs_diff", "max_rel_diff", "max_quantized_error"):
            if not getattr(self, name) >= 0:
                raise ExportError(f"{name}={getattr(self, name)!r}: accepted is a number >= 0")
        if not 0 <= self.min_agreement <= 1:
            raise ExportError(f"min_agreement={self.min_agreement!r}: accepted is a fraction "
                              "in [0, 1], e.g. 0.98")

    def fp32_limit(self, expected):
        values = expected.values() if isinstance(expected, dict) else [expected]
        return max(self.max_abs_diff,
                   self.max_rel_diff * max(float(np.abs(v).max()) for v in values))


# tf2onnx 1.17 converts up to opset 18 (tf2onnx.constants.OPSET_TO_IR_VERSION); onnxruntime's
# int8 quantisation writes per-channel QDQ nodes, which need opset 13 or above (its own check in
# onnxruntime.quantization).
OPSETS = range(13, 19)


@dataclasses.dataclass
class ExportConfig:
    """Everything an export does with a model, but the model and where it goes.

    >>> config = ExportConfig(formats="tflite", quantize="int8", io="uint8")
    >>> kres.export.export("runs/digits-resnet20", "exports/digits-int8", config)
    >>> kres.export.export("runs/digits-resnet20", "exports/x", config, verify_samples=64)

    ``formats`` and ``quantize`` take a sequence or a comma-separated string. ``calibration``
    (images that replace the calibration split) is for Python callers only.
    """

    data: str | None = option(None, "dataset for calibration (its train split) and verification "
                                    "(test); default: the training run's, else generated images "
                                    "and no int8")
    formats: tuple[str, ...] = option(FORMATS, "formats to write", FORMATS)
    quantize: tuple[str, ...] | None = option(
        None, "quantisations (default: all that apply: TFLite all four, ONNX fp32 and int8, "
              "SavedModel fp32)", QUANTIZATIONS)
    io: str = option("float", "input/output type of the int8 TFLite file", IO_TYPES)
    calibration_samples: int = option(200, "training images that calibrate the int8 files")
    verify_samples: int | None = option(None, "test images every artifact is checked on "
                                              "(default: all)")
    threads: int = option(2, "threads of the runtimes, for verification and latency")
    opset: int = option(17, "ONNX opset")
    latency_repeats: int = option(30, "single-image runs each latency is the median of")
    weights: str | None = option(None, "pretrained weights for a model name (passed to "
                                       "kres.build)")
    data_dir: str | None = option(None, "tensorflow-datasets data directory")
    metadata: bool = option(True, "embed labels and input normalisation in the TFLite files")
    tolerances: Tolerances = option(Tolerances(), "when an artifact counts as the Keras model")
    calibration: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.formats = _choices("formats", self.formats, FORMATS)
        if self.quantize is not None:
            self.quantize = _choices("quantize", self.quantize, QUANTIZATIONS)
        if self.io not in IO_TYPES:
            raise ExportError(f"io={self.io!r} is not supported; accepted: {', '.join(IO_TYPES)}")
        for name, least in (("calibration_samples", 0), ("verify_samples", 1), ("threads", 1),
                            ("opset", 1), ("latency_repeats", 1)):
            value = getattr(self, name)
            if value is None and name == "verify_samples":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ExportError(f"{name}={value!r}: accepted is an integer >= {least}")
        if self.opset not in OPSETS:
            raise ExportError(f"opset={self.opset!r}: accepted is an ONNX opset from "
                              f"{OPSETS[0]} to {OPSETS[-1]}")
        if self.tolerances is None:
            self.tolerances = Tolerances()
        elif isinstance(self.tolerances, dict):
            self.tolerances = Tolerances(**self.tolerances)
        elif not isinstance(self.tolerances, Tolerances):
            raise ExportError(f"tolerances={self.tolerances!r}: accepted is a Tolerances")

    @property
    def quantizations(self) -> tuple:
        """The quantisations asked for, or all of them when ``quantize`` is None."""
        return self.quantize if self.quantize is not None else QUANTIZATIONS

    def replace(self, **changes) -> ExportConfig:
        """This config with ``changes`` (options by name), checked; a TypeError names an option
        that does not exist and the closest ones that do."""
        names = [f.name for f in dataclasses.fields(self)]
        for name in changes:
            if name not in names:
                raise TypeError(f"unknown export option {name!r}; closest: "
                                f"{suggest(name, names)}")
        return dataclasses.replace(self, **changes)


def _choices(argument, values, accepted):
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    unknown = [v for v in values if v not in accepted]
    if unknown or not values:
        got = f"unknown {', '.join(map(repr, unknown))}" if unknown else "nothing given"
        raise ExportError(f"{argument}: {got}; accepted: {', '.join(accepted)}")
    return tuple(v for v in accepted if v in values)
