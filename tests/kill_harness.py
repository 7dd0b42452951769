"""Kill kres on purpose, at points chosen by count rather than by luck, and check that it recovers.

Like SQLite's crash tests: a tiny but real training run, its quantisation-aware fine-tuning
(``--qat``) and its int8 export are each run once with hooks that number *events* (every file
kres writes: before its temporary file is written and after, before the rename; every second
batch and every epoch; each export step: conversion, each int8 try, each verification load,
deployment report, metadata, card, and each rename that moves the export into place). Then, for
a kill point N, the same command runs again in a fresh directory and SIGKILLs itself at event N
(a *torn* point also cuts the temporary file to half its bytes first: a write killed midway).
The plain recovery (``--resume``, or the same export again) then runs as a fresh process, and
the result is checked against the uninterrupted run.

    python tests/kill_harness.py --full                # every point: a table and a count line
    python tests/kill_harness.py --sample 10 --seed 7  # what the test does, as a report
    KRES_KILL_AT=N [KRES_KILL_TORN=1] KRES_KILL_EVENTS=FILE python tests/kill_harness.py -- \
        train ...                                      # one kres command, hooked

The hooks live here, not in kres: they wrap kres' own functions (``kres.files.replacing``, the
export's steps) and ``keras.Model.fit``, never the C library.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH_EVERY = 2  # a batch event every this many batches

# ------------------------------------------------------------------------------- the hooks


class Events:
    """Numbers events in the order they happen; records them to a file (a JSON line each, so the
    list survives a kill) and SIGKILLs this process at event ``kill_at``."""

    def __init__(self, record=None, kill_at=None, torn=False):
        self.record, self.kill_at, self.torn, self.count = record, kill_at, torn, 0

    def __call__(self, name, temporary=None):
        index, self.count = self.count, self.count + 1
        if self.record:
            with open(self.record, "a") as f:
                f.write(json.dumps({"index": index, "name": name,
                                    "tearable": temporary is not None}) + "\n")
        if index != self.kill_at:
            return
        if self.torn and temporary is not None:
            tear(temporary)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def tear(path):
    """Cut a file (or every file of a directory) to half its bytes: a write killed midway."""
    paths = [path] if os.path.isfile(path) else [
        os.path.join(r, f) for r, _, files in os.walk(path) for f in files]
    for p in paths:
        os.truncate(p, os.path.getsize(p) // 2)


def install(event, command):
    """Wrap kres' writer, Keras' fit and (for ``export``) the export's steps so that each calls
    ``event``."""
    import keras

    import kres.files

    replacing = kres.files.replacing

    @contextlib.contextmanager
    def hooked_replacing(path):
        name = os.path.basename(os.fspath(path))
        with replacing(path) as tmp:
            event(f"write {name}: before")
            yield tmp
            event(f"write {name}: temporary written, not renamed", tmp)

    kres.files.replacing = hooked_replacing
    fit = keras.Model.fit

    def hooked_fit(self, *args, callbacks=None, **kwargs):
        return fit(self, *args, callbacks=[*(callbacks or []), _fit_events(event)], **kwargs)

    keras.Model.fit = hooked_fit
    if command == "export":
        _install_export(event)


def _install_export(event):
    from kres.export import card, deployment, pipeline, precision
    from kres.export import metadata as tflite_metadata

    def step(module, attribute, label):
        original = getattr(module, attribute)

        @functools.wraps(original)
        def hooked(*args, **kwargs):
            event(f"export {label}")
            return original(*args, **kwargs)

        setattr(module, attribute, hooked)

    step(pipeline, "_convert", "conversion")
    step(pipeline, "_search_int8", "int8 search")
    step(precision, "write", "int8 try")
    step(pipeline, "load", "verification load")
    step(deployment, "report", "deployment report")
    step(tflite_metadata, "read", "metadata read")
    step(card, "write", "card")
    pipeline.os = _RenameEvents(event)


class _RenameEvents:
    """The ``os`` module as the export's pipeline sees it, with an event before each rename."""

    def __init__(self, event):
        self._event = event

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, source, target):
        what = ("staging directory to .done" if target.endswith(".done") else
                "previous export aside" if target.endswith(os.sep + "previous") else
                "new export into place")
        self._event(f"export rename: {what}")
        os.rename(source, target)


def _fit_events(event):
    import keras

    class FitEvents(keras.callbacks.Callback):
        """Events at every second batch end and at every epoch end (after kres' callbacks)."""

        def on_train_batch_end(self, batch, logs=None):
            if (batch + 1) % BATCH_EVERY == 0:
                event(f"batch {batch + 1} of epoch {self.epoch + 1}")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            event(f"end of epoch {epoch + 1}")

    return FitEvents()


