"""Table 6, peers: kres against the libraries a user really weighs it against, each row a ratio
kres / peer of figures measured alternated in one process, with the same thread count pinned
in every runtime (TensorFlow intra- and inter-op, ``torch.set_num_threads``, onnxruntime's
``intra_op_num_threads``, LiteRT's ``num_threads``).

- inference: kres on TensorFlow (compiled function) vs timm on PyTorch (eval, inference mode,
  channels-last and contiguous; ``torch.compile`` where the suite asks for it);
- training: kres ``model.fit`` and ``kres.training.train`` vs the PyTorch twin of the same
  layers (timm's model, or :class:`kres.bench.torch_peers.CifarResNet`), same optimiser;
- deployment: kres' ONNX (onnxruntime) and TFLite (LiteRT) files, fp32 and int8, vs
  onnxruntime on timm's own ONNX export, per image and per batch of 32.

Needs torch and timm (``pip install kres[bench]``); without them :func:`unavailable` says why
and the rows are skipped. Runs in a TensorFlow process of its own (threads are fixed before
either runtime starts)."""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time

import numpy as np

from kres.bench.common import BenchmarkError, alternate, rate, repeat_for

PEER_BATCH = 32  # the deployment table's batch row


@dataclasses.dataclass(frozen=True)
class PeerSuite:
    """The peer rows of a suite: inference (models, image side, batches, whether to add
    ``torch.compile``), training ((model, image side, batch) rows, and rounds: a 2-core
    machine's training runs of a few seconds vary by 10-20 % from one to the next, so these
    rows take more rounds than the suite's) and deployment (models)."""

    inference_models: tuple
    inference_size: int
    inference_batches: tuple
    torch_compile: bool
    training_rows: tuple
    training_rounds: int
    deploy_models: tuple


PEER_SUITES = {
    "full": PeerSuite(("resnet50", "resnet18"), 224, (1, 32), True,
                      (("resnet20", 32, 128), ("resnet50", 224, 8)), 7, ("resnet50", "resnet18")),
    # Without the deployment rows (their exports and int8 calibration are the dearest part):
    # with them, the peer rows took 1248 s of a loaded 2-core machine (load average 4-13).
    "quick": PeerSuite(("resnet50", "resnet18"), 224, (1, 32), False,
                       (("resnet20", 32, 128),), 5, ()),
    "smoke": None,  # seconds, for the test suite: the peer rows take minutes even at toy sizes
}


def unavailable() -> str | None:
    """Why the peer rows cannot run in this environment (one line), or None when they can."""
    try:
        from kres.bench.torch_peers import import_timm

        import_timm()
    except ImportError as error:
        return (f"peer rows skipped: {error.name or error} is not installed "
                "(pip install 'kres[bench]' installs torch and timm)")
    return None


def pin_threads(threads: int) -> int:
    """The same thread count for TensorFlow (before it starts) and PyTorch in this process."""
    import tensorflow as tf
    import torch

    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        torch.set_num_interop_threads(threads)
    return threads


def ratios(speed: dict, kres_key: str, common: dict) -> list:
    """One row per peer in ``speed`` ({name: items/s, measured alternated}): both figures and
    ``ratio`` = kres / peer (above 1: kres is faster), ``common`` fields added to each."""
    return [{**common, "peer": name, "kres": kres_key, "kres_per_second": speed[kres_key],
             "peer_per_second": value, "ratio": speed[kres_key] / value}
            for name, value in speed.items() if name != kres_key]


def versions() -> dict:
    """Versions of every runtime the peer rows use (for the machine table)."""
    import keras
    import onnxruntime
    import tensorflow as tf

    from kres.bench.torch_peers import versions as torch_versions
    from kres.export.runners import _version

    return {"tensorflow": tf.__version__, "keras": keras.__version__, **torch_versions(),
            "onnxruntime": onnxruntime.__version__, "ai-edge-litert": _version("ai-edge-litert")}


def _measure(candidates: dict, items: int, rounds: int, min_seconds: float) -> dict:
    """{name: items/s} of the median of ``rounds`` alternated runs of each ``work()``."""
    timed = {name: (work, repeat_for(work, min_seconds)) for name, work in candidates.items()}
    seconds, _ = alternate(timed, rounds)
    return {name: rate(items, timed[name][1], seconds[name]) for name in timed}


