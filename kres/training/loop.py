"""`train(config)`: one training path for notebooks, the command line and every device setup.

Three steps: `prepare` decides everything (distribution plan, recipe, run directory, datasets)
before any model exists, `build` makes the compiled model inside the plan's scope (restoring the
checkpoint when resuming), and `fit` trains it and writes the run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time

import keras

import kres
import kres.weights
from kres import data as kdata
from kres.errors import ConfigError, RunError
from kres.files import TEMPORARY, atomic_save_model, check_keras_archive, hold, sweep
from kres.rundir import BEST, Run
from kres.training import callbacks as cb
from kres.training import finetune
from kres.training.config import Recipe, TrainConfig, resolve
from kres.training.distribute import Plan, choose, init_multi_host

QAT_OBSERVE_IMAGES = 512  # training images whose activation ranges start QAT


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns: the trained model (final weights), its metrics (as in
    metrics.json), the per-epoch history (as in history.csv), the run directory (a
    :class:`kres.rundir.Run`), the config it was started with and the resolved recipe (both as
    in config.json).

    >>> kres.export.export(result.run, "exports/digits-resnet20")   # its data too
    """

    model: keras.Model
    metrics: dict
    history: list
    run: Run  # the directory this process wrote (a worker's on hosts other than the first)
    config: TrainConfig
    recipe: Recipe

    @property
    def run_dir(self) -> str:
        """The run directory's path."""
        return self.run.path


@dataclasses.dataclass
class Prepared:
    """A prepared run: everything `build` and `fit` need, decided before any model exists."""

    config: TrainConfig
    recipe: Recipe
    plan: Plan
    run: Run  # where this process writes (a worker directory on hosts other than the first)
    checkpoint: cb.Checkpoint
    initial_epoch: int
    datasets: tuple  # train, validation, test

    @property
    def input_shape(self):
        return (self.recipe.image_size, self.recipe.image_size, self.recipe.channels)


def decay_exempt(model: keras.Model) -> list:
    """The variables weight decay must not touch: BatchNorm scales and offsets, and biases
    (every trainable variable with fewer than two dimensions)."""
    return [v for v in model.trainable_variables if len(v.shape) < 2]


def make_optimizer(model: keras.Model, recipe: Recipe, steps_per_epoch: int, *,
                   epochs: int | None = None, scale: float = 1.0) -> keras.optimizers.Optimizer:
    """The recipe's optimizer (SGD with Nesterov momentum, AdamW or LAMB; with an EMA of the
    weights when ``recipe.ema``) on a linear warm-up + cosine schedule over ``epochs`` (default:
    the recipe's) peaking at ``scale`` x the recipe's rate. The schedule is a serialisable Keras
    schedule driven by `optimizer.iterations`, so it continues exactly after a resume."""
    epochs = recipe.epochs if epochs is None else epochs
    peak = recipe.peak_lr * scale
    total = max(epochs * steps_per_epoch, 1)
    warmup = min(round(recipe.warmup_epochs * steps_per_epoch), total - 1)
    if warmup > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=peak, warmup_steps=warmup)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(peak, decay_steps=total)
    common = dict(learning_rate=schedule, weight_decay=recipe.weight_decay or None,
                  use_ema=recipe.ema > 0, ema_momentum=recipe.ema or 0.99)
    if recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(momentum=recipe.momentum, nesterov=True, **common)
    elif recipe.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(**common)
    else:
        optimizer = keras.optimizers.Lamb(**common)
    optimizer.exclude_from_weight_decay(var_list=decay_exempt(model))
    return optimizer


def progress(verbose):
    """Keras' ``verbose`` for ``fit``: "auto" draws progress bars only on a terminal, and prints
    one line per epoch when output goes to a file, a CI log or a notebook's captured output
    (where the bars' escape codes and carriage returns become noise)."""
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() else 2


