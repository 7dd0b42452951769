"""Kill a training run (a tools/train.py subprocess) once it has committed an epoch, and check a
resumed run finished it exactly."""

import csv
import json
import signal
import subprocess
import time


def kill_after_epoch(cmd, out, epoch, *, env, cwd, settle=0.0, timeout=300):
    """Starts ``cmd``, SIGKILLs it once ``out``'s checkpoint holds ``epoch`` epochs (after
    ``settle`` more seconds); returns the committed epoch count at the kill."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    state = out / "backup" / "state.json"
    deadline = time.time() + timeout
    while not (state.exists() and json.loads(state.read_text())["epoch"] >= epoch):
        assert proc.poll() is None, "training ended before it could be killed: " + \
            proc.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(settle)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return json.loads(state.read_text())["epoch"]


def check_finished(done, out, killed_at, *, epochs, steps_per_epoch):
    """The resumed run ``done`` restored ``killed_at`` and trained to the end, exactly once."""
    import keras

    import kres  # noqa: F401  (registers kres layers for loading)

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"restored epoch {killed_at} of {epochs}" in done.stdout
    with open(out / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, epochs + 1))
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] == epochs
    final = keras.saving.load_model(out / "final.keras")
    assert int(final.optimizer.iterations) == epochs * steps_per_epoch  # one schedule, to its end
    assert not list(out.rglob("tmp-*")) and not list(out.rglob("*.tmp"))
