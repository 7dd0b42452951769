"""What ``kres.predict`` and ``kres.predict.compare`` return: small objects that print as tables,
write JSON and CSV, and plot."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import numpy as np

from kres.files import atomic_write_text

NAME_WIDTH = 28  # class names longer than this are shortened in tables (not in JSON or CSV)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One picture's top-k: class indices, names and probabilities, best first."""

    path: str
    indices: tuple
    names: tuple
    probabilities: tuple

    @property
    def top1(self) -> str:
        return self.names[0]

    def as_dict(self) -> dict:
        return {"path": self.path, "top_k": [
            {"index": i, "name": n, "probability": p}
            for i, n, p in zip(self.indices, self.names, self.probabilities)]}


def top_k(model, items, probabilities, k) -> list:
    """:class:`Prediction` per item from (N, classes) probabilities."""
    k = min(k, probabilities.shape[-1])
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [Prediction(item.name, tuple(int(i) for i in row),
                       tuple(model.name_of(int(i)) for i in row),
                       tuple(float(p[i]) for i in row))
            for item, row, p in zip(items, order, probabilities)]


class _Written:
    """``to_json`` of an object with ``as_dict``."""

    def to_json(self, path=None) -> str:
        """The result as JSON text (also written to ``path`` when given)."""
        return _written(json.dumps(self.as_dict(), indent=2) + "\n", path)


def _written(text, path):
    if path is not None:
        atomic_write_text(path, text)
    return text


@dataclasses.dataclass
class Predictions(_Written):
    """``kres.predict``'s answer: ``items`` (one :class:`Prediction` per picture read, in input
    order), ``failed`` (each input that gave no picture, with its reason), the ``recipe`` that
    prepared the pixels, where the class names and probabilities come from, and ``seconds``."""

    source: str
    recipe: str
    labels_from: str
    scores: str
    items: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    pictures: dict = dataclasses.field(default_factory=dict, repr=False)  # name -> array input

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def summary(self) -> str:
        """One line: how many pictures, how fast, how many failed."""
        rate = f" ({len(self.items) / self.seconds:.1f} images/s)" if self.seconds else ""
        failed = f"; {len(self.failed)} failed" if self.failed else ""
        count = f"{len(self.items)} image{'' if len(self.items) == 1 else 's'}"
        return f"{count} in {self.seconds:.2f} s{rate}{failed}"

    def table(self, k=None) -> str:
        """The pictures and their top-k (``k`` of them, default all kept) as a text table,
        under the source, recipe and class names, with the failures listed after it."""
        k = k or max((len(p.indices) for p in self.items), default=0)
        header = ["image"] + [f"top-{i + 1}" for i in range(k)]
        rows = [[p.path] + [f"{_short(n)} {q:.1%}" for n, q in
                            zip(p.names[:k], p.probabilities[:k])] for p in self.items]
        lines = [f"source: {self.source}", f"recipe: {self.recipe}",
                 f"classes: {self.labels_from}; probabilities: {self.scores}", "",
                 _text_table(header, rows)]
        lines += [""] + [f"failed: {f.line()}" for f in self.failed] if self.failed else []
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def as_dict(self) -> dict:
        return {"source": self.source, "recipe": self.recipe, "classes": self.labels_from,
                "probabilities": self.scores, "seconds": self.seconds,
                "predictions": [p.as_dict() for p in self.items],
                "failed": [{"path": f.path, "error": f.reason} for f in self.failed]}

    def to_csv(self, path=None) -> str:
        """One row per input: path, then index, name and probability of each of the top-k,
        then the error of an input that failed (also written to ``path`` when given)."""
        k = max((len(p.indices) for p in self.items), default=0)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path"] + [f"{field}_{i + 1}" for i in range(k)
                                    for field in ("index", "name", "probability")] + ["error"])
        for p in self.items:
            cells = [c for i, n, q in zip(p.indices, p.names, p.probabilities)
                     for c in (i, n, f"{q:.6g}")]
            writer.writerow([p.path] + cells + [""] * (3 * k - len(cells)) + [""])
        for f in self.failed:
            writer.writerow([f.path] + [""] * (3 * k) + [f.reason])
        return _written(out.getvalue(), path)

    def plot(self, max_images=8, k=5):
        """Each picture (up to ``max_images``) beside a bar chart of its top-``k``; the
        matplotlib Figure."""
        import matplotlib.pyplot as plt

        shown = self.items[:max_images]
        figure, axes = plt.subplots(max(len(shown), 1), 2, squeeze=False,
                                    figsize=(9, 2.2 * max(len(shown), 1)),
                                    gridspec_kw={"width_ratios": [1, 1.6]})
        for (picture, bars), p in zip(axes, shown):
            image = self.pictures.get(p.path)
            image = _thumbnail(p.path) if image is None else _displayable(image)
            picture.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            picture.set_title(_short(p.path.split("/")[-1], 40), fontsize=9)
            picture.axis("off")
            names = [_short(n) for n in p.names[:k]][::-1]
            bars.barh(range(len(names)), p.probabilities[:k][::-1], color="tab:blue")
            bars.set_yticks(range(len(names)), names, fontsize=8)
            bars.set_xlim(0, 1)
            bars.tick_params(axis="x", labelsize=8)
        for extra in axes[len(shown):].ravel():
            extra.axis("off")
        figure.tight_layout()
        return figure