def train(config: TrainConfig, *, given=None) -> TrainResult:
    """Train `config.model` on `config.data`; write and return the run.

    ``given``: the names of the options the user gave (the command line passes those typed),
    which a resume refuses to change; by default, those that differ from TrainConfig's
    defaults.

    The run directory gets config.json, history.csv, best.keras, final.keras, metrics.json,
    curves.png, logs/ (TensorBoard) and backup/ (the resumable checkpoint). Models take raw
    pixels in [0, 255] (built with `include_preprocessing=True`) and output logits.

    >>> result = kres.training.train(TrainConfig(model="resnet20", data="digits"))
    >>> result.metrics["test_accuracy"]   # 0.99 after the default 30 epochs (seed 0)
    """
    with _lock(config):
        prepared = prepare(config, given)
        with _global_state(prepared):
            model = build(prepared)
            return fit(prepared, model)


@contextlib.contextmanager
def _lock(config: TrainConfig):
    """Hold the run directory's lock (:func:`kres.files.hold`) while training, so that a second
    training into it refuses, and sweep the temporary files of a killed one. Multi-host runs
    write one directory from several machines, where a process id says nothing: not locked."""
    if not isinstance(config, TrainConfig) or config.multi_host or (config.num_processes or 1) > 1:
        yield
        return
    config.check()  # a bad option fails before anything is made on disk
    run = config.run_dir().qat_run if config.qat else config.run_dir()
    with hold(run):
        for directory in (run.path, run.backup):  # a killed process's temporary files
            sweep(directory, TEMPORARY)
        yield


def prepare(config: TrainConfig, given=None) -> Prepared:
    """Check the config, join other hosts, choose the distribution, resolve the recipe, make the
    run directory (config.json) and the datasets. Bad options and data fail here, before any
    model is built. ``given``: as for :func:`train`."""
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train() takes a TrainConfig, got {type(config).__name__}")
    config.check()
    process_id, num_processes = init_multi_host(config)
    out = config.run_dir()
    if config.qat:  # fine-tune the run in out; write out-qat
        config, out = _qat_source(config), out.qat_run
    if config.resume:
        config = _saved_config(out, config if config.qat
                               else dataclasses.replace(config, out=out.path), given)
    _check_run_dir(out, config.resume)
    if keras.backend.backend() == "jax":
        _hide_gpus_from_tensorflow()  # tf.data only; leave the accelerators to JAX

    plan = choose(config.distribute, process_id=process_id, num_processes=num_processes)
    meta = kdata.info(config.data, data_dir=config.data_dir)
    if config.resume:
        _check_classes(out, config, meta)
    recipe = resolve(dataclasses.replace(config, out=out.path), plan, meta)
    print(f"kres: {plan.describe()}")

    # Multi-host: each process writes its own directory (process 0 the run directory itself).
    run = out if plan.chief else out.worker(plan.process_id)
    os.makedirs(run, exist_ok=True)
    checkpoint = cb.Checkpoint(run.backup)
    initial_epoch = checkpoint.committed_epoch() if config.resume else 0
    if num_processes > 1 and config.resume:
        initial_epoch = _agree_on_epoch(initial_epoch)
    if initial_epoch:
        print(f"kres: resuming {run} after epoch {initial_epoch}")
    datasets = _datasets(recipe, plan, first_batch=initial_epoch * recipe.steps_per_epoch)
    run.write_config(dataclasses.asdict(config), recipe.as_dict())
    return Prepared(config, recipe, plan, run, checkpoint, initial_epoch, datasets)


@contextlib.contextmanager
def _global_state(prepared: Prepared):
    """Keras' global dtype policy and distribution for the run, restored afterwards."""
    previous_policy = keras.config.dtype_policy()
    previous_distribution = keras.distribution.distribution()
    keras.utils.set_random_seed(prepared.recipe.seed)
    try:
        if prepared.recipe.mixed_precision != "none":
            keras.config.set_dtype_policy(f"mixed_{prepared.recipe.mixed_precision}")
        if prepared.plan.distribution is not None:
            keras.distribution.set_distribution(prepared.plan.distribution)
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)
        keras.distribution.set_distribution(previous_distribution)


