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
    return _table(("machine", ""), rows)


def inference(result) -> str:
    rows = [(r["model"], r["backend"], r["batch"], r["call"], "on" if r["xla"] else "off",
             _f(r["images_per_second"]), _f(r.get("ratio"), "{:.2f}"),
             _f(r.get("gemm_fraction"), "{:.0%}"), _f(r.get("vs_tensorflow"), "{:.2f}"),
             _f(r["first_call_seconds"], "{:.1f}"), f"{r['runs']}x{r['calls_per_run']}")
            for r in result["inference"]]
    return _table(("model", "backend", "batch", "call", "XLA", "images/s",
                   "kres / keras.applications", "of GEMM rate", "vs TensorFlow",
                   "first call s", "runs x calls"), rows)


def deploy(result) -> str:
    rows = [(r["model"], r["format"], r["quantization"], _f(r["median_ms"]), _f(r["p90_ms"]),
             _f(r["speedup_vs_fp32"], "{:.2f}x"), f"{r['bytes'] / 2**20:.1f} MiB",
             _f(r["size_vs_fp32"], "{:.2f}"), r["threads"], f"{r['runs']}x{r['repeats_per_run']}")
            for r in result["deploy"]]
    return _table(("model", "format", "quantisation", "median ms", "p90 ms", "speed vs fp32",
                   "size", "size vs fp32", "threads", "runs x images"), rows)


def training(result) -> str:
    rows = [(r["model"], f"{r['image_size']}px b{r['batch']}", r["backend"], r["path"],
             "on" if r["xla"] else "off", r["precision"], _f(r["images_per_second"]),
             _f(r.get("vs_plain_fit"), "{:.2f}"), _f(r.get("vs_tensorflow"), "{:.2f}"),
             _f(r["first_seconds"], "{:.1f}"), f"{r['runs']}x{r['steps_per_run']} steps")
            for r in result["training"]]
    text = _table(("model", "input", "backend", "path", "XLA", "precision", "images/s",
                   "vs model.fit", "vs TensorFlow", "first run s", "runs"), rows)
    job = result.get("main_job")
    if job:
        text += (f"\n\nMain job: {job['model']} on {job['data']}, {job['epochs']} epochs: "
                 f"{job['wall_seconds']:.0f} s wall, {job['images_per_second']:.0f} images/s, "
                 f"test accuracy {job['test_accuracy']:.2%}")
    return text


def tables(result) -> str:
    """Every table the result holds, with a heading each."""
    parts = [("Machine", machine)]
    parts += [(title, f) for key, title, f in (
        ("inference", "Inference (Keras)", inference), ("deploy", "Deployment", deploy),
        ("training", "Training", training)) if key in result]
    return "\n\n".join(f"## {title}\n\n{f(result)}" for title, f in parts)
