"""Distributed training on this CPU: each engine runs in its own subprocess, because the device
layout (logical CPUs, host device count, the Keras backend) is fixed when a runtime starts."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "helpers"))
from kill_and_resume import check_finished, kill_after_epoch  # noqa: E402

# One epoch of resnet20 on 128 digits at 16x16, 4 steps of a global batch of 32. No stochastic
# depth: per-replica random draws would differ from single-device ones by construction. A peak
# learning rate of 1e-4 (0.0008 per 256 images): at the default 0.1 the first steps of a freshly
# initialised net amplify float rounding (~1e-7 after one step) to ~1e-2 within four steps, on
# either path alone (at 1e-3, 2e-4 once the CIFAR nets stopped zero-initialising their
# branches). At 1e-4 a real error (an unsynchronised BatchNorm, a gradient summed
# instead of averaged over replicas) still moves weights by far more than the tolerance.
BASE = dict(model="resnet20", data="digits", image_size=16, limit=128, batch_size=32, epochs=1,
            lr=0.0008, drop_path_rate=0.0, verbose=0)

COMPARE = """
import json, sys
import numpy as np
from kres.training import TrainConfig, train

def max_difference(a, b):
    # The largest weight difference, relative to each tensor's scale (its largest |value|, at
    # least 1): BatchNorm's moving variances reach 2-3 here, and float32 rounding scales with them.
    return max(float(np.max(np.abs(x - y))) / max(float(np.max(np.abs(x))), 1.0)
               for x, y in zip(a.model.get_weights(), b.model.get_weights()))
"""

# Float32 summed in another order (replicas, vector widths, oneDNN kernels) differs by about
# sqrt(n) * 2**-23 of the sum: ~1.1e-5 for the n = 32 * 16 * 16 = 8192 values a BatchNorm
# channel averages here, compounded over four steps. Measured with 2 replicas: 7.3e-6 (Intel
# Xeon, AVX-512) where a real error (unsynchronised BatchNorm) gives 4.2e-2.
ROUNDING = 1e-4


def run_script(body, prelude="", timeout=600, **env):
    code = textwrap.dedent(prelude) + COMPARE + textwrap.dedent(body)
    full_env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", **env)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout, json.loads(done.stdout.strip().splitlines()[-1])

# Two logical CPU devices for MirroredStrategy, set before TensorFlow starts its runtime.
SPLIT_CPU = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""


@pytest.mark.slow
def test_mirrored_strategy_with_sync_batchnorm_matches_one_device(tmp_path):
    _, result = run_script(f"""
        base = {BASE!r}
        single = train(TrainConfig(out="{tmp_path}/single", distribute="none", **base))
        synced = train(TrainConfig(out="{tmp_path}/synced", distribute="mirrored", **base))
        local = train(TrainConfig(out="{tmp_path}/local", distribute="mirrored", sync_bn=False, **base))
        print(json.dumps(dict(
            kinds=[r.recipe.distribution for r in (single, synced)],
            sync=[synced.recipe.sync_bn, local.recipe.sync_bn],
            synced=max_difference(single, synced), local=max_difference(single, local))))
    """, prelude=SPLIT_CPU, KERAS_BACKEND="tensorflow")
    assert result["kinds"][0].startswith("distribute=none (1 replica(s)")
    assert result["kinds"][1].startswith("distribute=mirrored (2 replica(s)")
    assert result["sync"] == [True, False]  # on by default with more than one replica
    assert result["synced"] < ROUNDING
    assert result["local"] > 10 * ROUNDING  # per-replica batch statistics really do differ


@pytest.mark.slow
def test_jax_data_parallel_on_eight_devices_matches_one_device(tmp_path):
    """The shape of a TPU v2-8 / v3-8 host (8 devices, one process), simulated on the CPU."""
    stdout, result = run_script(f"""
        import jax, keras
        base = {BASE!r}
        single = train(TrainConfig(out="{tmp_path}/single", distribute="none", **base))
        parallel = train(TrainConfig(out="{tmp_path}/parallel", distribute="auto", **base))
        # How DataParallel lays out one global batch of 32 over the devices.
        layout = keras.distribution.DataParallel(devices=jax.devices()).get_data_layout(
            (32, 16, 16, 1))
        shards = jax.device_put(np.zeros((32, 16, 16, 1), "float32"),
                                layout.backend_layout).addressable_shards
        print(json.dumps(dict(kinds=[r.recipe.distribution for r in (single, parallel)],
                              backend=parallel.recipe.backend,
                              losses=[[h["loss"] for h in r.history] for r in (single, parallel)],
                              shards=sorted((s.device.id, s.data.shape[0]) for s in shards),
                              difference=max_difference(single, parallel))))
    """, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    assert result["backend"] == "jax"
    assert result["kinds"][0].startswith("distribute=none")
    assert result["kinds"][1].startswith("distribute=data-parallel (8 replica(s), cpu)")
    assert "JAX sees 8 cpu devices" in stdout  # auto says what it chose and why
    assert result["shards"] == [[i, 4] for i in range(8)]  # 32 images = 8 devices x 4
    # Same global batch, same global BatchNorm statistics: only float summation order differs.
    np.testing.assert_allclose(result["losses"][1], result["losses"][0], rtol=1e-5)
    assert result["difference"] < ROUNDING


def read_history(path):
    from kres.training.callbacks import read_history

    rows = read_history(str(path))
    return {k: [r[k] for r in rows] for k in rows[0]}


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_jax_processes_train_together(tmp_path):
    out = tmp_path / "multihost"
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in BASE.items() if k != "verbose"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "tools/train.py"), "--backend", "jax", "--out", str(out),
             "--distribute", "data-parallel", "--coordinator-address", f"localhost:{port}",
             "--num-processes", "2", "--process-id", str(i), "--quiet", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stdout[-2000:] + stderr[-4000:]
    assert "distribute=data-parallel (2 replica(s) on 2 hosts, cpu)" in outputs[0][0]

    import keras

    import kres  # noqa: F401  (registers kres layers for loading)

    chief = keras.saving.load_model(out / "final.keras")
    worker = keras.saving.load_model(out / "worker-1" / "final.keras")
    for a, b in zip(chief.get_weights(), worker.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Both hosts saw the same global batches: the same losses, epoch by epoch.
    histories = [read_history(out / "history.csv"), read_history(out / "worker-1" / "history.csv")]
    for key in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy"):
        assert histories[0][key] == histories[1][key]
    assert (out / "backup" / "state.json").exists()
    assert (out / "worker-1" / "backup" / "state.json").exists()  # each worker its own backup
    config = json.loads((out / "config.json").read_text())["resolved"]
    assert config["backend"] == "jax" and config["num_processes"] == 2


@pytest.mark.slow
def test_tensorflow_run_killed_after_epoch_two_finishes_on_jax(tmp_path):
    """A recycled runtime: a run started on TensorFlow continues on JAX from its checkpoint."""
    out = tmp_path / "moved"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, str(REPO / "tools/train.py"), "--out", str(out), "--epochs", "4",
           "--image-size", "16", "--limit", "192", "--batch-size", "32", "--quiet"]
    killed_at = kill_after_epoch(cmd + ["--backend", "tensorflow"], out, 2, env=env, cwd=REPO)
    assert 2 <= killed_at < 4, "the run finished before the kill"
    assert json.loads((out / "config.json").read_text())["resolved"]["backend"] == "tensorflow"

    done = subprocess.run(cmd + ["--resume", "--backend", "jax"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    check_finished(done, out, killed_at, epochs=4, steps_per_epoch=6)
    assert json.loads((out / "config.json").read_text())["resolved"]["backend"] == "jax"