def build(prepared: Prepared) -> keras.Model:
    """The compiled model, its variables created in the plan's scope, started from the recipe's
    checkpoint (``weights``) with the layers ``freeze`` names fixed; the run's checkpoint
    (weights, optimizer state and schedule position) when resuming."""
    recipe = prepared.recipe
    overrides = {}
    if recipe.drop_path_rate is not None:
        overrides["drop_path_rate"] = recipe.drop_path_rate
    if recipe.sync_bn:
        overrides["sync_bn"] = True
    weights = recipe.weights
    if weights is not None and prepared.initial_epoch:
        weights = None  # the checkpoint's statistics, not its weights
        mode = kres.weights.preprocessing_mode(recipe.model, recipe.weights)
        if mode is not None:
            overrides["preprocessing"] = mode
    with prepared.plan.scope():  # model and optimizer variables belong to the strategy
        if prepared.config.qat:
            model = _qat_model(prepared)
        else:
            model = kres.build(recipe.model, input_shape=prepared.input_shape,
                               num_classes=recipe.num_classes, include_preprocessing=True,
                               weights=weights, **overrides)
        # The phase of the last committed epoch: its optimizer is the one in the checkpoint.
        compile_for(model, prepared, _phase(recipe, max(prepared.initial_epoch - 1, 0)))
        if prepared.initial_epoch:
            prepared.checkpoint.restore(model, prepared.initial_epoch)
    if prepared.initial_epoch:
        print(f"kres: restored epoch {prepared.initial_epoch} of {recipe.epochs}")
    return model


def _phase(recipe: Recipe, epoch: int) -> str:
    """"head" during the head-only epochs of a fine-tuning run, else "all"."""
    return "head" if epoch < recipe.head_epochs else "all"


def compile_for(model: keras.Model, prepared: Prepared, phase: str) -> None:
    """Freezes what the phase fixes and compiles: "head" trains only the classifier at the
    recipe's rate; "all" trains everything but ``recipe.freeze`` (after head epochs, at
    ``finetune_lr_scale`` x the rate, on a schedule over the remaining epochs)."""
    recipe = prepared.recipe
    finetune.set_frozen(model, "backbone" if phase == "head" else recipe.freeze)
    if phase == "head":
        optimizer = make_optimizer(model, recipe, recipe.steps_per_epoch,
                                   epochs=recipe.head_epochs)
    elif recipe.head_epochs:
        optimizer = make_optimizer(model, recipe, recipe.steps_per_epoch,
                                   epochs=recipe.epochs - recipe.head_epochs,
                                   scale=recipe.finetune_lr_scale)
    else:
        optimizer = make_optimizer(model, recipe, recipe.steps_per_epoch)
    if recipe.loss == "binary":  # one sigmoid per class ("ResNet strikes back")
        loss = keras.losses.BinaryCrossentropy(from_logits=True,
                                               label_smoothing=recipe.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                    label_smoothing=recipe.label_smoothing)
    model.compile(optimizer=optimizer, loss=loss,
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                  steps_per_execution=recipe.steps_per_execution)
    model.kres_phase = phase


def fit(prepared: Prepared, model: keras.Model) -> TrainResult:
    """Train from the run's initial epoch to its last, then evaluate and write the run's files."""
    recipe, run = prepared.recipe, prepared.run
    train_ds, val_ds, test_ds = prepared.datasets
    history = cb.HistoryCSV(run.history_file, prepared.initial_epoch)
    timer = cb.EpochTimer()
    callbacks = [
        cb.StopOnNonFinite(recipe.epochs, recipe.lr),  # first: before anything records an epoch
        timer,
        keras.callbacks.TensorBoard(run.logs),
        history,
        cb.BestModel(run.best, history.rows),
        # last: the checkpoint commits an epoch after everything else recorded it
        prepared.checkpoint,
    ]
    start = time.perf_counter()
    segments = [("head", 0, min(recipe.head_epochs, recipe.epochs)),
                ("all", recipe.head_epochs, recipe.epochs)]
    for phase, first, last in segments:
        if last <= max(first, prepared.initial_epoch):
            continue
        if getattr(model, "kres_phase", None) != phase:
            with prepared.plan.scope():
                compile_for(model, prepared, phase)
        model.fit(train_ds, validation_data=val_ds, epochs=last,
                  initial_epoch=max(first, prepared.initial_epoch),
                  steps_per_epoch=recipe.steps_per_epoch, callbacks=callbacks,
                  verbose=progress(prepared.config.verbose), shuffle=False)
    train_seconds = time.perf_counter() - start

    atomic_save_model(model, run.final)
    metrics = _metrics(model, prepared, history.rows, timer, train_seconds)
    cb.plot_curves(history.rows, run.curves)
    print(f"kres: test accuracy {metrics['test_accuracy']:.4f} "
          f"(validation {metrics['val_accuracy']:.4f}) after {metrics['epochs_completed']} epochs; "
          f"run saved in {run}")
    sys.stdout.flush()
    return TrainResult(model=model, metrics=metrics, history=history.rows, run=run,
                       config=prepared.config, recipe=recipe)