def run_hooked(argv):
    """Run one kres command in this process, hooked as the environment says."""
    kill_at = os.environ.get("KRES_KILL_AT")
    events = Events(record=os.environ.get("KRES_KILL_EVENTS"),
                    kill_at=None if kill_at is None else int(kill_at),
                    torn=os.environ.get("KRES_KILL_TORN") == "1")
    # kres.cli.train decides the backend before Keras is imported; import kres' TensorFlow
    # the way it does, then hook, then run.
    from kres import native

    native.import_tensorflow()
    install(events, argv[0] if argv else None)
    from kres.cli import main

    return main(argv)


# ----------------------------------------------------------------------------- scenarios

RUN, QAT_RUN, EXPORT = "run", "run-qat", "exp"
TINY = ["--limit", "128", "--batch-size", "32", "--quiet"]
COMMANDS = {  # {d}: the directory the command runs in
    "train": ["train", "--model", "resnet20", "--data", "digits", "--image-size", "16",
              "--epochs", "3", "--lr", "0.2", "--out", "{d}/" + RUN, *TINY],
    "qat": ["train", "--out", "{d}/" + RUN, "--qat", "--epochs", "1", *TINY],
    "export": ["export", "{d}/" + RUN, "--out", "{d}/" + EXPORT, "--formats", "tflite",
               "--quantize", "fp32,int8", "--verify-samples", "16", "--calibration-samples",
               "16", "--latency-repeats", "1"],
}
PHASES = tuple(COMMANDS)
PREVIOUS = "previous-export.txt"  # marks the export a point's --out holds before it runs


def command(phase, directory):
    return [a.replace("{d}", str(directory)) for a in COMMANDS[phase]]


