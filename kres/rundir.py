"""A training run directory as one object: :class:`Run` knows its name, its files and what they
record, for training (which writes them), export and QAT (which read them) and the commands.

    runs/digits-resnet20/          Run.named("digits", "resnet20")
        config.json    {"config": the TrainConfig as given, "resolved": every value used}
        history.csv    one row per epoch
        best.keras     the epoch with the best validation accuracy
        final.keras    the last epoch
        metrics.json   test and validation accuracy, throughput
        curves.png     loss and accuracy per epoch
        logs/          TensorBoard
        backup/        the resumable checkpoint (weights, optimizer state, epoch)
        worker-1/      multi-host training: another host's own copy of these files
    runs/digits-resnet20-qat/      its quantisation-aware fine-tuning (``--qat``), the same files
    runs/digits-resnet20-s1/       Run.named("digits", "resnet20", seed=1)
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import NamedTuple

from kres.errors import RunError
from kres.files import atomic_write_text

ROOT = "runs"  # where runs are named into, relative to the working directory
CONFIG = "config.json"
HISTORY = "history.csv"
BEST = "best.keras"
FINAL = "final.keras"
METRICS = "metrics.json"
CURVES = "curves.png"
LOGS = "logs"
BACKUP = "backup"
QAT_SUFFIX = "-qat"  # a QAT fine-tuning run's directory: the trained run's, plus this
WORKER = "worker-{}"  # multi-host training: the directory of each host other than the first


class Dataset(NamedTuple):
    """The dataset a run was trained on, as its config recorded it."""

    name: str
    data_dir: str | None


def read_history(path) -> list[dict]:
    """A history.csv file's rows (``epoch`` an int, the rest floats); [] when there is none."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in rows]
    except (TypeError, ValueError):  # a short row gives None, a cut number ''
        raise RunError(f"{os.fspath(path)!r} is damaged (a row is truncated or not numbers); "
                       "the run's record cannot be trusted: start a new run") from None


class Run(os.PathLike):
    """A training run directory. Paths of its files (``best``, ``final``, ...) are known before
    they exist; what they record (``config``, ``resolved``, ``metrics``, ``history``) is read
    when asked, None (or empty) while the file is not written yet. A path-like object: it can be
    given wherever a path can.

    >>> run = Run.named("digits", "resnet20")       # runs/digits-resnet20
    >>> run.best, run.data, run.qat_run             # runs/digits-resnet20/best.keras, ...
    >>> kres.export.export(Run.open("runs/digits-resnet20"), "exports/digits-resnet20")
    """

    def __init__(self, path):
        self.path = os.path.normpath(os.fspath(path))

    @classmethod
    def named(cls, data: str, model: str, seed: int = 0, root: str = ROOT) -> Run:
        """The run directory of ``model`` trained on ``data``: ``<root>/<data>-<model>``, plus
        ``-s<seed>`` for seeds other than 0. The dataset is named by its last part, with
        anything but letters, digits, ``_``, ``.`` and ``-`` made a ``-``
        (``tfds:imagenette/160px-v2`` gives ``imagenette-160px-v2``)."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", data.split(":", 1)[-1]).strip("-") or "data"
        return cls(os.path.join(root, f"{slug}-{model}" + (f"-s{seed}" if seed else "")))

    @staticmethod
    def is_run(path) -> bool:
        """Whether ``path`` is a run directory that holds a trained model (its best.keras)."""
        return os.path.isdir(path) and os.path.isfile(os.path.join(path, BEST))

    @classmethod
    def open(cls, path) -> Run:
        """The trained run at ``path``; a one-line RunError saying what is missing otherwise."""
        run = cls(path)
        if cls.is_run(run):
            return run
        if not os.path.exists(run.path):
            raise RunError(f"no training run at {run.path!r}: no such directory")
        if not os.path.isdir(run.path):
            raise RunError(f"{run.path!r} is a file, not a training run directory")
        if os.path.exists(run.config_file):
            raise RunError(f"training run {run.path!r} holds no {BEST} yet: it has not finished "
                           "an epoch (train it, or continue it with resume)")
        raise RunError(f"{run.path!r} is not a training run: it holds neither {CONFIG} nor "
                       f"{BEST}")

    # ---------------------------------------------------------------------------- its files

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    best = property(lambda self: self.file(BEST), doc="best.keras: the best validation epoch")
    final = property(lambda self: self.file(FINAL), doc="final.keras: the last epoch")
    config_file = property(lambda self: self.file(CONFIG), doc="config.json")
    history_file = property(lambda self: self.file(HISTORY), doc="history.csv")
    metrics_file = property(lambda self: self.file(METRICS), doc="metrics.json")
    curves = property(lambda self: self.file(CURVES), doc="curves.png")
    logs = property(lambda self: self.file(LOGS), doc="logs/: TensorBoard")
    backup = property(lambda self: self.file(BACKUP), doc="backup/: the resumable checkpoint")

    @property
    def started(self) -> bool:
        """Whether training has finished an epoch here (a config.json alone is a run that
        never did: starting it again loses nothing)."""
        return any(os.path.exists(p) for p in (self.history_file, self.final))

    def worker(self, index: int) -> Run:
        """The directory host ``index`` (1, 2, ...) of a multi-host run writes its files to."""
        return Run(self.file(WORKER.format(index)))

    # ------------------------------------------------------------------- related runs

    @property
    def is_qat(self) -> bool:
        """Whether this is the quantisation-aware fine-tuning of another run (named for it)."""
        return self.name.endswith(QAT_SUFFIX)

    @property
    def qat_run(self) -> Run:
        """The run a QAT fine-tuning of this one writes (``--qat``)."""
        return Run(self.path + QAT_SUFFIX)

    @property
    def float_run(self) -> Run | None:
        """For a QAT run, the trained run it fine-tuned; None for other runs."""
        return Run(self.path[:-len(QAT_SUFFIX)]) if self.is_qat else None

    # ------------------------------------------------------------------ what it records

    @property
    def saved(self) -> dict | None:
        """config.json as written (``{"config": ..., "resolved": ...}``), or None."""
        return self._json(self.config_file)

    @property
    def config(self) -> dict | None:
        """The TrainConfig fields the run was started with, as recorded, or None."""
        saved = self.saved
        return None if saved is None else saved.get("config", saved)

    @property
    def resolved(self) -> dict | None:
        """Every value the run used (the recipe), as recorded, or None."""
        saved = self.saved
        return None if saved is None else saved.get("resolved")

    @property
    def data(self) -> Dataset | None:
        """The dataset the run was trained on, or None when its config does not say."""
        config = self.config or {}
        return Dataset(config["data"], config.get("data_dir")) if config.get("data") else None

    @property
    def metrics(self) -> dict | None:
        """metrics.json (test and validation accuracy, throughput), or None."""
        return self._json(self.metrics_file)

    @property
    def history(self) -> list[dict]:
        """history.csv: one dict per epoch (``epoch`` an int, the rest floats)."""
        return read_history(self.history_file)

    def write_config(self, config: dict, resolved: dict) -> None:
        """config.json: the config as given and every value used."""
        atomic_write_text(self.config_file, json.dumps(
            {"config": config, "resolved": resolved}, indent=2, default=str))

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_text(self.metrics_file, json.dumps(metrics, indent=2))

    def _json(self, path):
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except ValueError as error:
            raise RunError(f"{path!r} is not valid JSON ({error}); the run's record is "
                           "damaged") from None

    # ------------------------------------------------------------------------ a path

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"Run({self.path!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Run) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)