def _metrics(model, prepared, rows, timer, train_seconds) -> dict:
    """metrics.json: accuracy and loss on validation and test, and training throughput."""
    _, val_ds, test_ds = prepared.datasets
    val = model.evaluate(val_ds, verbose=0, return_dict=True)
    test = model.evaluate(test_ds, verbose=0, return_dict=True)
    # Throughput over this session's epochs, leaving out the first (tracing and compilation):
    # whole epochs (their validation pass included), and the training steps alone.
    throughput, step_throughput = (_throughput(prepared.recipe, s)
                                   for s in (timer.seconds, timer.step_seconds))
    previous = prepared.run.metrics if throughput is None else None
    if previous:  # nothing trained: keep the measured ones
        throughput = previous.get("images_per_second")
        step_throughput = previous.get("step_images_per_second")
    metrics = {
        "val_accuracy": float(val["accuracy"]),
        "val_loss": float(val["loss"]),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "best_val_accuracy": max([r.get("val_accuracy", 0.0) for r in rows] or [0.0]),
        "epochs_completed": len(rows),
        "images_per_second": throughput,
        "step_images_per_second": step_throughput,
        "train_seconds_this_session": train_seconds,
    }
    prepared.run.write_metrics(metrics)
    return metrics


def _throughput(recipe, epoch_seconds) -> float | None:
    """Images per second over ``epoch_seconds`` without the first (tracing and compilation)."""
    timed = epoch_seconds[1:] or epoch_seconds
    images = len(timed) * recipe.steps_per_epoch * recipe.batch_size
    return images / sum(timed) if timed and sum(timed) > 0 else None


def _check_run_dir(run: Run, resume: bool) -> None:
    if os.path.exists(run.path) and not os.path.isdir(run.path):
        raise ConfigError(f"out={run.path!r} is a file; give a directory for the run")
    if run.started and not resume:
        raise ConfigError(
            f"{run.path!r} already holds a run; pass resume=True (--resume) to continue it, "
            "or choose another out directory."
        )
    if resume and run.started:
        run.history  # noqa: B018 - a damaged history.csv is a RunError here, not mid-training
        if os.path.exists(run.best):
            check_keras_archive(run.best)


def _qat_source(config: TrainConfig) -> TrainConfig:
    """``config`` with the model, data and image size of the trained run it fine-tunes."""
    source = config.run_dir()
    used = source.resolved if Run.is_run(source) else None
    if used is None:
        raise ConfigError(f"qat=True fine-tunes the trained run in {source.path!r}, but there is "
                          f"no {BEST} there; train it first (or give its directory as out)")
    return dataclasses.replace(config, model=used["model"], data=used["data"],
                               data_dir=used["data_dir"], image_size=used["image_size"])


def _qat_model(prepared: Prepared) -> keras.Model:
    """The QAT twin of the trained run's best.keras, activation ranges observed on training
    images."""
    from kres import quantize

    recipe = prepared.recipe
    images, _ = kdata.arrays(recipe.data, "train", image_size=recipe.image_size,
                             limit=QAT_OBSERVE_IMAGES, data_dir=recipe.data_dir)
    return quantize.qat(prepared.config.run_dir(), images)


