"""README.md beside the files: a model card in the Hugging Face layout (YAML front matter, then
text; https://huggingface.co/docs/hub/model-cards), so that an export directory can be published
as it is. Every figure in it is read from manifest.json; none is typed by hand.

>>> print(kres.export.card.text(kres.export.Manifest.read("exports/digits-resnet20")))
"""

from __future__ import annotations

import json
import os

from kres.files import atomic_write_text

CARD = "README.md"
PROJECT_LICENSE = "apache-2.0"  # kres' own licence, for weights a kres run trained
APPS = (
    "Android: MediaPipe Image Classifier "
    "(https://ai.google.dev/edge/mediapipe/solutions/vision/image_classifier/android) takes the "
    "TFLite files with their metadata and labels as they are; LiteRT's Interpreter / "
    "CompiledModel API (https://ai.google.dev/edge/litert/android) for the raw tensors.",
    "iOS: MediaPipe Image Classifier "
    "(https://ai.google.dev/edge/mediapipe/solutions/vision/image_classifier/ios); LiteRT for "
    "Swift (https://ai.google.dev/edge/litert/ios/quickstart).",
    "ONNX files: onnxruntime (https://onnxruntime.ai/docs/get-started/with-mobile.html) on "
    "Android and iOS.",
)


def write(manifest) -> str:
    """Write the card of ``manifest`` (a :class:`Manifest`) beside it; its path."""
    path = os.path.join(os.path.dirname(manifest.path), CARD)
    atomic_write_text(path, text(manifest))
    return path


def text(manifest) -> str:
    """The card: front matter, then the model, its training, its files, its input, its labels,
    how to run it and what runs where."""
    data = manifest.data
    sections = [_front_matter(data), f"# {data['source']['name']}", _model(manifest),
                _training(data), _files(manifest), _input(data), _labels(manifest),
                _how_to_run(data), "## What runs where\n\n```\n" + manifest.deployment_table()
                + "\n```"]
    return "\n\n".join(s for s in sections if s) + "\n"


def _front_matter(data):
    """YAML, written by hand: strings are JSON-quoted, which YAML reads as they are."""
    formats = sorted({a["format"] for a in data["artifacts"]})
    tags = ["image-classification", "resnet", "kres", *formats,
            *sorted({a["quantization"] for a in data["artifacts"]})]
    dataset = _dataset(data)
    lines = ["---", "library_name: tflite" if "tflite" in formats else "library_name: onnx",
             f"license: {json.dumps(license_of(data))}", "pipeline_tag: image-classification",
             "tags:", *[f"- {json.dumps(t)}" for t in tags]]
    if dataset:
        lines += ["datasets:", f"- {json.dumps(dataset)}"]
    lines += ["metrics:", "- accuracy", "---"]
    return "\n".join(lines)


def license_of(data):
    """The weights' licence: the pretrained table's for downloaded weights, kres' own for
    weights a kres run trained."""
    weights = data["source"].get("weights") or (data["source"].get("run_config") or {}).get(
        "weights")
    if not weights:
        return PROJECT_LICENSE
    from kres import KresError
    from kres.weights.loading import pretrained_info

    try:
        return pretrained_info(data["source"]["name"], weights).license
    except KresError:
        return "other"


def _dataset(data):
    """The training run's dataset, else the one the export was verified on (None: generated
    images)."""
    config = data["source"].get("run_config") or {}
    verified = data["verification"]["source"]
    return config.get("data") or (None if verified.startswith("generated")
                                  else verified.split(":")[0])


def _model(manifest):
    source = manifest.data["source"]
    cost = _first_cost(manifest)
    lines = ["## Model", "",
             f"- Architecture: {source.get('architecture') or source['name']}"
             + (f" ({source['reference']})" if source.get("reference") else ""),
             f"- Input {source['input_shape']}, output {source['output_shape']}"]
    if source.get("parameters"):
        p = source["parameters"]
        lines.append(f"- Parameters: {p['trainable']:,} trainable in Keras ({p['total']:,} with "
                     "BatchNorm statistics)"
                     + (f"; {cost['parameters']:,} in the files (BatchNorm folded into the "
                        "convolutions)" if cost else ""))
    if cost and cost.get("macs"):
        lines.append(f"- Multiply-accumulates per image: {cost['macs']:,}")
    return "\n".join(lines)


def _first_cost(manifest):
    return next((a["deployment"]["cost"] for a in manifest.artifacts
                 if a.get("deployment") and a["deployment"]["cost"].get("macs")), None)


def _training(data):
    source = data["source"]
    recipe = source.get("run_recipe") or source.get("run_config")
    metrics = source.get("run_metrics") or {}
    keras = source["keras"]
    lines = ["## Training", ""]
    if recipe:
        settings = {k: v for k, v in recipe.items() if v is not None}
        lines.append("From the training run's config.json (the values it used): "
                     + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".")
        if metrics.get("epochs_completed") is not None:
            lines.append(f"\n{metrics['epochs_completed']} epochs completed; the exported model "
                         f"is the epoch with the best validation accuracy "
                         f"({metrics['best_val_accuracy']:.2%}).")
    else:
        lines.append(f"Not recorded: the model came from {data['source']['from']} "
                     f"({data['source']['model']}).")
    if keras.get("accuracy") is not None:
        lines.append(f"\nKeras model accuracy: {keras['accuracy']:.2%} on "
                     f"{data['verification']['samples']} images of {data['verification']['source']}.")
    return "\n".join(lines)


