"""What a training run is: `TrainConfig` (what the user asked) and `Recipe` (every value used).

Every TrainConfig field left at None takes a per-family default, so `TrainConfig(model="resnet20",
data="digits")` is a complete recipe. `resolve` decides everything once, after the distribution
plan is known, into a frozen `Recipe`; config.json records both, so a run can be reproduced from
it alone. The fields' help texts and choices are the command line's too (``kres train``).
"""

from __future__ import annotations

import dataclasses
import math
import platform

import keras

from kres import data as kdata
from kres.errors import ConfigError
from kres.models import get_spec
from kres.options import option
from kres.rundir import Run
from kres.training import finetune

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
# Per dataset, where the family value does not fit it. digits is 1,259 training images, 9 steps
# of 128 per epoch, so its warm-up is 5 epochs (45 steps): with 2 epochs (18 steps) resnet56
# diverged on reaching the peak rate (loss 3.3 -> 5.6) and reached 49.8 % test accuracy after
# 10 epochs, against 98.5 % with 5 (seed 0). He et al. 2015 (Section 4.2) warmed their 110-layer
# CIFAR net up for ~400 steps for the same reason.
DATA_DEFAULTS = {"digits": dict(epochs=30, warmup_epochs=5.0)}
# Quantisation-aware fine-tuning of a trained run: a few epochs at 1/100 of the peak learning
# rate, no warm-up (the weights are trained; QAT only adapts them to int8).
QAT_DEFAULTS = dict(epochs=5, warmup_epochs=0.0)
QAT_LR_FACTOR = 0.01

