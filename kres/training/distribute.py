"""Choosing the engine that spreads training over devices.

TensorFlow backend: `tf.distribute.MirroredStrategy` (local GPUs, or logical CPU devices),
`TPUStrategy` when a TPU is reachable, else the default strategy. JAX backend:
`keras.distribution.DataParallel` over all devices, optionally across hosts after
`jax.distributed.initialize`. `MultiWorkerMirroredStrategy` is deliberately absent: Keras 3's
`fit` does not work with it (keras#20585).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os

import keras

from kres.training.config import ConfigError


@dataclasses.dataclass
class Plan:
    """How a run is distributed: `kind` is one of none/mirrored/tpu/data-parallel."""

    kind: str
    reason: str
    replicas: int = 1
    strategy: object = None  # tf.distribute.Strategy (TensorFlow backend)
    distribution: object = None  # keras.distribution.Distribution (JAX backend)
    process_id: int = 0
    num_processes: int = 1
    platform: str = "cpu"

    @property
    def chief(self) -> bool:
        return self.process_id == 0

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> str:
        hosts = f" on {self.num_processes} hosts" if self.num_processes > 1 else ""
        return f"distribute={self.kind} ({self.replicas} replica(s){hosts}, {self.platform}): {self.reason}"


def init_multi_host(config) -> tuple[int, int]:
    """Join a multi-host JAX run when asked to; returns (process_id, num_processes).

    Flags win, then the KRES_COORDINATOR_ADDRESS / KRES_NUM_PROCESSES / KRES_PROCESS_ID
    environment variables. `multi_host=True` alone calls `jax.distributed.initialize()` with no
    arguments, which discovers the pod on Cloud TPU.
    """
    env = os.environ
    address = config.coordinator_address or env.get("KRES_COORDINATOR_ADDRESS")
    num = config.num_processes or _int_env("KRES_NUM_PROCESSES")
    pid = config.process_id if config.process_id is not None else _int_env("KRES_PROCESS_ID")
    if not (config.multi_host or address or (num or 1) > 1):
        return 0, 1
    if keras.backend.backend() != "jax":
        raise ConfigError(
            "multi-host training needs the JAX backend (--backend jax): Keras 3 does not train "
            "with TensorFlow's MultiWorkerMirroredStrategy."
        )
    import jax

    if address or num or pid is not None:
        if not (address and num and pid is not None):
            raise ConfigError(
                "multi-host JAX needs all of coordinator_address (host:port of process 0), "
                f"num_processes and process_id; got {address!r}, {num!r}, {pid!r}."
            )
        # CPU hosts exchange gradients over gloo; accelerators use their own collectives.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
    else:
        jax.distributed.initialize()  # Cloud TPU: discovers the pod by itself
    return jax.process_index(), jax.process_count()


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def choose(distribute: str, *, process_id: int = 0, num_processes: int = 1) -> Plan:
    """The distribution plan for `distribute` on this backend and machine."""
    backend = keras.backend.backend()
    if backend == "jax":
        plan = _choose_jax(distribute, num_processes)
    elif backend == "tensorflow":
        plan = _choose_tensorflow(distribute)
    else:
        raise ConfigError(f"kres trains on the tensorflow and jax backends, not {backend!r}")
    plan.process_id, plan.num_processes = process_id, num_processes
    return plan


def _choose_jax(distribute: str, num_processes: int) -> Plan:
    import jax

    devices = jax.devices()
    platform = devices[0].platform
    if distribute in ("mirrored",):
        raise ConfigError(
            "distribute='mirrored' is TensorFlow's engine; on the JAX backend use "
            "distribute='data-parallel' (keras.distribution.DataParallel)."
        )
    if distribute == "tpu" and platform != "tpu":
        raise ConfigError(f"distribute='tpu' but JAX sees no TPU (devices: {platform}).")
    if distribute == "none":
        if num_processes > 1:
            raise ConfigError("a multi-host run must use distribute='data-parallel' (or auto).")
        return Plan("none", "asked for one device", platform=platform)
    if distribute == "auto" and len(devices) == 1:
        return Plan("none", "JAX sees a single device", platform=platform)
    dp = keras.distribution.DataParallel(devices=devices)
    if num_processes > 1:
        dp.auto_shard_dataset = False  # each host feeds its own shard (see kres.training.train)
    reason = {"auto": f"JAX sees {len(devices)} {platform} devices"}.get(distribute, "asked for")
    return Plan("data-parallel", reason + "; keras.distribution.DataParallel over all of them",
                replicas=len(devices), distribution=dp, platform=platform)


def _tpu_resolver():
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver, None
    except (ValueError, RuntimeError, tf.errors.OpError, ImportError) as e:
        return None, e


def _tpu_hinted() -> bool:
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
                or os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0"))


@functools.lru_cache(maxsize=None)
def _mirrored(devices: tuple[str, ...]):
    # One strategy per device set and process: a second MirroredStrategy over the same devices
    # reuses collective instance keys and fails with "Shape mismatch in the collective instance"
    # (e.g. the second train() call in a notebook).
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=list(devices))


def _choose_tensorflow(distribute: str) -> Plan:
    import tensorflow as tf

    if distribute == "data-parallel":
        raise ConfigError(
            "distribute='data-parallel' is the JAX backend's engine (keras.distribution."
            "DataParallel); use --backend jax, or distribute='mirrored' on TensorFlow."
        )
    if distribute == "tpu" or (distribute == "auto" and _tpu_hinted()):
        resolver, error = _tpu_resolver()
        if resolver is not None:
            strategy = tf.distribute.TPUStrategy(resolver)
            return Plan("tpu", "a TPU is reachable", replicas=strategy.num_replicas_in_sync,
                        strategy=strategy, platform="tpu")
        if distribute == "tpu":
            raise ConfigError(
                f"distribute='tpu' but no TPU is reachable from TensorFlow ({error}). There is no "
                "tensorflow-tpu build for TF 2.21; on Colab TPUs use --backend jax."
            )
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if distribute == "none" or (distribute == "auto" and len(gpus) < 2):
        why = "asked for one device" if distribute == "none" else (
            f"{len(gpus)} GPU(s) visible, MirroredStrategy needs at least 2")
        platform = "gpu" if gpus else "cpu"
        return Plan("none", why, strategy=tf.distribute.get_strategy(), platform=platform)
    devices = tuple(d.name for d in (gpus if gpus else cpus))
    strategy = _mirrored(devices)
    kind = "GPU" if gpus else "logical CPU"
    return Plan("mirrored", f"{len(devices)} {kind} devices; tf.distribute.MirroredStrategy",
                replicas=strategy.num_replicas_in_sync, strategy=strategy,
                platform="gpu" if gpus else "cpu")