def _files(manifest):
    data = manifest.data
    rows = ["| file | format | quantisation | size | SHA-256 | accuracy | top-1 agreement with "
            "Keras | max abs diff | latency | GPU delegate | integer-only | arena |",
            "|" + "---|" * 12]
    for a in manifest.artifacts:
        d = a.get("deployment") or {}
        rows.append("| " + " | ".join([
            f"`{a['path']}`", a["format"], a["quantization"], f"{a['bytes']:,} B",
            f"`{a['sha256']}`", _pct(a.get("accuracy")), _pct(a.get("top1_agreement")),
            f"{a['max_abs_diff']:.2e}", f"{a['latency']['median_ms']:.2f} ms",
            _gpu(d), _integer(d),
            f"{d['cost']['arena_bytes']:,} B" if d.get("cost", {}).get("arena_bytes") else "-",
        ]) + " |")
    machine = data["machine"]
    return "\n".join(["## Files", "", *rows, "",
                      f"Verified on {data['verification']['samples']} images of "
                      f"{data['verification']['source']}. Latency: median of single-image runs "
                      f"on {machine['model']} ({machine['arch']}, "
                      f"{' '.join(machine['flags']) or 'no SIMD extensions listed'}), this "
                      "host's CPU, not a phone's."])


def _pct(value):
    return "-" if value is None else f"{value:.2%}"


def _gpu(d):
    if "gpu" not in d:
        return "-"
    return "compatible" if d["gpu"]["compatible"] else "no: " + ", ".join(
        sorted({p["op"] for p in d["gpu"]["incompatible"]}))


def _integer(d):
    if "integer_only" not in d:
        return "-"
    i = d["integer_only"]
    return ("yes" + (", integer I/O" if i["integer_io"] else "")) if i["integer_only"] else "no"


def _input(data):
    p = data["preprocessing"]
    source = data["source"]
    lines = ["## Input", "", f"- Size: {source['input_shape']} (height, width, channels), NHWC, "
             "batch first", f"- {p['input']}"]
    if p.get("inside_model"):
        lines.append(f"- Normalisation inside the model: (x - {_round(p['mean'])}) / "
                     f"{_round(p['std'])}")
    colours = {a["metadata"]["input"]["color_space"] for a in data["artifacts"]
               if a.get("metadata")}
    if colours:
        lines.append(f"- Colour space: {', '.join(sorted(colours))}")
    for a in data["artifacts"]:
        for t in a["inputs"]:
            q = t.get("quantization")
            lines.append(f"- `{a['path']}`: {t['dtype']}"
                         + (f", real = {q['scale']:.6g} * (q - {q['zero_point']})" if q else ""))
    return "\n".join(lines)


def _round(values):
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _labels(manifest):
    labels = _label_list(manifest)
    if not labels:
        return None
    return "## Labels\n\n" + f"{len(labels)} classes, in output order (labels.txt): " + \
        ", ".join(labels)


def _label_list(manifest):
    if not manifest.data.get("labels"):
        return None
    with open(os.path.join(os.path.dirname(manifest.path), manifest.data["labels"])) as f:
        return f.read().splitlines()


def _how_to_run(data):
    runnable = [a for a in data["artifacts"] if a["format"] == "tflite"]
    if not runnable:
        return "## How to run\n\n" + "\n".join(f"- {line}" for line in APPS)
    chosen = next((a for a in runnable if a["quantization"] == "int8"), runnable[0])
    shape = [1, *[224 if d is None else d for d in data["source"]["input_shape"]]]
    labels = "labels = open(\"labels.txt\").read().splitlines()" if data.get("labels") else \
        "labels = None"
    snippet = f'''```python
import numpy as np
from ai_edge_litert.interpreter import Interpreter

{labels}
interpreter = Interpreter(model_path="{chosen['path']}")
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
image = np.full({tuple(shape)}, 128.0, np.float32)  # {data['preprocessing']['input']}
if inp["dtype"] != np.float32:  # integer input: q = x / scale + zero_point
    scale, zero = inp["quantization"]
    info = np.iinfo(inp["dtype"])
    image = np.clip(np.round(image / scale + zero), info.min, info.max).astype(inp["dtype"])
interpreter.set_tensor(inp["index"], image)
interpreter.invoke()
scores = interpreter.get_tensor(out["index"]).astype(np.float32)
if out["dtype"] != np.float32:  # integer output: real = scale * (q - zero_point)
    scale, zero = out["quantization"]
    scores = scale * (scores - zero)
best = int(scores[0].argmax())
print(labels[best] if labels else best)
```'''
    return "\n".join(["## How to run", "",
                      "In Python, with `pip install ai-edge-litert numpy`, in this directory:", "",
                      snippet, "", *[f"- {line}" for line in APPS]])
