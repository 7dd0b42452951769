"""Float vs post-training int8 vs QAT int8, side by side, from two exports' manifests."""

from __future__ import annotations

from kres.export.manifest import Manifest


def compare(float_export, qat_export):
    """Rows (dicts) for a table or a plot: the float Keras model and its post-training int8
    files (the export of the trained run), the QAT Keras model and its int8 files (the export of
    its ``-qat`` run). Each row: ``model`` (float, PTQ int8, QAT, QAT int8), ``format``,
    ``accuracy`` on the held-out images, ``agreement_with_float`` (top-1, with the float Keras
    model) and ``agreement_with_qat`` (with the QAT Keras model, for QAT rows), ``setting``.

    >>> rows = kres.export.comparison.compare("exports/digits-resnet20",
    ...                                       "exports/digits-resnet20-qat")
    >>> print(kres.export.comparison.table(rows))
    """
    ptq, qat = (m if isinstance(m, Manifest) else Manifest.read(m)
                for m in (float_export, qat_export))
    float_model = qat.data["source"].get("float_model") or {}
    rows = [{"model": "float", "format": "keras",
             "accuracy": ptq.data["source"]["keras"]["accuracy"], "agreement_with_float": 1.0,
             "agreement_with_qat": float_model.get("top1_agreement_with_qat"), "setting": None}]
    for a in ptq.artifacts:
        if a["quantization"] == "int8":
            rows.append({"model": "PTQ int8", "format": a["format"], "accuracy": a["accuracy"],
                         "agreement_with_float": a["top1_agreement"], "agreement_with_qat": None,
                         "setting": a["int8"]["kept"]})
    rows.append({"model": "QAT", "format": "keras",
                 "accuracy": qat.data["source"]["keras"]["accuracy"],
                 "agreement_with_float": float_model.get("top1_agreement_with_qat"),
                 "agreement_with_qat": 1.0, "setting": None})
    for a in qat.artifacts:
        if a["quantization"] == "int8":
            rows.append({"model": "QAT int8", "format": a["format"], "accuracy": a["accuracy"],
                         "agreement_with_float": a["int8"].get("top1_agreement_with_float"),
                         "agreement_with_qat": a["top1_agreement"], "setting": "QAT ranges"})
    return rows


def table(rows):
    """``rows`` of :func:`compare` as aligned text."""
    def pct(value):
        return "-" if value is None else f"{value:.2%}"

    lines = [f"{'model':<9} {'format':<7} {'accuracy':>9} {'vs float':>9} {'vs QAT':>8}  setting"]
    lines += [f"{r['model']:<9} {r['format']:<7} {pct(r['accuracy']):>9} "
              f"{pct(r['agreement_with_float']):>9} {pct(r['agreement_with_qat']):>8}  "
              f"{r['setting'] or ''}" for r in rows]
    return "\n".join(lines)
