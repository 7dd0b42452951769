"""`train(config)`: one training path for notebooks, the command line and every device setup."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time

import keras

from kres.training import callbacks as cb
from kres.training.config import ConfigError, TrainConfig, resolve
from kres.training.distribute import Plan, choose, init_multi_host


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns: the trained model (final weights), its metrics (as in
    metrics.json), the per-epoch history (as in history.csv), the run directory and the resolved
    recipe (as in config.json)."""

    model: keras.Model
    metrics: dict
    history: list
    run_dir: str
    config: dict


def decay_exempt(model: keras.Model) -> list:
    """The variables weight decay must not touch: BatchNorm scales and offsets, and biases
    (every trainable variable with fewer than two dimensions)."""
    return [v for v in model.trainable_variables if len(v.shape) < 2]


def make_optimizer(model: keras.Model, recipe: dict, steps_per_epoch: int) -> keras.optimizers.SGD:
    """SGD with Nesterov momentum on a linear warm-up + cosine schedule (a serialisable Keras
    schedule driven by `optimizer.iterations`, so it continues exactly after a resume)."""
    total = max(recipe["epochs"] * steps_per_epoch, 1)
    warmup = min(round(recipe["warmup_epochs"] * steps_per_epoch), total - 1)
    peak = recipe["peak_lr"]
    if warmup > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=peak, warmup_steps=warmup)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(peak, decay_steps=total)
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule, momentum=recipe["momentum"], nesterov=True,
        weight_decay=recipe["weight_decay"] or None)
    optimizer.exclude_from_weight_decay(var_list=decay_exempt(model))
    return optimizer


def progress(verbose):
    """Keras' ``verbose`` for ``fit``: "auto" draws progress bars only on a terminal, and prints
    one line per epoch when output goes to a file, a CI log or a notebook's captured output
    (where the bars' escape codes and carriage returns become noise)."""
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() else 2


def _mixed_precision(choice: str, plan: Plan) -> str:
    if choice != "auto":
        return choice
    return {"tpu": "bfloat16", "gpu": "float16"}.get(plan.platform, "none")


def _check_run_dir(run_dir: str, resume: bool) -> None:
    started = any(os.path.exists(os.path.join(run_dir, f))
                  for f in ("config.json", "history.csv", "final.keras"))
    if started and not resume:
        raise ConfigError(
            f"{run_dir!r} already holds a run; pass resume=True (--resume) to continue it, "
            "or choose another out directory."
        )


