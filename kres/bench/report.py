"""The benchmark's result (``kres.bench.run``) as Markdown tables."""

from __future__ import annotations


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _f(value, pattern="{:.1f}"):
    return "" if value is None else pattern.format(value)


def machine(result) -> str:
    m = result["machine"]
    cpu, gemm = m["cpu"], m["gemm"]
    rows = [("CPU", cpu["model"]), ("arch, cores", f"{cpu['arch']}, {cpu['cores']}"),
            ("flags", " ".join(cpu["flags"]) or "none of those kres checks"),
            ("float32 GEMM", f"{gemm['gflops']:.1f} GFLOP/s (best of {gemm['repeats']}, "
                             f"{gemm['size']}x{gemm['size']}, {gemm['library']})"),
            ("load average at start (1, 5, 15 min)", m["load_start"]),
            ("load average at end", m.get("load_end")),
            ("suite", f"{result['suite']['name']}: each figure the median of "
                      f"{result['suite']['rounds']} alternated runs")]
    versions = (result.get("peers") or {}).get("versions")
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    seconds = result.get("seconds") or {}
    if seconds:
        rows.append(("wall time", f"{sum(seconds.values()):.0f} s: " + "; ".join(
            f"{step} {s:.0f} s" for step, s in seconds.items())))
    return _table(("machine", ""), rows)


def inference(result) -> str:
    rows = [(r["model"], r["backend"], r["batch"], r["call"], "on" if r["xla"] else "off",
             _f(r["images_per_second"]), _f(r.get("ratio"), "{:.2f}"),
             _f(r.get("gemm_fraction"), "{:.0%}"), _f(r.get("vs_tensorflow"), "{:.2f}"),
             _f(r["cores_busy"], "{:.2f}"), _f(r["first_call_seconds"], "{:.1f}"),
             f"{r['runs']}x{r['calls_per_run']}")
            for r in result["inference"]]
    return _table(("model", "backend", "batch", "call", "XLA", "images/s",
                   "kres / keras.applications", "of GEMM rate", "vs TensorFlow", "cores busy",
                   "first call s", "runs x calls"), rows)


def deploy(result) -> str:
    rows = [(r["model"], r["format"], r["quantization"], _f(r["median_ms"]), _f(r["p90_ms"]),
             _f(r["speedup_vs_fp32"], "{:.2f}x"), f"{r['bytes'] / 2**20:.1f} MiB",
             _f(r["size_vs_fp32"], "{:.2f}"), r["threads"], f"{r['runs']}x{r['repeats_per_run']}")
            for r in result["deploy"]]
    return _table(("model", "format", "quantisation", "median ms", "p90 ms", "speed vs fp32",
                   "size", "size vs fp32", "threads", "runs x images"), rows)


def pictures(result) -> str:
    rows = [(r["model"], f"{r['input_size']}px", f"{r['images']} x {r['jpeg_size'][0]}x"
             f"{r['jpeg_size'][1]}", r["file"], r["batch"], _f(r["images_per_second"]),
             _f(r["runtime_images_per_second"]), _f(r["vs_runtime"], "{:.0%}"),
             _f(r["decode_images_per_second"]), _f(r["cores_busy"], "{:.2f}"), r["runs"])
            for r in result["predict"]]
    return _table(("model", "input", "JPEG files", "file", "batch", "kres.predict images/s",
                   "runtime alone images/s", "of runtime alone", "decoding alone images/s",
                   "cores busy", "runs"), rows)


def training(result) -> str:
    rows = [(r["model"], f"{r['image_size']}px b{r['batch']}", r["backend"], r["path"],
             "on" if r["xla"] else "off", r["precision"], _f(r["images_per_second"]),
             _f(r.get("vs_plain_fit"), "{:.2f}"), _f(r.get("vs_tensorflow"), "{:.2f}"),
             _f(r.get("cores_busy"), "{:.2f}"), _f(r["first_seconds"], "{:.1f}"),
             f"{r['runs']}x{r['steps_per_run']} steps")
            for r in result["training"]]
    text = _table(("model", "input", "backend", "path", "XLA", "precision", "images/s",
                   "vs model.fit", "vs TensorFlow", "cores busy", "first run s", "runs"), rows)
    job = result.get("main_job")
    if job:
        text += (f"\n\nMain job: {job['model']} on {job['data']}, {job['epochs']} epochs: "
                 f"{job['wall_seconds']:.0f} s wall, {job['images_per_second']:.0f} images/s, "
                 f"test accuracy {job['test_accuracy']:.2%}")
    return text


