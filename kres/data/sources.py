"""Where images come from: the embedded digits, tensorflow-datasets builders and image folders.

Every source answers the same two questions: what is the dataset (`DatasetInfo`) and what are the
examples of a split (a `tf.data.Dataset` of single `(image, label)` pairs, images at their native
size, uint8 or float32 in [0, 255]). Resizing, augmentation and batching live in `pipeline.py`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow as tf

from kres.errors import DataError, DataNotFoundError, suggest

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset holds.

    `image_shape` is (height, width, channels) at the size the pipelines use by default;
    `splits` maps each of train/validation/test to its number of examples (None when unknown,
    e.g. a tfds dataset that is not prepared yet).
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    class_names: list[str]
    splits: Mapping[str, int | None]
    flip: bool = True  # whether a horizontal flip is a label-preserving augmentation


def _table_examples(columns, decode) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(columns)
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of the examples to read: all in split order, or `limit` of them chosen with `seed`."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.RandomState(seed).permutation(n)[:limit])


# --------------------------------------------------------------------------------------------
# digits: scikit-learn's 1,797 handwritten digits (8x8, values 0..16), shipped inside its wheel.

_DIGITS_SPLIT_SEED = 20151210  # fixed forever: the split must be the same on every machine
_DIGITS_FRACTIONS = {"validation": 0.15, "test": 0.15}


def _digits_split_indices() -> dict[str, np.ndarray]:
    """A stratified 70/15/15 split, drawn with numpy's legacy RandomState (stable across versions)."""
    from sklearn.datasets import load_digits

    labels = load_digits().target
    rng = np.random.RandomState(_DIGITS_SPLIT_SEED)
    parts = {split: [] for split in SPLITS}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = round(_DIGITS_FRACTIONS["validation"] * len(idx))
        n_test = round(_DIGITS_FRACTIONS["test"] * len(idx))
        parts["validation"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {split: rng.permutation(np.concatenate(p)) for split, p in parts.items()}


class DigitsSource:
    name = "digits"

    def __init__(self):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # 0..16 -> 0..255 raw pixels, NHWC with one channel.
        self._images = (bunch.images.astype(np.float32) * (255.0 / 16.0))[..., None]
        self._labels = bunch.target.astype(np.int64)
        self._splits = _digits_split_indices()
        self.info = DatasetInfo(
            name="digits",
            num_classes=10,
            image_shape=(32, 32, 1),
            class_names=[str(i) for i in range(10)],
            splits={s: len(self._splits[s]) for s in SPLITS},
            flip=False,  # a mirrored 2 is not a 2
        )

    def numpy(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self._splits[split]
        return self._images[idx], self._labels[idx]

    def table(self, split: str, limit: int | None = None, seed: int = 0):
        """Random-access form of a split: (columns, decode), one row per example."""
        images, labels = self.numpy(split)
        idx = _subset(len(labels), limit, seed)
        return (images[idx], labels[idx].astype(np.int32)), lambda x, y: (x, y)

    def examples(self, split: str, limit: int | None = None, seed: int = 0) -> tf.data.Dataset:
        return _table_examples(*self.table(split, limit, seed))


# --------------------------------------------------------------------------------------------
# tfds:NAME, the real tensorflow-datasets builders (download on first use, or read --data-dir).

# Native splits of the datasets kres names, known before download. validation/test are derived
# from them: no labelled test split -> test is the native validation split; no validation split
# -> the last `_HOLDOUT` percent of train.
_TFDS_NATIVE_SPLITS = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "imagenette": ("train", "validation"),
    "imagenet2012": ("train", "validation"),  # its "test" split has no labels
}
_TFDS_DEFAULT_SIZE = {"imagenette/160px": 160, "imagenette/320px": 224}
_HOLDOUT = {"cifar10": 10, "cifar100": 10, "imagenet2012": 1}
_HOLDOUT_DEFAULT = 5


def _tfds_split_names(base: str, native: tuple[str, ...]) -> dict[str, str]:
    holdout = _HOLDOUT.get(base, _HOLDOUT_DEFAULT)
    has_val, has_test = "validation" in native, "test" in native and base != "imagenet2012"
    if has_val and has_test:
        return {"train": "train", "validation": "validation", "test": "test"}
    carve = {"train": f"train[:-{holdout}%]", "validation": f"train[-{holdout}%:]"}
    return {**carve, "test": "test" if has_test else "validation"}


class TfdsSource:
    def __init__(self, name: str, data_dir: str | None = None):
        import tensorflow_datasets as tfds

        self.name = f"tfds:{name}"
        try:
            self._builder = tfds.builder(name, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError:
            close = suggest(name.split("/")[0], tfds.list_builders())
            hint = f" Close matches: {close}." if close != "none" else ""
            raise DataError(
                f"Unknown tensorflow-datasets name {name!r}.{hint} "
                "kres trains on image classification builders such as cifar10, cifar100, "
                "imagenette/160px-v2 and imagenet2012 (see tfds.list_builders())."
            ) from None
        features = self._builder.info.features
        if "image" not in features or "label" not in features:
            raise DataError(
                f"tfds:{name} has features {sorted(features.keys())}; kres needs an image "
                "classification dataset with 'image' and 'label' features."
            )
        base = self._builder.name
        known_splits = tuple(self._builder.info.splits.keys())
        native = known_splits or _TFDS_NATIVE_SPLITS.get(base, ("train", "test"))
        self._split_names = _tfds_split_names(base, native)
        h, w, c = features["image"].shape
        if h is None or w is None:
            default = next((v for k, v in _TFDS_DEFAULT_SIZE.items() if name.startswith(k)), 224)
            h = w = default
        label = features["label"]
        self.info = DatasetInfo(
            name=self.name,
            num_classes=label.num_classes,
            image_shape=(h, w, c),
            class_names=list(label.names),
            splits={s: self._num_examples(v) for s, v in self._split_names.items()},
        )

    def _num_examples(self, split: str) -> int | None:
        try:
            return self._builder.info.splits[split].num_examples or None
        except (KeyError, ValueError):
            return None

    def examples(self, split: str, limit: int | None = None, seed: int = 0) -> tf.data.Dataset:
        del seed  # tfds splits are shuffled once at preparation; a limit takes the first examples
        self._builder.download_and_prepare()  # no-op once prepared; the real download on Colab
        tfds_split = self._split_names[split]
        if limit is not None:
            tfds_split = _take_first(tfds_split, limit)
        ds = self._builder.as_dataset(split=tfds_split, as_supervised=True, shuffle_files=False)
        if limit is not None:
            ds = ds.take(limit)  # the sliced split may hold more when the slice is in percent
        return ds.map(lambda x, y: (x, tf.cast(y, tf.int32)))


def _take_first(split: str, n: int) -> str:
    # "train" -> "train[:n]"; an already sliced split is trimmed with take() instead.
    return split if "[" in split else f"{split}[:{n}]"


# --------------------------------------------------------------------------------------------
# folder:PATH, a directory of split/class/image files.

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_FOLDER_SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}
_FOLDER_ORDER_SEED = 0  # the fixed order in which a folder split is read (classes interleaved)


def _read_header(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) of an image file, or a DataError if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
            width, height = im.size
            mode = im.mode
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(
            f"Cannot read image {path}: {e}. Accepted formats: "
            f"{', '.join(IMAGE_EXTENSIONS)}; remove or replace the file."
        ) from None
    return height, width, 1 if mode in ("L", "1", "I", "I;16", "F") else 3


class FolderSource:
    def __init__(self, path: str):
        root = Path(path).expanduser()
        self.name = f"folder:{path}"
        layout = "PATH/train/CLASS/IMAGE (plus PATH/validation or PATH/val, and/or PATH/test)"
        if not root.is_dir():
            raise DataNotFoundError(f"Image folder {str(root)!r} does not exist; expected {layout}.")
        found = {}
        for split, aliases in _FOLDER_SPLIT_ALIASES.items():
            found[split] = next((root / a for a in aliases if (root / a).is_dir()), None)
        if found["train"] is None:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DataError(
                f"Image folder {str(root)!r} has no train/ directory (it holds {present or 'nothing'}); "
                f"expected {layout}."
            )
        if found["validation"] is None and found["test"] is None:
            raise DataError(
                f"Image folder {str(root)!r} has train/ but neither validation/ (or val/) nor test/; "
                f"expected {layout}."
            )
        found["validation"] = found["validation"] or found["test"]
        found["test"] = found["test"] or found["validation"]

        self.class_names = sorted(p.name for p in found["train"].iterdir() if p.is_dir())
        if not self.class_names:
            raise DataError(f"{str(found['train'])!r} holds no class directories; expected {layout}.")
        self._files = {split: self._list(found[split], split) for split in SPLITS}
        shapes = {_read_header(Path(f)) for files, _ in self._files.values() for f in files}
        channels = {c for _, _, c in shapes}
        self._channels = 3 if 3 in channels else 1
        h, w, _ = _read_header(Path(self._files["train"][0][0]))
        self.info = DatasetInfo(
            name=self.name,
            num_classes=len(self.class_names),
            image_shape=(h, w, self._channels),
            class_names=self.class_names,
            splits={s: len(self._files[s][0]) for s in SPLITS},
        )

    def _list(self, split_dir: Path, split: str) -> tuple[list[str], np.ndarray]:
        files, labels = [], []
        for label, cls in enumerate(self.class_names):
            cls_dir = split_dir / cls
            images = sorted(
                str(p) for p in cls_dir.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
            ) if cls_dir.is_dir() else []
            if not images and split == "train":
                raise DataError(
                    f"Class {cls!r} has no images in {str(cls_dir)!r} "
                    f"(accepted extensions: {', '.join(IMAGE_EXTENSIONS)})."
                )
            files += images
            labels += [label] * len(images)
        extra = sorted(
            p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in self.class_names
        )
        if extra:
            raise DataError(
                f"{str(split_dir)!r} has classes {extra} that train/ does not have; "
                f"train/ defines the classes: {self.class_names}."
            )
        if not files:
            raise DataError(f"{str(split_dir)!r} holds no images for any class of train/.")
        order = np.random.RandomState(_FOLDER_ORDER_SEED).permutation(len(files))
        return [files[i] for i in order], np.asarray(labels, np.int32)[order]

    def table(self, split: str, limit: int | None = None, seed: int = 0):
        """Random-access form of a split: (columns, decode), one row per example."""
        files, labels = self._files[split]
        idx = _subset(len(labels), limit, seed)
        channels = self._channels

        def decode(path, label):
            image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
            return image, label

        return (np.asarray(files)[idx], labels[idx]), decode

    def examples(self, split: str, limit: int | None = None, seed: int = 0) -> tf.data.Dataset:
        return _table_examples(*self.table(split, limit, seed))


# --------------------------------------------------------------------------------------------


def open_source(name: str, data_dir: str | None = None):
    """The source for a dataset name: `digits`, `tfds:NAME` or `folder:PATH`."""
    if not isinstance(name, str):
        raise DataError(f"dataset name must be a string, got {name!r}")
    if name == "digits":
        return _digits()
    kind, rest = check_name(name)
    if kind == "tfds":
        return TfdsSource(rest, data_dir=data_dir)
    return FolderSource(rest)


def check_name(name: str) -> tuple[str, str]:
    """``(kind, rest)`` of a dataset name of a form kres knows (``digits``, ``tfds:NAME``,
    ``folder:PATH``), without opening it; a one-line DataError listing the forms otherwise."""
    kind, sep, rest = name.partition(":") if isinstance(name, str) else ("", "", "")
    if name == "digits" or (sep and kind in ("tfds", "folder") and rest):
        return kind, rest
    raise DataError(
        f"Unknown dataset {name!r}. Accepted: 'digits' (embedded), 'tfds:NAME' "
        "(e.g. tfds:cifar10, tfds:imagenette/160px-v2, tfds:imagenet2012 with a data_dir) "
        "or 'folder:PATH' (PATH/split/class/image files)."
    )


_DIGITS = None


def _digits() -> DigitsSource:
    global _DIGITS  # loading and splitting takes ~50 ms; keep one per process
    if _DIGITS is None:
        _DIGITS = DigitsSource()
    return _DIGITS


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"split must be one of {list(SPLITS)}, got {split!r}")

