"""What a training run is: `TrainConfig` (what the user asked) and its resolved form.

Every field left at None takes a per-family default, so `TrainConfig(model="resnet20",
data="digits")` is a complete recipe. `resolve` fills them in; the resolved dict is what
config.json records, so a run can be reproduced from it alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

from kres.errors import ConfigError

MIXED_PRECISION = ("auto", "none", "float16", "bfloat16")
DISTRIBUTE = ("auto", "none", "mirrored", "tpu", "data-parallel")

# Per model family: global batch, peak learning rate per 256 images (scaled linearly with the
# global batch), weight decay, label smoothing, warm-up epochs, epochs. CIFAR values follow
# He et al. 2015 (lr 0.1 at batch 128, wd 5e-4 as L2 under SGD); ImageNet values the torchvision
# "v1 + label smoothing + warm-up" recipe.
FAMILY_DEFAULTS = {
    "cifar": dict(batch_size=128, lr=0.2, weight_decay=5e-4, label_smoothing=0.0,
                  warmup_epochs=1.0, epochs=180),
    "imagenet": dict(batch_size=256, lr=0.1, weight_decay=1e-4, label_smoothing=0.1,
                     warmup_epochs=5.0, epochs=90),
}
# Per dataset, where the family value does not fit it (digits is 1,259 training images).
DATA_DEFAULTS = {"digits": dict(epochs=30, warmup_epochs=2.0)}


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run. None means "the default for this model and data".

    >>> cfg = TrainConfig(model="resnet20", data="digits", out="runs/digits-resnet20")
    >>> result = kres.training.train(cfg)
    >>> result.metrics["test_accuracy"]
    """

    model: str = "resnet20"
    data: str = "digits"
    out: str | None = None  # run directory; default runs/<data>-<model>
    epochs: int | None = None
    batch_size: int | None = None  # global batch, summed over all replicas and hosts
    lr: float | None = None  # peak learning rate for a global batch of 256, scaled linearly
    weight_decay: float | None = None  # not applied to BatchNorm and bias parameters
    label_smoothing: float | None = None
    drop_path_rate: float | None = None  # stochastic depth; default: the model's own
    warmup_epochs: float | None = None  # linear warm-up, then cosine decay to zero
    momentum: float = 0.9  # SGD, Nesterov
    image_size: int | None = None  # square side; default: the dataset's
    mixed_precision: str = "auto"  # auto: bfloat16 on TPU, float16 on GPU, none on CPU
    distribute: str = "auto"
    sync_bn: bool | None = None  # synchronised BatchNorm; default: on with >1 TF replica
    resume: bool = False
    data_dir: str | None = None
    seed: int = 0
    limit: int | None = None  # use only this many examples of each split (quick runs, tests)
    steps_per_epoch: int | None = None  # default: one pass over the training split
    coordinator_address: str | None = None  # multi-host JAX: "host:port" of process 0
    num_processes: int | None = None
    process_id: int | None = None
    multi_host: bool = False  # multi-host JAX on Cloud TPU: jax.distributed.initialize() alone
    verbose: int | str = "auto"  # progress bar on a terminal, a line per epoch otherwise

    def check(self) -> None:
        """Raise ConfigError naming the first option whose value cannot be used."""

        def bad(field, accepted):
            raise ConfigError(f"{field}={getattr(self, field)!r} is invalid; accepted: {accepted}")

        for field in ("epochs", "batch_size", "image_size", "limit", "steps_per_epoch",
                      "num_processes"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                bad(field, "a positive integer (or None for the default)")
        for field in ("lr", "weight_decay", "label_smoothing", "drop_path_rate", "warmup_epochs"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, (int, float)) or value < 0
                                      or not math.isfinite(value)):
                bad(field, "a non-negative number (or None for the default)")
        if self.label_smoothing is not None and self.label_smoothing >= 1:
            bad("label_smoothing", "a number in [0, 1)")
        if self.drop_path_rate is not None and self.drop_path_rate >= 1:
            bad("drop_path_rate", "a number in [0, 1)")
        if self.mixed_precision not in MIXED_PRECISION:
            bad("mixed_precision", ", ".join(MIXED_PRECISION))
        if self.distribute not in DISTRIBUTE:
            bad("distribute", ", ".join(DISTRIBUTE))
        if self.image_size is not None and self.image_size < 8:
            bad("image_size", "at least 8 pixels")
        from kres.models import get_spec

        get_spec(self.model)  # an unknown name raises KresError with the closest names


def family_of(model: str) -> str:
    from kres.models import get_spec

    return "cifar" if get_spec(model).family == "cifar" else "imagenet"


def default_out(config: TrainConfig) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.data.split(":", 1)[-1]).strip("-") or "data"
    return os.path.join("runs", f"{slug}-{config.model}")


def resolve(config: TrainConfig, *, replicas: int = 1) -> dict:
    """The run's complete recipe: the config with every default filled in, plus the derived
    peak learning rate (`lr` x global batch / 256)."""
    config.check()
    family = family_of(config.model)
    defaults = {**FAMILY_DEFAULTS[family], **DATA_DEFAULTS.get(config.data, {})}
    resolved = dataclasses.asdict(config)
    for key, value in defaults.items():
        if resolved.get(key) is None:
            resolved[key] = value
    if resolved["out"] is None:
        resolved["out"] = default_out(config)
    if resolved["batch_size"] % replicas:
        raise ConfigError(
            f"batch_size={resolved['batch_size']} is the global batch and must divide evenly "
            f"over the {replicas} replicas; use a multiple of {replicas}."
        )
    resolved["family"] = family
    resolved["peak_lr"] = resolved["lr"] * resolved["batch_size"] / 256
    return resolved