# Recipe presets (--recipe). "classic": SGD + Nesterov, cosine, label smoothing (the family
# values above). "modern": in the spirit of "ResNet strikes back" (Wightman et al. 2021, the A3
# procedure): LAMB, RandAugment, Mixup 0.1 / CutMix 1.0, binary cross-entropy, a longer
# warm-up, plus an EMA of the weights. Built from Keras' own optimizers and preprocessing layers.
# Values here replace the family/data defaults; explicit options replace both.
RECIPES = {
    "classic": dict(optimizer="sgd", loss="crossentropy", randaugment=0, randaugment_factor=0.0,
                    mixup=0.0, cutmix=0.0, ema=0.0),
    "modern": dict(optimizer="lamb", loss="binary", randaugment=2, randaugment_factor=0.5,
                   mixup=0.1, cutmix=1.0,
                   ema=0.99, lr=0.01, weight_decay=0.02, label_smoothing=0.0, warmup_epochs=5.0),
}
OPTIMIZERS = ("sgd", "adamw", "lamb")
LOSSES = ("crossentropy", "binary")
FREEZE_HELP = "none | backbone | stem | stages<N (stem and stages 1..N-1)"


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run. None means "the default for this model and data".

    >>> cfg = TrainConfig(model="resnet20", data="digits", out="runs/digits-resnet20")
    >>> result = kres.training.train(cfg)
    >>> result.metrics["test_accuracy"]
    """

    model: str = option("resnet20", "a kres model name")
    data: str = option("digits", "digits | tfds:NAME | folder:PATH")
    out: str | None = option(None, "run directory (default runs/<data>-<model>, with -s<seed> "
                                   "for seeds other than 0)")
    epochs: int | None = option(None, "epochs (default: the family's recipe)")
    batch_size: int | None = option(None, "global batch, summed over all replicas and hosts")
    lr: float | None = option(None, "peak learning rate per 256 images, scaled to the batch")
    weight_decay: float | None = option(None, "not applied to BatchNorm and bias parameters")
    label_smoothing: float | None = option(None, "label smoothing of the cross-entropy")
    drop_path_rate: float | None = option(None, "stochastic depth (default: the model's own)")
    warmup_epochs: float | None = option(None, "linear warm-up, then cosine decay to zero")
    momentum: float = option(0.9, "SGD momentum (Nesterov)")
    image_size: int | None = option(None, "square image side (default: the dataset's)")
    mixed_precision: str = option("auto", "auto: bfloat16 on TPU, float16 on GPU, none on CPU",
                                  MIXED_PRECISION)
    distribute: str = option("auto", "how to spread training over devices", DISTRIBUTE)
    sync_bn: bool | None = option(None, "synchronised BatchNorm (default: on with more than one "
                                        "TensorFlow replica)")
    resume: bool = option(False, "continue the run in out (after a kill, or to re-evaluate it)")
    data_dir: str | None = option(None, "tensorflow-datasets data directory")
    seed: int = option(0, "seed of initialisation, data order and augmentation")
    limit: int | None = option(None, "use only this many examples of each split (quick runs)")
    steps_per_epoch: int | None = option(None, "default: one pass over the training split")
    coordinator_address: str | None = option(None, "multi-host JAX: host:port of process 0")
    num_processes: int | None = option(None, "multi-host JAX: number of processes")
    process_id: int | None = option(None, "multi-host JAX: this process's index")
    multi_host: bool = option(False, "multi-host JAX on Cloud TPU (jax.distributed.initialize() "
                                     "discovers the pod)")
    recipe: str = option("classic", "classic (SGD, cosine, label smoothing) | modern (LAMB, "
                                    "RandAugment, Mixup/CutMix, BCE, EMA)", tuple(RECIPES))
    optimizer: str | None = option(None, "default: the recipe's", OPTIMIZERS)
    ema: float | None = option(None, "momentum of an EMA of the weights (0: off; default: the "
                                     "recipe's)")
    weights: str | None = option(None, "start from a checkpoint: a pretrained tag, imagenet, or a "
                                       ".keras/.weights.h5/.h5/.safetensors file")
    freeze: str = option("none", FREEZE_HELP)
    head_epochs: int = option(0, "fine-tuning: train only the head (backbone frozen) for this "
                                 "many epochs, then the rest at finetune_lr_scale x the rate")
    finetune_lr_scale: float = option(0.1, "learning-rate factor after the head epochs")
    steps_per_execution: int | None = option(None, "training steps per device call (default: "
                                                   "chosen for the platform and model)")
    qat: bool = option(False, "quantisation-aware fine-tuning of the trained run in out (its "
                              "best.keras) into out-qat, for int8 files that lose nothing")
    verbose: int | str = option("auto", "progress bar on a terminal, a line per epoch otherwise")

    def check(self) -> None:
        """Raise ConfigError naming the first option whose value cannot be used."""

        def bad(field, accepted):
            raise ConfigError(f"{field}={getattr(self, field)!r} is invalid; accepted: {accepted}")

        for field in ("epochs", "batch_size", "image_size", "limit", "steps_per_epoch",
                      "num_processes", "steps_per_execution"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                bad(field, "a positive integer (or None for the default)")
        for field in ("lr", "weight_decay", "label_smoothing", "drop_path_rate", "warmup_epochs",
                      "ema", "finetune_lr_scale"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, (int, float)) or value < 0
                                      or not math.isfinite(value)):
                bad(field, "a non-negative number (or None for the default)")
        if self.label_smoothing is not None and self.label_smoothing >= 1:
            bad("label_smoothing", "a number in [0, 1)")
        if self.drop_path_rate is not None and self.drop_path_rate >= 1:
            bad("drop_path_rate", "a number in [0, 1)")
        if self.ema is not None and self.ema >= 1:
            bad("ema", "a number in [0, 1) (0: no EMA)")
        if not isinstance(self.head_epochs, int) or self.head_epochs < 0:
            bad("head_epochs", "a non-negative integer")
        for field in dataclasses.fields(self):
            choices = field.metadata.get("choices")
            value = getattr(self, field.name)
            if choices and value not in choices and not (value is None and field.default is None):
                bad(field.name, ", ".join(choices))
        if self.image_size is not None and self.image_size < 8:
            bad("image_size", "at least 8 pixels")
        spec = get_spec(self.model)  # an unknown name raises KresError with the closest names
        kdata.check_name(self.data)  # a form of dataset name kres does not know, not opened
        finetune.parse_freeze(self.freeze, len(spec.depths))
        if self.weights is not None:
            finetune.check_weights(self.model, self.weights)
        if self.head_epochs and self.weights is None:
            bad("head_epochs", "0 without weights (a head-only phase fine-tunes a checkpoint)")

    def run_dir(self) -> Run:
        """The run directory: ``out``, or the run named for the data, model and seed
        (:meth:`kres.rundir.Run.named`)."""
        return Run(self.out) if self.out else Run.named(self.data, self.model, self.seed)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training run with every value decided: what the training code reads and config.json
    records under "resolved". Built once, by :func:`resolve`."""

    model: str
    data: str
    out: str
    family: str  # "cifar" or "imagenet": whose defaults filled the gaps
    epochs: int
    batch_size: int  # global
    lr: float  # per 256 images
    peak_lr: float  # lr x batch_size / 256
    weight_decay: float
    label_smoothing: float
    warmup_epochs: float
    momentum: float
    drop_path_rate: float | None  # None: the model's own
    recipe: str  # the preset: classic or modern
    optimizer: str  # sgd (Nesterov), adamw or lamb
    loss: str  # crossentropy (softmax) or binary (sigmoid per class, as in "ResNet strikes back")
    randaugment: int  # RandAugment operations per image (0: off)
    randaugment_factor: float  # their strength, Keras' normalised factor (timm's magnitude / 10)
    mixup: float  # Mixup alpha (0: off); per batch, Mixup or CutMix with equal odds
    cutmix: float  # CutMix alpha (0: off)
    ema: float  # EMA momentum of the weights (0: off); the EMA replaces the weights at the end
    weights: str | None  # the checkpoint fine-tuning starts from
    freeze: str  # none, backbone, stem or stages<N
    head_epochs: int  # epochs of head-only training before everything trains
    finetune_lr_scale: float  # learning-rate factor after the head epochs
    steps_per_execution: int
    image_size: int
    channels: int
    num_classes: int
    batches_per_epoch: int  # one pass over this host's share of the training split
    steps_per_epoch: int
    mixed_precision: str  # none, float16 or bfloat16
    sync_bn: bool
    seed: int
    limit: int | None
    data_dir: str | None
    distribution: str  # the plan, in words
    replicas: int
    num_processes: int
    backend: str
    keras: str
    python: str

    @property
    def per_host_batch(self) -> int:
        return self.batch_size // self.num_processes

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def family_of(model: str) -> str:
    return "cifar" if get_spec(model).family == "cifar" else "imagenet"


