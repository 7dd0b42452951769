"""manifest.json: what an export directory holds, and the table people read.

Per artifact: file, format, quantisation, bytes and SHA-256; its input and output tensors; how it
compared with the Keras model (max |difference|, top-1 agreement, accuracy); for int8 files the
settings tried and the worst layers; for TFLite files the embedded metadata; and its latency
with the CPU, runtime, delegate and threads it was measured with; for TFLite and ONNX files the
deployment report (:mod:`kres.export.deployment`: what runs on which accelerator, what it costs);
and ``seconds``, the wall time of each of its steps. The export's own ``seconds``: each step of
the whole export (one per artifact) and their total (:mod:`kres.export.timing`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os

from kres.errors import IntegrityError

MANIFEST = "manifest.json"


@dataclasses.dataclass
class Manifest:
    """An export directory's manifest.json: ``artifacts`` (one dict per file) and everything
    else it records (source model, preprocessing, labels, machine, converters)."""

    path: str
    data: dict

    @property
    def artifacts(self):
        return self.data["artifacts"]

    def artifact(self, format, quantization):
        """The path of the artifact with this format and quantisation, inside the export
        directory (an IntegrityError for a path that leads out of it)."""
        for a in self.artifacts:
            if (a["format"], a["quantization"]) == (format, quantization):
                return inside(os.path.dirname(self.path), a["path"], self.path)
        raise KeyError(f"no {quantization} {format} in {self.path}")

    @classmethod
    def read(cls, path):
        """The manifest of an export directory (or of a manifest.json path); an IntegrityError
        in one line when it is missing, not JSON or lists no artifacts."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, MANIFEST)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise IntegrityError(f"no {MANIFEST} at {path!r}: not a kres export "
                                 "directory") from None
        except (ValueError, OSError) as error:
            raise IntegrityError(f"{path!r} is not a readable JSON manifest ({error}); export "
                                 "again") from None
        artifacts = data.get("artifacts") if isinstance(data, dict) else None
        if not isinstance(artifacts, list) or not all(
                isinstance(a, dict) and {"path", "format", "quantization"} <= set(a)
                for a in artifacts):
            raise IntegrityError(f"{path!r} is not a kres manifest: it needs a list "
                                 '"artifacts" of {"path", "format", "quantization", ...}; '
                                 "export again")
        return cls(path, data)

    def speedup(self, artifact):
        """fp32 latency of the same format / this artifact's latency (None for SavedModels and
        when the format has no fp32 file)."""
        fp32 = next((a for a in self.artifacts if a["format"] == artifact["format"]
                     and a["quantization"] == "fp32"), None)
        if fp32 is None or artifact["format"] == "saved_model":
            return None
        return fp32["latency"]["median_ms"] / artifact["latency"]["median_ms"]

    def table(self):
        """The artifacts as a text table: size, fidelity, accuracy, latency and int8 speed-up."""
        rows = [("artifact", "format", "quant", "int8 setting", "size", "max|diff|", "rel err",
                 "top-1 agree", "accuracy", "latency", "vs fp32")]
        for a in self.artifacts:
            setting = (a.get("int8") or {}).get("kept") or "-"
            speedup = self.speedup(a)
            rows.append((a["path"], a["format"], a["quantization"], setting, _human(a["bytes"]),
                         _fmt(a["max_abs_diff"], "{:.2e}"),
                         _fmt(a.get("relative_error"), "{:.2e}"),
                         _fmt(a["top1_agreement"], "{:.2%}"),
                         _fmt(a["accuracy"], "{:.2%}"), f"{a['latency']['median_ms']:.2f} ms",
                         _fmt(speedup, "{:.2f}x")))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        v, machine = self.data["verification"], self.data["machine"]
        threads = sorted({a["latency"]["threads"] for a in self.artifacts
                          if a["format"] != "saved_model"})
        lines.append(f"verified on {v['samples']} images of {v['source']}")
        lines.append(
            f"latency: median of {v['latency_repeats']} single-image runs, "
            f"{'/'.join(map(str, threads))} thread(s), on {machine['model']} ({machine['arch']}, "
            f"{' '.join(machine['flags']) or 'no SIMD extensions listed'}): this host's CPU, "
            "not a phone's; vs fp32 = speed-up over the fp32 file of the same format")
        return "\n".join(lines)

    def deployment_table(self):
        """What runs where, per file (:mod:`kres.export.deployment`): op count, the ops the CPU
        delegate took (XNNPACK for TFLite, the execution provider for ONNX), the GPU delegate's
        verdict, integer-only for NPU/DSP delegates, what the Edge TPU would leave on the CPU,
        parameters, multiply-accumulates per image, size and the measured activation arena."""
        reports = [(a["path"], a["deployment"]) for a in self.artifacts if a.get("deployment")]
        return deployment_table(reports)