def environment(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("KERAS_BACKEND", None)
    return env


def kres_process(argv, *, hooked=False, timeout=900, **env):
    """A kres command as a fresh process (hooked: under this file's hooks)."""
    program = [os.path.abspath(__file__), "--"] if hooked else ["-m", "kres"]
    return subprocess.run([sys.executable, *program, *argv], env=environment(**env),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@dataclasses.dataclass(frozen=True)
class Point:
    phase: str
    index: int
    name: str
    torn: bool = False

    def __str__(self):
        return f"{self.phase} #{self.index} {self.name}" + (" [torn]" if self.torn else "")


@dataclasses.dataclass
class Reference:
    """The uninterrupted runs (made in list mode) and every kill point they have."""

    directory: str
    points: list

    def run(self, name=RUN):
        return os.path.join(self.directory, name)

    @functools.cached_property
    def export_files(self):
        return snapshot(os.path.join(self.directory, EXPORT))


def make_reference(directory):
    """Train, fine-tune and export once, uninterrupted, recording each command's events."""
    for phase in PHASES:
        record = os.path.join(directory, f"events-{phase}.jsonl")
        done = kres_process(command(phase, directory), hooked=True, KRES_KILL_EVENTS=record)
        if done.returncode != 0:
            raise RuntimeError(f"the uninterrupted {phase} failed ({done.returncode}):\n"
                               + done.stderr[-3000:])
    with open(os.path.join(directory, EXPORT, PREVIOUS), "w") as f:
        f.write("the export that was in --out before\n")
    return read_reference(directory)


def read_reference(directory):
    """The reference :func:`make_reference` made in ``directory``, and its points."""
    points = []
    for phase in PHASES:
        with open(os.path.join(directory, f"events-{phase}.jsonl")) as f:
            for line in f:
                event = json.loads(line)
                points.append(Point(phase, event["index"], event["name"]))
                if event["tearable"]:
                    points.append(Point(phase, event["index"], event["name"], torn=True))
    return Reference(directory, points)


def sample(points, n, rng):
    """``n`` points spread over the phases (round robin, each phase's drawn at random); the
    first of the training phase is always one in the middle of an epoch (after a batch)."""
    pools = {phase: rng.sample([p for p in points if p.phase == phase],
                               len([p for p in points if p.phase == phase])) for phase in PHASES}
    mid_epoch = [p for p in pools["train"] if p.name.startswith("batch ")]
    if mid_epoch:  # pools pop from the end
        pools["train"].remove(mid_epoch[0])
        pools["train"].append(mid_epoch[0])
    chosen = []
    while len(chosen) < min(n, len(points)):
        for phase in PHASES:
            if pools[phase] and len(chosen) < n:
                chosen.append(pools[phase].pop())
    return chosen


# ------------------------------------------------------------------------------ one point


@dataclasses.dataclass
class Outcome:
    point: Point
    kill_rc: int
    recovery_rc: int | None
    problems: list
    seconds: float

    @property
    def recovered(self):
        return not self.problems


def try_point(point, reference, workdir):
    """Kill at ``point``, check what is on disk, recover, check the result."""
    start = time.perf_counter()
    directory = tempfile.mkdtemp(prefix="point-", dir=workdir)
    if point.phase != "train":  # fine-tuning and export start from the trained run
        shutil.copytree(reference.run(), os.path.join(directory, RUN),
                        ignore=shutil.ignore_patterns("logs"))
    if point.phase == "export":  # and an export is already in --out
        shutil.copytree(os.path.join(reference.directory, EXPORT),
                        os.path.join(directory, EXPORT))
    argv = command(point.phase, directory)
    killed = kres_process(argv, hooked=True, KRES_KILL_AT=str(point.index),
                          KRES_KILL_TORN="1" if point.torn else "0")
    problems = []
    if killed.returncode != -signal.SIGKILL:
        problems.append(f"the process was not killed (exit {killed.returncode}): "
                        + killed.stderr.strip()[-500:])
    check = check_killed_export if point.phase == "export" else check_killed_run
    before = check(point, directory, reference, problems)
    recovery = kres_process(argv if point.phase == "export" else [*argv, "--resume"])
    if recovery.returncode != 0:
        problems.append(f"recovery failed (exit {recovery.returncode}): "
                        + recovery.stderr.strip()[-800:])
    else:
        check = check_export if point.phase == "export" else check_run
        check(point, directory, reference, before, problems)
    problems += [f"left behind: {p}" for p in leftovers(directory)]
    shutil.rmtree(directory, ignore_errors=True)
    return Outcome(point, killed.returncode, recovery.returncode, problems,
                   time.perf_counter() - start)


def run_of(point, directory):
    from kres.rundir import Run

    return Run(os.path.join(directory, QAT_RUN if point.phase == "qat" else RUN))


def check_killed_run(point, directory, reference, problems):
    """After the kill: every file a reader takes as complete is complete (or absent). Returns
    the rows of history.csv the checkpoint had committed, which the recovery must keep."""
    from kres.saving import load_keras_model
    from kres.training.callbacks import Checkpoint

    run = run_of(point, directory)
    try:
        run.saved, run.metrics  # noqa: B018 - JSON files parse
        rows = run.history
        committed = Checkpoint(run.backup).committed_epoch()
        for path in (run.best, run.final):
            if os.path.exists(path):
                load_keras_model(path)
    except Exception as error:  # noqa: BLE001 - any reader's refusal is the finding
        problems.append(f"after the kill, a file reads as damaged: {type(error).__name__}: "
                        f"{error}")
        return []
    return [r for r in rows if r["epoch"] <= committed]


def check_run(point, directory, reference, committed_rows, problems):
    """After recovery: the same run as the uninterrupted one. Training here is deterministic
    across processes (same seed, same batches after a resume: measured, the losses agree to the
    last digit), so the history (but for wall times), best.keras' weights and the metrics must
    equal the uninterrupted run's."""
    import numpy as np

    run = run_of(point, directory)
    expected = run_of(point, reference.directory)
    rows = run.history
    if [r["epoch"] for r in rows] != [r["epoch"] for r in expected.history]:
        problems.append(f"history.csv has epochs {[r['epoch'] for r in rows]}")
    if rows[:len(committed_rows)] != committed_rows:
        problems.append("history.csv's rows from before the kill changed")
    if _timeless(rows) != _timeless(expected.history):
        problems.append("history.csv differs from the uninterrupted run's")
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    got, want = _weights(run.best), _reference_weights(expected.best)
    if len(got) != len(want) or not all(np.array_equal(a, b) for a, b in zip(got, want)):
        problems.append(f"best.keras is not the best epoch's model (epoch {best['epoch']})")
    if _timeless([run.metrics]) != _timeless([expected.metrics]):
        problems.append(f"metrics.json differs: {run.metrics} vs {expected.metrics}")


def _timeless(rows):
    """Rows without what depends on the machine's speed."""
    return [{k: v for k, v in r.items() if k not in
             ("seconds", "images_per_second", "step_images_per_second",
              "train_seconds_this_session")} for r in rows]


@functools.lru_cache(maxsize=None)
def _reference_weights(path):
    return _weights(path)


def _weights(path):
    from kres.saving import load_keras_model

    return load_keras_model(path).get_weights()


def check_killed_export(point, directory, reference, problems):
    """After the kill: ``--out`` holds the previous export untouched, the new one complete, or
    (between the two renames that swap them) nothing."""
    out = os.path.join(directory, EXPORT)
    if not os.path.exists(out):
        if "new export into place" not in point.name:
            problems.append("after the kill, --out is gone")
        return None
    files = snapshot(out)
    if PREVIOUS in files:
        if files != reference.export_files:
            problems.append("after the kill, the previous export in --out was changed")
    else:
        problems += verify_export(out, reference)
    return None


def check_export(point, directory, reference, before, problems):
    """After the export again: a complete export, the same files as the uninterrupted one (the
    converters are deterministic: same SHA-256)."""
    out = os.path.join(directory, EXPORT)
    problems += verify_export(out, reference)
    if PREVIOUS in os.listdir(out):
        problems.append("the export again left the previous export in --out")


def verify_export(out, reference):
    import kres.export
    from kres.export.runners import verify_artifact

    try:
        manifest = kres.export.Manifest.read(out)
        for artifact in manifest.artifacts:
            verify_artifact(os.path.join(out, artifact["path"]))
    except Exception as error:  # noqa: BLE001 - any refusal is the finding
        return [f"the export does not verify: {type(error).__name__}: {error}"]
    want = kres.export.Manifest.read(os.path.join(reference.directory, EXPORT))
    got = {a["path"]: a["sha256"] for a in manifest.artifacts}
    expected = {a["path"]: a["sha256"] for a in want.artifacts}
    if set(got) != set(expected):
        return [f"the export has {sorted(got)}, the uninterrupted one {sorted(expected)}"]
    if got != expected:
        return [f"artifacts differ from the uninterrupted export: "
                f"{sorted(k for k in got if got[k] != expected[k])}"]
    return []


def snapshot(directory):
    """{relative path: SHA-256} of every file under ``directory``."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, directory)] = hashlib.sha256(f.read()).hexdigest()
    return files


def leftovers(directory):
    """Temporary files, staging directories and locks a killed process left and nothing swept
    (TensorBoard's logs/ aside: TensorFlow's event writer is not kres')."""
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "logs"]
        for name in names + dirs:
            if name.startswith(".tmp-") or ".partial-" in name or ".old-" in name \
                    or name.endswith(".lock"):
                found.append(os.path.relpath(os.path.join(root, name), directory))
    return found


# ------------------------------------------------------------------------------- a report


def report(points, reference, workdir, jobs=1, out=sys.stdout):
    """Try each point (``jobs`` at a time); print a table and the count line; return the
    outcomes."""
    from concurrent.futures import ThreadPoolExecutor

    print(f"{'point':<74} {'kill rc':>7} {'recovery':>8}  checks", file=out, flush=True)
    outcomes = []
    with ThreadPoolExecutor(jobs) as pool:  # each point is two processes: threads suffice
        tried = pool.map(lambda point: try_point(point, reference, workdir), points)
        for point, outcome in zip(points, tried):
            outcomes.append(outcome)
            _row(point, outcome, out)
    recovered = sum(o.recovered for o in outcomes)
    print(f"{len(outcomes)} kill points tried, {recovered} recovered", file=out, flush=True)
    return outcomes


def _row(point, outcome, out):
    checks = "passed" if outcome.recovered else "; ".join(outcome.problems)
    print(f"{str(point)[:74]:<74} {outcome.kill_rc:>7} {outcome.recovery_rc!s:>8}  "
          f"{checks} ({outcome.seconds:.0f} s)", file=out, flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        return run_hooked(argv[argv.index("--") + 1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="every kill point")
    p.add_argument("--sample", type=int, default=10, help="else this many points (default 10)")
    p.add_argument("--seed", type=int, help="of the sample (default: the time)")
    p.add_argument("--jobs", type=int, default=1, help="points tried at a time (default 1)")
    p.add_argument("--reference", help="a reference directory an earlier run made, to reuse")
    p.add_argument("--workdir", help="where runs go (default: a new temporary directory)")
    args = p.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="kres-kill-")
    os.makedirs(workdir, exist_ok=True)
    reference = read_reference(args.reference) if args.reference else \
        make_reference(tempfile.mkdtemp(prefix="reference-", dir=workdir))
    counts = {phase: sum(p.phase == phase for p in reference.points) for phase in PHASES}
    print(f"{len(reference.points)} kill points: {counts}", flush=True)
    seed = int(time.time()) if args.seed is None else args.seed
    size = len(reference.points) if args.full else args.sample
    print(f"{'all points' if args.full else f'sample of {size}'}, in the order of seed {seed}",
          flush=True)
    points = sample(reference.points, size, random.Random(seed))  # all phases early on
    outcomes = report(points, reference, workdir, args.jobs)
    return 0 if all(o.recovered for o in outcomes) else 1


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