@dataclasses.dataclass
class Comparison(_Written):
    """``kres.predict.compare``'s answer: each source's :class:`Predictions` on the same
    pictures, each source's top-1 agreement with the first and largest probability difference
    from it (over every picture and class), and the pictures on which any disagrees."""

    sources: list
    predictions: list
    agreement: list  # fraction of pictures whose top-1 equals the first source's (first: 1.0)
    max_difference: list  # max |p - p_first| over pictures and classes (first: 0.0)
    disagreements: list  # (path, [(name, probability) per source])

    @property
    def failed(self):
        return self.predictions[0].failed

    def table(self) -> str:
        """Agreement per source, then every picture on which the sources disagree."""
        n = len(self.predictions[0].items)
        rows = [[self.sources[0], "(reference)", "", ""]]
        for source, agreement, difference in zip(self.sources[1:], self.agreement[1:],
                                                 self.max_difference[1:]):
            agree = round(agreement * n)
            rows.append([source, f"{agreement:.2%} ({agree} of {n})", f"{difference:.4f}",
                         str(n - agree)])
        lines = [f"compared on {n} images; recipe: {self.predictions[0].recipe}", "",
                 _text_table(["source", "top-1 agreement with the first", "max |p - p_first|",
                              "disagreements"], rows), ""]
        if not self.disagreements:
            lines.append("every source gives the first one's top-1 on every image")
        else:
            lines.append(f"the {len(self.disagreements)} images on which they disagree (top-1 "
                         "of each source):")
            lines.append(_text_table(["image"] + [s.split("/")[-1] for s in self.sources], [
                [path] + [f"{_short(name)} {p:.1%}" for name, p in answers]
                for path, answers in self.disagreements]))
        lines += [f"failed: {f.line()}" for f in self.failed]
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def as_dict(self) -> dict:
        return {"sources": [{"source": s, "top1_agreement": a, "max_probability_difference": d,
                             "recipe": p.recipe, "classes": p.labels_from}
                            for s, a, d, p in zip(self.sources, self.agreement,
                                                  self.max_difference, self.predictions)],
                "disagreements": [{"path": path, "top1": [
                    {"source": s, "name": name, "probability": p}
                    for s, (name, p) in zip(self.sources, answers)]}
                    for path, answers in self.disagreements],
                "failed": [{"path": f.path, "error": f.reason} for f in self.failed]}

    def to_csv(self, path=None) -> str:
        """One row per picture: each source's top-1 name and probability, and whether all agree."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path"] + [f"{field}_{i + 1}" for i in range(len(self.sources))
                                    for field in ("name", "probability")] + ["agree"])
        for answers in zip(*(p.items for p in self.predictions)):
            tops = [(a.names[0], a.indices[0], a.probabilities[0]) for a in answers]
            writer.writerow([answers[0].path] + [c for name, _, p in tops
                                                 for c in (name, f"{p:.6g}")]
                            + [int(len({i for _, i, _ in tops}) == 1)])
        return _written(out.getvalue(), path)


def _short(text, width=NAME_WIDTH):
    return text if len(text) <= width else text[:width - 3] + "..."


def _text_table(header, rows) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows if i < len(r))
              for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header] + rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def _displayable(array):
    """An array picture of raw 0-255 values as imshow shows pixels: uint8, gray as 2-D."""
    array = np.clip(np.asarray(array, np.float32), 0, 255).astype(np.uint8)
    return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array


def _thumbnail(path, side=256):
    from PIL import Image

    with Image.open(path) as image:
        image.draft("RGB", (side, side))
        image = image.convert("RGB")
        image.thumbnail((side, side))
        return np.asarray(image)