def resolve(config: TrainConfig, plan=None, meta=None) -> Recipe:
    """The run's complete recipe: ``config`` with every default filled in, for the distribution
    ``plan`` (default: one device) and the dataset described by ``meta`` (default: read from
    ``config.data``)."""
    config.check()
    family = family_of(config.model)
    defaults = {**FAMILY_DEFAULTS[family], **DATA_DEFAULTS.get(config.data, {}),
                **RECIPES[config.recipe]}
    if config.qat:
        defaults.update(QAT_DEFAULTS, lr=defaults["lr"] * QAT_LR_FACTOR)
    value = {k: getattr(config, k, None) if getattr(config, k, None) is not None else v
             for k, v in defaults.items()}
    replicas = plan.replicas if plan is not None else 1
    num_processes = plan.num_processes if plan is not None else 1
    if value["batch_size"] % replicas:
        raise ConfigError(
            f"batch_size={value['batch_size']} is the global batch and must divide evenly "
            f"over the {replicas} replicas; use a multiple of {replicas}.")
    meta = meta if meta is not None else kdata.info(config.data, data_dir=config.data_dir)
    batches = _batches_per_epoch(config, meta, value["batch_size"] // num_processes,
                                 num_processes)
    platform_name = plan.platform if plan is not None else "cpu"
    precision = config.mixed_precision
    if precision == "auto":
        precision = {"tpu": "bfloat16", "gpu": "float16"}.get(platform_name, "none")
    image_size = config.image_size or finetune.checkpoint_size(config.model, config.weights) \
        or meta.image_shape[0]
    steps_per_epoch = config.steps_per_epoch or batches
    sync_bn = config.sync_bn
    if sync_bn is None:  # per-replica statistics would differ from one-device training
        sync_bn = plan is not None and plan.strategy is not None and replicas > 1
    return Recipe(
        model=config.model, data=config.data, out=config.run_dir().path, family=family,
        epochs=value["epochs"], batch_size=value["batch_size"], lr=value["lr"],
        peak_lr=value["lr"] * value["batch_size"] / 256, weight_decay=value["weight_decay"],
        label_smoothing=value["label_smoothing"], warmup_epochs=value["warmup_epochs"],
        momentum=config.momentum, drop_path_rate=config.drop_path_rate,
        recipe=config.recipe, optimizer=value["optimizer"], loss=value["loss"],
        randaugment=value["randaugment"], randaugment_factor=value["randaugment_factor"], mixup=value["mixup"], cutmix=value["cutmix"],
        ema=value["ema"], weights=config.weights, freeze=config.freeze,
        head_epochs=config.head_epochs, finetune_lr_scale=config.finetune_lr_scale,
        steps_per_execution=config.steps_per_execution or auto_steps_per_execution(
            family, platform_name, steps_per_epoch),
        image_size=image_size, channels=meta.image_shape[2],
        num_classes=meta.num_classes, batches_per_epoch=batches,
        steps_per_epoch=steps_per_epoch, mixed_precision=precision,
        sync_bn=bool(sync_bn), seed=config.seed, limit=config.limit, data_dir=config.data_dir,
        distribution=plan.describe() if plan is not None else "one device (not planned)",
        replicas=replicas, num_processes=num_processes, backend=keras.backend.backend(),
        keras=keras.__version__, python=platform.python_version())


def auto_steps_per_execution(family: str, platform_name: str, steps_per_epoch: int) -> int:
    """Training steps per device call. Keras' `Model.compile` documents that several steps per
    call "can greatly improve performance on TPUs or small models with a large Python
    overhead". So: up to 32 on TPUs, up to 4 for small (CIFAR-family) models on GPUs, and 1 on
    CPUs, where 4 made no difference for resnet20 (measured on a 2-core AVX2 EPYC). Always a
    divisor of the epoch, so every call runs whole steps of one epoch."""
    if platform_name == "tpu":
        most = 32
    elif platform_name == "gpu" and family == "cifar":
        most = 4
    else:
        most = 1
    return max(d for d in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def _batches_per_epoch(config, meta, per_host_batch, num_processes) -> int:
    num_train = config.limit or meta.splits["train"]
    if num_train is None:  # a tfds dataset that does not know its size before preparation
        num_train = int(kdata.load(config.data, "train", batch_size=1, image_size=8,
                                   data_dir=config.data_dir).cardinality())
    batches = (num_train // num_processes) // per_host_batch
    if batches < 1:
        raise kdata.DataError(
            f"{config.data} has {num_train} training examples, fewer than one batch of "
            f"{per_host_batch} per host; use a smaller batch_size.")
    return batches