def _saved_config(run_dir: str, config: TrainConfig) -> TrainConfig:
    """On resume, the run continues with the config it was started with."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return config  # killed before anything was saved: this is a fresh start
    with open(path) as f:
        saved = TrainConfig(**json.load(f)["config"])
    # How to reach the other hosts and how to print may change between attempts; the recipe not.
    keep = {name: getattr(config, name) for name in
            ("out", "verbose", "coordinator_address", "num_processes", "process_id", "multi_host")}
    keep["resume"] = True
    defaults = TrainConfig()
    ignored = [f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(TrainConfig)
               if f.name not in keep
               and getattr(config, f.name) != getattr(defaults, f.name)
               and getattr(config, f.name) != getattr(saved, f.name)]
    if ignored:
        print(f"kres: resuming {run_dir} with its saved config; ignoring {', '.join(ignored)}")
    return dataclasses.replace(saved, **keep)


def train(config: TrainConfig) -> TrainResult:
    """Train `config.model` on `config.data`; write and return the run.

    The run directory gets config.json, history.csv, best.keras, final.keras, metrics.json,
    curves.png, logs/ (TensorBoard) and backup/ (the resumable checkpoint). Models take raw
    pixels in [0, 255] (built with `include_preprocessing=True`) and output logits.

    >>> result = kres.training.train(TrainConfig(model="resnet20", data="digits"))
    >>> result.metrics["test_accuracy"]   # 0.996 after the default 30 epochs (seed 0)
    """
    import kres.data

    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train() takes a TrainConfig, got {type(config).__name__}")
    config.check()
    process_id, num_processes = init_multi_host(config)
    out = config.out or resolve(config)["out"]
    if config.resume:
        config = _saved_config(out, dataclasses.replace(config, out=out))
    _check_run_dir(out, config.resume)
    if keras.backend.backend() == "jax":
        _hide_gpus_from_tensorflow()  # tf.data only; leave the accelerators to JAX

    plan = choose(config.distribute, process_id=process_id, num_processes=num_processes)
    recipe = resolve(dataclasses.replace(config, out=out), replicas=plan.replicas)
    print(f"kres: {plan.describe()}")
    precision = _mixed_precision(config.mixed_precision, plan)
    recipe["mixed_precision_used"] = precision
    sync_bn = recipe["sync_bn"]
    if sync_bn is None:  # per-replica statistics would differ from one-device training
        sync_bn = plan.strategy is not None and plan.replicas > 1
    recipe["sync_bn_used"] = bool(sync_bn)

    # Multi-host: each process writes its own directory (process 0 the run directory itself).
    run_dir = out if plan.chief else os.path.join(out, f"worker-{plan.process_id}")
    os.makedirs(run_dir, exist_ok=True)

    # Data first: bad data fails here, before any model is built.
    meta = kres.data.info(config.data, data_dir=config.data_dir)
    size = recipe["image_size"] or meta.image_shape[0]
    recipe["image_size_used"] = size
    per_host_batch = recipe["batch_size"] // num_processes
    batches_per_epoch = _batches_per_epoch(config, meta, per_host_batch, num_processes)
    steps = config.steps_per_epoch or batches_per_epoch
    recipe["steps_per_epoch_used"] = steps

    checkpoint = cb.Checkpoint(os.path.join(run_dir, "backup"))
    initial_epoch = checkpoint.committed_epoch() if config.resume else 0
    if num_processes > 1 and config.resume:
        initial_epoch = _agree_on_epoch(initial_epoch)
    train_ds, val_ds, test_ds = _datasets(config, meta, size, per_host_batch, plan,
                                          first_batch=initial_epoch * steps,
                                          batches_per_epoch=batches_per_epoch)

    if initial_epoch:
        print(f"kres: resuming {run_dir} after epoch {initial_epoch}")
    recipe.update(backend=keras.backend.backend(), keras=keras.__version__,
                  python=platform.python_version(), distribution=plan.describe(),
                  num_processes=num_processes)
    cb.atomic_write_text(os.path.join(run_dir, "config.json"), json.dumps(
        {"config": dataclasses.asdict(config), "resolved": recipe}, indent=2, default=str))

    previous_policy = keras.config.dtype_policy()
    previous_distribution = keras.distribution.distribution()
    keras.utils.set_random_seed(config.seed)
    try:
        if precision != "none":
            keras.config.set_dtype_policy(f"mixed_{precision}")
        if plan.distribution is not None:
            keras.distribution.set_distribution(plan.distribution)
        with plan.scope():  # model and optimizer variables belong to the strategy
            model = _compiled_model(recipe, (size, size, meta.image_shape[2]), meta.num_classes,
                                    steps)
            if initial_epoch:
                checkpoint.restore(model, initial_epoch)
        if initial_epoch:
            print(f"kres: restored epoch {initial_epoch} of {recipe['epochs']}")
        return _fit(model, recipe, run_dir, checkpoint, initial_epoch, train_ds, val_ds, test_ds,
                    steps, config)
    finally:
        keras.config.set_dtype_policy(previous_policy)
        keras.distribution.set_distribution(previous_distribution)


def _fit(model, recipe, run_dir, checkpoint, initial_epoch, train_ds, val_ds, test_ds, steps,
         config) -> TrainResult:
    history_path = os.path.join(run_dir, "history.csv")
    history = cb.HistoryCSV(history_path, initial_epoch)
    best_so_far = max((r.get("val_accuracy", float("-inf")) for r in history.rows),
                      default=float("-inf"))
    timer = cb.EpochTimer()
    callbacks = [
        timer,
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
        history,
        cb.BestModel(os.path.join(run_dir, "best.keras"), best=best_so_far),
        checkpoint,  # last: the checkpoint commits an epoch after everything else recorded it
    ]
    start = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=recipe["epochs"],
              initial_epoch=initial_epoch, steps_per_epoch=steps,
              callbacks=callbacks, verbose=progress(config.verbose), shuffle=False)
    train_seconds = time.perf_counter() - start

    cb.atomic_save_model(model, os.path.join(run_dir, "final.keras"))
    val = model.evaluate(val_ds, verbose=0, return_dict=True)
    test = model.evaluate(test_ds, verbose=0, return_dict=True)
    # Throughput over this session's epochs, leaving out the first (tracing and compilation).
    timed = timer.seconds[1:] or timer.seconds
    images = len(timed) * steps * recipe["batch_size"]
    throughput = images / sum(timed) if timed and sum(timed) > 0 else None
    metrics_path = os.path.join(run_dir, "metrics.json")
    if throughput is None and os.path.exists(metrics_path):  # nothing trained: keep the measured
        with open(metrics_path) as f:
            throughput = json.load(f).get("images_per_second")
    metrics = {
        "val_accuracy": float(val["accuracy"]),
        "val_loss": float(val["loss"]),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "best_val_accuracy": max([r.get("val_accuracy", 0.0) for r in history.rows] or [0.0]),
        "epochs_completed": len(history.rows),
        "images_per_second": throughput,
        "train_seconds_this_session": train_seconds,
    }
    cb.atomic_write_text(metrics_path, json.dumps(metrics, indent=2))
    cb.plot_curves(history.rows, os.path.join(run_dir, "curves.png"))
    print(f"kres: test accuracy {metrics['test_accuracy']:.4f} "
          f"(validation {metrics['val_accuracy']:.4f}) after {metrics['epochs_completed']} epochs; "
          f"run saved in {run_dir}")
    sys.stdout.flush()
    return TrainResult(model=model, metrics=metrics, history=history.rows, run_dir=run_dir,
                       config=recipe)


def _compiled_model(recipe, input_shape, num_classes, steps_per_epoch) -> keras.Model:
    import kres

    overrides = {}
    if recipe["drop_path_rate"] is not None:
        overrides["drop_path_rate"] = recipe["drop_path_rate"]
    if recipe["sync_bn_used"]:
        overrides["sync_bn"] = True
    model = kres.build(recipe["model"], input_shape=input_shape, num_classes=num_classes,
                       include_preprocessing=True, **overrides)
    model.compile(
        optimizer=make_optimizer(model, recipe, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=recipe["label_smoothing"]),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def _batches_per_epoch(config, meta, per_host_batch, num_processes) -> int:
    import kres.data

    num_train = config.limit or meta.splits["train"]
    if num_train is None:  # a tfds dataset that does not know its size before preparation
        num_train = int(kres.data.load(config.data, "train", batch_size=1, image_size=8,
                                       data_dir=config.data_dir).cardinality())
    batches = (num_train // num_processes) // per_host_batch
    if batches < 1:
        raise kres.data.DataError(
            f"{config.data} has {num_train} training examples, fewer than one batch of "
            f"{per_host_batch} per host; use a smaller batch_size.")
    return batches


def _datasets(config, meta, size, per_host_batch, plan, *, first_batch, batches_per_epoch):
    """Train, validation and test pipelines with one-hot labels. Training is an endless stream
    that depends only on (seed, epoch) and starts at `first_batch`: a resumed run continues with
    exactly the batches the interrupted one would have seen next. Each host trains on its own
    shard; every host evaluates on the whole split (duplicates do not change accuracy)."""
    import kres.data

    common = dict(image_size=size, data_dir=config.data_dir, seed=config.seed, limit=config.limit)
    shard = (plan.num_processes, plan.process_id) if plan.num_processes > 1 else None
    train = kres.data.load(config.data, "train", batch_size=per_host_batch, training=True,
                           shard=shard, start_epoch=first_batch // batches_per_epoch, **common)
    train = train.skip(first_batch % batches_per_epoch)
    val = kres.data.load(config.data, "validation", batch_size=per_host_batch, **common)
    test = kres.data.load(config.data, "test", batch_size=per_host_batch, **common)
    one_hot = _one_hot(meta.num_classes)
    return tuple(d.map(one_hot) for d in (train, val, test))


def _agree_on_epoch(epoch: int) -> int:
    """The epoch every host of a multi-host run can resume from: the oldest committed one."""
    import numpy as np
    from jax.experimental import multihost_utils

    return int(np.min(multihost_utils.process_allgather(np.int32(epoch))))


def _one_hot(num_classes: int):
    import tensorflow as tf

    return lambda x, y: (x, tf.one_hot(y, num_classes))


def _hide_gpus_from_tensorflow() -> None:
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass  # TensorFlow already initialised its devices; nothing to take back