def _saved_config(run: Run, config: TrainConfig, given=None) -> TrainConfig:
    """On resume, the run continues with the config it was started with. An option in
    ``given`` (default: those that differ from TrainConfig's defaults) that differs from the
    run's is refused when it is one of IDENTITY, ignored (and said so) otherwise."""
    if run.config is None:
        return config  # killed before anything was saved: this is a fresh start
    saved = _config_of(run)
    # How to reach the other hosts and how to print may change between attempts; the recipe not.
    keep = {name: getattr(config, name) for name in
            ("out", "verbose", "coordinator_address", "num_processes", "process_id", "multi_host")}
    keep["resume"] = True
    if given is None:
        defaults = TrainConfig()
        given = {f.name for f in dataclasses.fields(TrainConfig)
                 if getattr(config, f.name) != getattr(defaults, f.name)}
    given = [f.name for f in dataclasses.fields(TrainConfig) if f.name in given
             and f.name not in keep and getattr(config, f.name) != getattr(saved, f.name)]
    differ = [name for name in IDENTITY if name in given]
    if differ:
        raise RunError(f"cannot resume {run.path!r} with other " + ", ".join(
            f"{name}={getattr(config, name)!r} (the run has {getattr(saved, name)!r})"
            for name in differ) + "; resume it with its own options, or give another out "
            "directory for a new run")
    if given:
        ignored = ", ".join(f"{name}={getattr(config, name)!r}" for name in given)
        print(f"kres: resuming {run} with its saved config; ignoring {ignored}")
    return dataclasses.replace(saved, **keep)


def _check_classes(run: Run, config: TrainConfig, meta) -> None:
    """A RunError when the dataset has another number of classes than when the run started (a
    class folder added or removed since): its checkpoint has another classifier."""
    then = (run.resolved or {}).get("num_classes")
    if then is not None and then != meta.num_classes:
        raise RunError(f"cannot resume {run.path!r}: it was trained on {then} classes, and "
                       f"{config.data} now has {meta.num_classes} "
                       f"({', '.join(map(str, meta.class_names))}); restore the dataset's "
                       "classes, or give another out directory for a new run")


# What makes a run the run it is: resuming with another of these would train another model.
IDENTITY = ("model", "data", "data_dir", "image_size")


def _config_of(run: Run) -> TrainConfig:
    """The TrainConfig recorded in the run's config.json, or a RunError saying what is wrong."""
    recorded = run.config
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(recorded, dict):
        raise RunError(f"{run.config_file!r} records no training config; the run's record is "
                       "damaged")
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise RunError(f"{run.config_file!r} records options this kres does not know: "
                       f"{', '.join(unknown)} (known: {', '.join(sorted(known))}); it was written "
                       "by another kres version or edited")
    try:
        return TrainConfig(**recorded)
    except TypeError as error:
        raise RunError(f"{run.config_file!r} cannot be read as a training config: {error}") \
            from None


def _datasets(recipe: Recipe, plan: Plan, *, first_batch: int) -> tuple:
    """Train, validation and test pipelines with one-hot labels. Training is an endless stream
    that depends only on (seed, epoch) and starts at `first_batch`: a resumed run continues with
    exactly the batches the interrupted one would have seen next. Each host trains on its own
    shard; every host evaluates on the whole split (duplicates do not change accuracy)."""
    import tensorflow as tf

    common = dict(image_size=recipe.image_size, data_dir=recipe.data_dir, seed=recipe.seed,
                  limit=recipe.limit)
    batch, per_epoch = recipe.per_host_batch, recipe.batches_per_epoch
    shard = (plan.num_processes, plan.process_id) if plan.num_processes > 1 else None
    train = kdata.load(recipe.data, "train", batch_size=batch, training=True, shard=shard,
                       start_epoch=first_batch // per_epoch, randaugment=recipe.randaugment,
                       randaugment_factor=recipe.randaugment_factor, **common)
    train = train.skip(first_batch % per_epoch)
    val = kdata.load(recipe.data, "validation", batch_size=batch, **common)
    test = kdata.load(recipe.data, "test", batch_size=batch, **common)

    def one_hot(x, y):
        return x, tf.one_hot(y, recipe.num_classes)

    train, val, test = (d.map(one_hot) for d in (train, val, test))
    if recipe.mixup or recipe.cutmix:
        train = kdata.mix(train, mixup=recipe.mixup, cutmix=recipe.cutmix, seed=recipe.seed)
    return train, val, test


def _agree_on_epoch(epoch: int) -> int:
    """The epoch every host of a multi-host run can resume from: the oldest committed one."""
    import numpy as np
    from jax.experimental import multihost_utils

    return int(np.min(multihost_utils.process_allgather(np.int32(epoch))))


def _hide_gpus_from_tensorflow() -> None:
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass  # TensorFlow already initialised its devices; nothing to take back