def inference(models, size, batches, rounds, min_seconds, threads, torch_compile=False) -> list:
    """Images/s of kres (TensorFlow, compiled function, no XLA) and of timm's model of the same
    name on PyTorch, one row per (model, batch, peer)."""
    pin_threads(threads)
    import torch

    import kres
    from kres.bench.inference import caller
    from kres.bench.torch_peers import twin

    rows = []
    for name in models:
        model = kres.build(name, input_shape=(size, size, 3))
        net = twin(name).eval()
        last = twin(name).eval().to(memory_format=torch.channels_last)
        last.load_state_dict(net.state_dict())
        compiled = torch.compile(last) if torch_compile else None
        for batch in batches:
            x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
            nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            cl = nchw.to(memory_format=torch.channels_last)
            call = caller(model, "function", batch)

            def torch_call(module, t):
                def work():
                    with torch.inference_mode():
                        module(t)
                return work

            candidates = {"kres, TensorFlow": lambda: call(x),
                          "timm, PyTorch channels-last": torch_call(last, cl),
                          "timm, PyTorch contiguous": torch_call(net, nchw)}
            if compiled is not None:
                candidates["timm, PyTorch channels-last, torch.compile"] = torch_call(compiled, cl)
            for work in candidates.values():
                work()  # first calls: tracing, compilation
            speed = _measure(candidates, batch, rounds, min_seconds)
            rows += ratios(speed, "kres, TensorFlow", {
                "table": "inference", "model": name, "image_size": size, "batch": batch,
                "threads": threads, "unit": "images/s", "runs": rounds})
    return rows


def _torch_trainer(net, x, y, batch, steps):
    """One run of ``steps`` SGD steps (lr 0.1, Nesterov momentum 0.9: kres' plain-fit
    optimiser) of ``net`` in channels-last on in-memory tensors."""
    import torch

    net = net.to(memory_format=torch.channels_last).train()
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(
        memory_format=torch.channels_last)
    yt = torch.from_numpy(y.astype("int64"))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def work():
        start = time.perf_counter()
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[i * batch:(i + 1) * batch]), yt[i * batch:(i + 1) * batch])
            loss.backward()
            opt.step()
        float(loss)
        return time.perf_counter() - start
    return work


def training(rows, steps, rounds, threads, with_train=True) -> list:
    """Images/s of ``steps`` training steps: kres ``model.fit`` (and ``kres.training.train``
    when ``with_train``) vs the PyTorch twin, one row per (model, kres path). The twin's
    trainable parameter count must equal kres' model's. Each kres path is alternated with the
    twin in a phase of its own, ``model.fit``'s first: ``kres.training.train`` seeds its run,
    and ``tf.random.set_seed`` clears TensorFlow's kernel cache (``Context._set_global_seed``),
    which made ``fit`` 464 images/s with the three alternated together, against 619 when each
    timed ``fit`` epoch followed an untimed one (resnet20 b128, AMD EPYC avx512, 7 rounds
    each). ``kres.training.train``'s figure is its second epoch's training steps, after a
    first epoch that compiles (its validation pass left out: the twin validates nothing).
    Each row carries the lowest and highest per-round ratio beside the ratio of the medians."""
    pin_threads(threads)
    from kres import data as kdata
    from kres.bench.torch_peers import trainable_params, twin
    from kres.bench.training import EpochClock, _kres_train, _plain

    results = []
    for name, size, batch in rows:
        x, labels = kdata.arrays("digits", "train", image_size=size)
        n = batch * steps
        x, labels = x[:n], labels[:n]
        onehot = np.eye(10, dtype=np.float32)[labels]
        model = _plain(name, size, batch, False, "float32", x, onehot)
        net = twin(name, in_channels=x.shape[-1], num_classes=10)
        kres_params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        if kres_params != trainable_params(net):
            raise BenchmarkError(f"the PyTorch twin of {name} has {trainable_params(net):,} "
                                 f"trainable parameters, kres' model {kres_params:,}")

        def fit():
            clock = EpochClock()
            model.fit(x, onehot, batch_size=batch, epochs=1, verbose=0, shuffle=False,
                      callbacks=[clock])
            return clock.seconds[0]

        paths = {"kres model.fit": fit}
        torch_loop = _torch_trainer(net, x, labels, batch, steps)
        common = {"table": "training", "model": name, "image_size": size, "batch": batch,
                  "steps_per_run": steps, "threads": threads, "unit": "images/s",
                  "runs": rounds, "trainable_params": kres_params}
        with tempfile.TemporaryDirectory(prefix="kres-bench-peers-") as tmp:
            if with_train:
                runs = iter(range(rounds + 2))
                paths["kres.training.train"] = lambda: n / _kres_train(
                    name, size, batch, steps, "float32", 2, os.path.join(tmp, str(next(runs)))
                ).metrics["step_images_per_second"]
            for path, work in paths.items():
                seconds = _train_seconds({path: work, "PyTorch twin": torch_loop}, rounds)
                twin_seconds = seconds["PyTorch twin"]
                per_round = [t / k for k, t in zip(seconds[path], twin_seconds)]
                results += ratios({path: n / statistics.median(seconds[path]),
                                   "PyTorch twin": n / statistics.median(twin_seconds)},
                                  path, {**common, "ratio_low": min(per_round),
                                         "ratio_high": max(per_round)})
    return results