def targets(result) -> str:
    """Where the figures stand against kres' performance targets."""
    rows = []
    inference = result.get("inference", [])
    ratios = [r["ratio"] for r in inference if "ratio" in r]
    if ratios:
        rows.append(("kres / keras.applications, same architecture, every row", ">= 1.00",
                     f"{min(ratios):.2f} (lowest of {len(ratios)})"))
    r50 = [r for r in inference if r["model"] in ("resnet50", "keras_resnet50")
           and r["batch"] == 32 and "gemm_fraction" in r]
    if r50:
        best = max(r50, key=lambda r: r["gemm_fraction"])
        rows.append(("ResNet-50 batch 32 inference, of the GEMM rate", ">= 80%",
                     f"{best['gemm_fraction']:.0%} ({best['model']}, {best['backend']}, "
                     f"{best['call']}, XLA {'on' if best['xla'] else 'off'})"))
    for r in result.get("predict", []):
        if r["model"] == "resnet20":
            rows.append((f"kres.predict over JPEGs, {r['model']} {r['file']}, of the runtime "
                         "alone", ">= 70%", f"{r['vs_runtime']:.0%}"))
    peer_rows = [r for r in (result.get("peers") or {}).get("rows", [])
                 if r["table"] in ("inference", "training")]
    if peer_rows:
        low = min(peer_rows, key=lambda r: r["ratio"])
        rows.append(("kres / timm-on-PyTorch (or PyTorch twin), every inference and training "
                     "row", ">= 1.00", f"{low['ratio']:.2f} (lowest of {len(peer_rows)}: "
                     f"{low['model']} b{low['batch']}, {low['kres']} vs {low['peer']})"))
    for r in result.get("deploy", []):
        if r["quantization"] == "int8":
            rows.append((f"{r['model']} {r['format']} int8 vs fp32 latency", "faster",
                         f"{r['speedup_vs_fp32']:.2f}x with {' '.join(r['cpu_flags'])}"))
    if not rows:
        return "(no target measured)"
    return _table(("target", "wanted", "measured"), rows)


def ops(profile, top=12) -> str:
    """:func:`kres.bench.profile.training_ops` or ``inference_ops`` as tables: the ``top`` op
    types by time (and, for inference, the convolutions' achieved GFLOP/s)."""
    rows = [(o["op"], f"{o['seconds']:.3f}", f"{o['share']:.1%}", o["count"])
            for o in profile["ops"][:top]]
    rest = profile["ops"][top:]
    if rest:
        rows.append((f"{len(rest)} other op types", f"{sum(o['seconds'] for o in rest):.3f}",
                     f"{sum(o['share'] for o in rest):.1%}", sum(o["count"] for o in rest)))
    if profile.get("task") == "inference":
        heading = (f"{profile['model']} inference, {profile['size']}x{profile['size']}, batch "
                   f"{profile['batch']}, {profile['steps']} calls of a compiled function")
    else:
        heading = (f"{profile['model']} training, {profile['size']}x{profile['size']}, batch "
                   f"{profile['batch']}, {profile['steps']} steps of model.fit")
    heading += (f", {profile['inter_op_threads'] or 'default'} inter-op thread(s): "
                f"{profile['op_seconds']:.2f} s of op time in {profile['wall_seconds']:.2f} s "
                "(profiled, so slower than unprofiled)")
    text = heading + "\n\n" + _table(("op", "seconds", "share of op time", "calls"), rows)
    if profile.get("convolutions"):
        text += "\n\nConvolutions and the classifier's matrix product, by kernel:\n\n" + _table(
            ("kernel", "layers", "GMACs", "seconds", "GFLOP/s", "of GEMM rate"),
            [(c["kernel"], c["layers"], f"{c['gmacs']:.1f}", f"{c['seconds']:.3f}",
              _f(c["gflops"]), _f(c.get("of_gemm"), "{:.0%}")) for c in profile["convolutions"]])
    return text


def peers(result) -> str:
    """kres.bench.peers' rows: kres / peer from alternated runs (above 1: kres is faster)."""
    p = result["peers"]
    if "skipped" in p:
        return p["skipped"]
    rows = [(r["table"], r["model"], f"{r['image_size']}px b{r['batch']}", r["kres"], r["peer"],
             _f(r["kres_per_second"]), _f(r["peer_per_second"]), _f(r["ratio"], "{:.2f}")
             + (f" ({r['ratio_low']:.2f}-{r['ratio_high']:.2f})" if "ratio_low" in r else ""))
            for r in p["rows"]]
    return (f"Every runtime pinned to {p['threads']} thread(s); images/s, each pair measured "
            "alternated in one process; kres / peer is the ratio of the medians, in brackets "
            "the lowest and highest ratio of one round where the row has them.\n\n" + _table(
                ("table", "model", "input", "kres", "peer", "kres images/s", "peer images/s",
                 "kres / peer"), rows))


def tables(result) -> str:
    """Every table the result holds, with a heading each."""
    parts = [("Machine", machine)]
    parts += [(title, f) for key, title, f in (
        ("inference", "Inference (Keras)", inference), ("deploy", "Deployment", deploy),
        ("predict", "Pictures (kres.predict)", pictures), ("training", "Training", training),
        ("peers", "Peers (kres / timm on PyTorch, onnxruntime)", peers),
        ("export", "Export cost (kres.export.export)", export_cost)) if key in result]
    parts.append(("Targets", targets))
    return "\n\n".join(f"## {title}\n\n{f(result)}" for title, f in parts)


def export_cost(result) -> str:
    """One row per exported model and step: the step's seconds (an artifact's split by its own
    steps), then the whole export's total and peak memory."""
    rows = []
    for r in result["export"]:
        model = f"{r['model']} {r['image_size']}px"
        seconds = dict(r["seconds"])
        total = seconds.pop("total")
        for step, s in seconds.items():
            split = "; ".join(f"{k} {v:.1f}" for k, v in r["artifacts"].get(step, {}).items())
            if step in r["tries"]:
                split += f" ({r['tries'][step]} int8 tr{'ies' if r['tries'][step] > 1 else 'y'})"
            rows.append((model, step, f"{s:.1f}", f"{s / total:.0%}", split))
        memory = r["peak_memory_bytes"]
        rows.append((model, "**total**", f"{total:.1f}", "100%",
                     f"peak memory {_f(memory and memory / 2**30, '{:.1f}')} GiB; load "
                     f"{r['load_start']} -> {r['load_end']}"))
    return _table(("model", "step", "seconds", "share", "split (seconds)"), rows)
