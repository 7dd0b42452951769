"""Callbacks that make a run directory survive being killed at any moment.

Every file that matters is written atomically (kres.files). The checkpoint commits last at the
end of an epoch, so a run killed anywhere resumes from the last committed epoch and rewrites
everything after it.
"""

from __future__ import annotations

import glob
import json
import math
import os
import time

import keras

from kres.errors import ConfigError, TrainingError
from kres.files import atomic_save_model, atomic_save_weights, atomic_write_text, replacing
from kres.rundir import read_history


class Checkpoint(keras.callbacks.Callback):
    """Backs up the weights and optimizer state (hence the learning-rate schedule) every epoch.

    Like `keras.callbacks.BackupAndRestore`, but atomic: each epoch's weights go to their own
    file and `state.json`, replaced atomically after the weights are on disk, is the commit
    point. `restore` (called before `fit`) returns the epoch to continue from.
    """

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    @property
    def _state_path(self) -> str:
        return os.path.join(self.directory, "state.json")

    def _state(self) -> dict | None:
        if not os.path.exists(self._state_path):
            return None
        with open(self._state_path) as f:
            return json.load(f)

    def committed_epoch(self) -> int:
        """How many epochs the last committed state holds (0 if none)."""
        state = self._state()
        return int(state["epoch"]) if state else 0

    def restore(self, model: keras.Model, epoch: int | None = None) -> int:
        """Load the last committed state (or the one of `epoch`, one of the last two kept) into
        `model`; returns its epoch count (0 if there is none)."""
        epoch = self.committed_epoch() if epoch is None else epoch
        if epoch == 0:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        path = os.path.join(self.directory, _weights_name(epoch))
        try:  # a .weights.h5 file: the same on every backend, so a run can change backend
            model.load_weights(path)
        except Exception as e:  # noqa: BLE001 - h5py, Keras and OS errors alike
            reason = " ".join(str(e).split())[:300]
            raise ConfigError(
                f"cannot resume from {path!r} on the {keras.backend.backend()} backend: the "
                f"checkpoint cannot be read into this model ({type(e).__name__}: {reason}); "
                "start a new run (another out directory) instead") from None
        return epoch

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        name = _weights_name(epoch + 1)
        atomic_save_weights(self.model, os.path.join(self.directory, name))
        atomic_write_text(self._state_path, json.dumps({"epoch": epoch + 1, "weights": name}))
        # Keep the previous epoch too: the hosts of a multi-host run, killed at one moment, can
        # be one commit apart and resume from the older one together.
        keep = {name, _weights_name(epoch)}
        for old in glob.glob(os.path.join(self.directory, "*.weights.h5")):
            if os.path.basename(old) not in keep:
                os.remove(old)


def _weights_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.weights.h5"


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the end of an epoch whose loss is NaN or infinite, before anything
    records it, with a TrainingError naming the epoch: history.csv, best.keras and the
    checkpoint keep the last finite epoch. Like ``keras.callbacks.TerminateOnNaN``, which only
    sets ``stop_training`` (after which the run would save a NaN final model and succeed), and
    checked per epoch rather than per batch, so training steps are not synchronised for it."""

    def __init__(self, epochs: int, lr: float | None = None):
        super().__init__()
        self.epochs, self.lr = epochs, lr

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        self.model.stop_training = True
        rate = f" (peak learning rate {self.lr:g}: try a lower --lr)" if self.lr else ""
        kept = (f"best.keras and the checkpoint keep epoch {epoch} and before" if epoch
                else "no epoch finished with a finite loss, nothing is saved")
        raise TrainingError(f"training stopped at epoch {epoch + 1} of {self.epochs}: the loss is "
                            f"{float(loss)}{rate}; {kept}")


class EpochTimer(keras.callbacks.Callback):
    """Adds `seconds` (wall time of the epoch, its validation pass included) and `lr` to the
    epoch logs, and keeps `step_seconds`: the epoch's training steps alone, up to the start of
    its validation pass (Keras' fit runs validation through the same callbacks, so
    ``on_test_begin`` marks it). `step_seconds` stays out of the logs: history.csv keeps its
    columns, so the history of a run started by an earlier version still reads on resume."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self.step_seconds = []
        self._steps_done = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._steps_done = None

    def on_test_begin(self, logs=None):
        if self._steps_done is None:
            self._steps_done = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        elapsed = end - self._start
        self.seconds.append(elapsed)
        self.step_seconds.append((self._steps_done or end) - self._start)
        if logs is not None:
            logs["seconds"] = elapsed
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class HistoryCSV(keras.callbacks.Callback):
    """history.csv, one row per completed epoch, `epoch` first (1-based).

    On resume from epoch N it first drops rows after N (epochs that finished after the last
    checkpoint and will be trained again), so every epoch appears exactly once.
    """

    def __init__(self, path: str, initial_epoch: int = 0):
        super().__init__()
        self.path = path
        self.rows = [r for r in read_history(path) if r["epoch"] <= initial_epoch]
        self._write()

    def _write(self):
        keys = ["epoch"] + sorted({k for r in self.rows for k in r} - {"epoch"})
        lines = [",".join(keys)] + [",".join(_fmt(r.get(k, "")) for k in keys) for r in self.rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)
        self._write()


def _fmt(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


class BestModel(keras.callbacks.Callback):
    """Saves best.keras (atomically) whenever an epoch beats every earlier one: a higher
    validation accuracy, or the same accuracy with a lower validation loss. On a small
    validation split many epochs tie on accuracy (digits: 269 images, one image is 0.37 %),
    and without the tie-break best.keras was the first of them, however early. ``rows``: the
    epochs an earlier session of the run recorded."""

    def __init__(self, path: str, rows=()):
        super().__init__()
        self.path = path
        self.best = max(filter(None, map(self.rank, rows)), default=None)

    @staticmethod
    def rank(logs):
        """(accuracy, -loss) of an epoch's validation, None when it has none."""
        accuracy, loss = (logs or {}).get("val_accuracy"), (logs or {}).get("val_loss")
        if accuracy is None or not math.isfinite(accuracy):
            return None
        return float(accuracy), -(float(loss) if loss is not None and math.isfinite(loss)
                                  else float("inf"))

    def on_epoch_end(self, epoch, logs=None):
        rank = self.rank(logs)
        if rank is not None and (self.best is None or rank > self.best):
            self.best = rank
            atomic_save_model(self.model, self.path)


def plot_curves(history: list[dict], path: str) -> None:
    """curves.png: loss and accuracy per epoch, train and validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = [r.get(prefix + metric) for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