def _train_seconds(candidates, rounds) -> dict:
    """{name: [seconds of each round]} of the training candidates ``{name: work}``: a first
    round that compiles, then ``rounds`` rounds alternated in order and reversed order, each
    ``work()`` returning the seconds of its steps."""
    seconds = {name: [] for name in candidates}
    for round_ in range(rounds + 1):
        order = list(candidates.items())
        for name, work in (order if round_ % 2 == 0 else order[::-1]):
            got = work()
            if round_:
                seconds[name].append(got)
    return seconds


def deploy(models, size, rounds, threads, calibration_samples, repeats=5) -> list:
    """Latency of kres' ONNX and TFLite files (fp32, int8) and of onnxruntime on timm's ONNX
    export of the same architecture, per image and per batch of PEER_BATCH: one row per
    (model, batch, kres file), its ratio kres / timm in images/s."""
    pin_threads(threads)
    import torch

    import kres
    import kres.export
    from kres.bench.torch_peers import twin
    from kres.export.runners import OnnxRunner

    rng = np.random.default_rng(0)
    rows = []
    for name in models:
        model = kres.build(name, input_shape=(size, size, 3))
        images = rng.uniform(0, 255, (PEER_BATCH, size, size, 3)).astype(np.float32)
        with tempfile.TemporaryDirectory(prefix="kres-bench-peers-") as tmp:
            manifest = kres.export.export(
                model, os.path.join(tmp, name), formats=("onnx", "tflite"),
                quantize=("fp32", "int8"), calibration=images[:calibration_samples],
                verify_samples=2, latency_repeats=1, threads=threads)
            runners = {f"kres {a['format']} {a['quantization']}": kres.export.load(
                manifest.artifact(a["format"], a["quantization"]), threads=threads)
                for a in manifest.data["artifacts"]
                if a["format"] in ("onnx", "tflite") and a["quantization"] in ("fp32", "int8")}
            path = os.path.join(tmp, "timm.onnx")
            torch.onnx.export(twin(name).eval(), torch.zeros(1, 3, size, size), path,
                              dynamo=False, opset_version=17, input_names=["images"],
                              dynamic_axes={"images": {0: "batch"}})
            runners["timm onnx fp32"] = OnnxRunner(path, threads)
            nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
            for batch in (1, PEER_BATCH):
                candidates = {key: (lambda r=r, b=batch, key=key: r.predict(
                    (nchw if key.startswith("timm") else images)[:b], batch_size=b))
                    for key, r in runners.items()}
                for work in candidates.values():
                    work()
                timed = {k: (w, repeats if batch == 1 else 1) for k, w in candidates.items()}
                seconds, _ = alternate(timed, rounds)
                speed = {k: rate(batch, timed[k][1], seconds[k]) for k in timed}
                for key in runners:
                    if key.startswith("kres"):
                        rows += ratios({key: speed[key], "timm onnx fp32": speed["timm onnx fp32"]},
                                       key, {"table": "deploy", "model": name,
                                             "image_size": size, "batch": batch,
                                             "threads": threads, "unit": "images/s",
                                             "runs": rounds,
                                             "kres_ms_per_image": 1e3 / speed[key],
                                             "peer_ms_per_image": 1e3 / speed["timm onnx fp32"]})
    return rows


def measure(suite, rounds, min_seconds, training_steps, deploy_size, calibration_samples,
            threads=None) -> dict:
    """Every peer row of ``suite`` (a name in PEER_SUITES), with ``threads`` (default: the
    cores) in every runtime: {"versions", "threads", "rows"}, or {"skipped": reason}."""
    reason = unavailable()
    if reason:
        return {"skipped": reason}
    peers = PEER_SUITES[suite]
    threads = pin_threads(threads or os.cpu_count() or 1)
    rows = inference(peers.inference_models, peers.inference_size, peers.inference_batches,
                     rounds, min_seconds, threads, torch_compile=peers.torch_compile)
    rows += training(peers.training_rows, training_steps, max(rounds, peers.training_rounds),
                     threads)
    rows += deploy(peers.deploy_models, deploy_size, rounds, threads, calibration_samples)
    return {"versions": versions(), "threads": threads, "rows": rows}