def deployment_table(reports):
    """The text table of (name, deployment report) pairs; also ``kres export --check``'s."""
    rows = [("file", "ops", "CPU delegate / EP", "left on CPU", "GPU delegate", "integer-only",
             "static shape", "Edge TPU leaves", "params", "MACs", "size", "arena")]
    for name, r in reports:
        rows.append((name, str(sum(r["ops"].values())), *_placement(r), *_accelerators(r),
                     f"{r['cost']['parameters']:,}", _fmt(r["cost"].get("macs"), "{:,}"),
                     _human(r["cost"]["bytes"]),
                     "-" if r["cost"]["arena_bytes"] is None else _human(r["cost"]["arena_bytes"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 8 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += [
        "GPU delegate: the rules of TensorFlow's gpu_compatibility.cc, op by op; integer-only: "
        "int8/uint8 from the input QUANTIZE to the output DEQUANTIZE (NNAPI, Edge TPU, Qualcomm "
        "delegates), 'int I/O' when input and output are integer too; static shape: the input's "
        "shape_signature has no -1",
        "Edge TPU: ops its compiler's supported-operations table leaves on the CPU; MACs: "
        "multiply-accumulates per image; arena: activation memory the interpreter allocated "
        "(measured, TFLite); ONNX: nodes of onnxruntime's optimised graph on the provider, "
        "quantised share of compute nodes in 'integer-only'"]
    return "\n".join(lines)


def _placement(r):
    if r["format"] == "onnx":
        p = r["providers"]
        providers = ", ".join(f"{n}/{p['nodes']} {k.replace('ExecutionProvider', ' EP')}"
                              for k, n in p["by_provider"].items())
        return providers or "-", "none" if p["all_on_requested"] else "some"
    x = r["xnnpack"]
    left = ", ".join(f"{k} x{v}" for k, v in (x["on_cpu"] or {}).items()) or "none"
    return f"XNNPACK {x['delegated']}/{x['ops']} ops, {x['partitions']} partition(s)", left


def _accelerators(r):
    if r["format"] == "onnx":
        q = r["quantized_nodes"]
        return "-", f"{q['quantized']}/{q['compute']} nodes quantised", "-", "-"
    gpu, integer, tpu = r["gpu"], r["integer_only"], r["edge_tpu"]
    verdict = "compatible" if gpu["compatible"] else "NO: " + ", ".join(
        sorted({p["op"] for p in gpu["incompatible"]}))
    if integer["integer_only"]:
        only = "yes" + (", int I/O" if integer["integer_io"] else ", float I/O")
    else:
        only = f"no ({sum(integer['float_ops'].values())} float ops)"
    shape = "yes" if integer["static_input_shape"] else \
        "no: " + " ".join(str(s) for s in integer["input_signature"])
    flagged = collections.Counter(p["op"] for p in tpu["flagged"])
    return verdict, only, shape, ", ".join(f"{k} x{v}" for k, v in flagged.items()) or "none"


def inside(directory, name, manifest):
    """``directory/name`` when it stays inside ``directory`` once symbolic links and ``..`` are
    resolved; an IntegrityError otherwise: a manifest must not point at a file from elsewhere."""
    path = os.path.join(directory, name)
    root = os.path.realpath(directory)
    real = os.path.realpath(path)
    if os.path.isabs(name) or os.path.commonpath([root, real]) != root or real == root:
        raise IntegrityError(f"{manifest!r} names the artifact {name!r}, which resolves to "
                             f"{real!r}, outside the export directory {root!r}; refusing it")
    return path


def _human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _fmt(value, pattern):
    return "-" if value is None else pattern.format(value)
