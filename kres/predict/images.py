"""Pictures in: image files, folders, glob patterns and arrays, found, decoded and made into the
pixels a model takes, batch by batch.

Files are decoded as kres' folder datasets decode them (``tf.io.decode_image`` with the model's
channels: grayscale, RGB or RGBA, alpha dropped, a GIF's first frame) and resized by
:func:`kres.data.evaluation_view`, the function kres' own evaluation uses, so that a picture
gets the pixels its model was evaluated on. A batch of files is one TensorFlow call (read,
decode and view, several files at a time, in TensorFlow's threads), made for the next batch while
the model runs the current one: at most two batches are held at a time. A file TensorFlow cannot
decode is opened with Pillow, which either reads it (formats TensorFlow lacks) or says what is
wrong with it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import glob
import math
import os

import numpy as np

from kres.data.sources import IMAGE_EXTENSIONS
from kres.errors import KresError

ACCEPTED = "a JPEG, PNG, BMP or GIF file"
SMALL_IMAGE_MAX = 64  # kres.data's: up to this side and without a crop, a plain resize
DEFAULT_CROP = 0.875  # kres.data's evaluation crop above SMALL_IMAGE_MAX


class PredictError(KresError):
    """``kres.predict`` was given something it cannot use."""


class ImageError(PredictError):
    """No picture could be read. ``failures`` lists each input with its reason."""

    def __init__(self, failures):
        self.failures = list(failures)
        if len(self.failures) == 1:
            text = self.failures[0].line()
        else:
            text = f"none of the {len(self.failures)} inputs could be read:\n  " + "\n  ".join(
                f.line() for f in self.failures)
        super().__init__(text)


@dataclasses.dataclass(frozen=True)
class Failure:
    """An input that gave no picture, and why, in one line."""

    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Item:
    """One picture to predict: a file (``path``) or an array given by the caller."""

    name: str
    path: str | None = None
    array: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)


# ------------------------------------------------------------------------------ finding


def find(images) -> tuple[list[Item], list[Failure]]:
    """The pictures meant by ``images`` (a path, folder, glob pattern or array, or a list of
    them) in the order given, folders and patterns expanded in sorted order, and every entry that
    named no picture with its reason. Folders are searched recursively for files ending in
    .png, .jpg, .jpeg, .bmp or .gif; a file named directly is read whatever its name."""
    if isinstance(images, (str, os.PathLike, np.ndarray)):
        images = [images]
    items, failures, arrays = [], [], 0
    for entry in images:
        if not isinstance(entry, (str, os.PathLike)):
            batch = _as_images(entry)
            items += [Item(f"<array {arrays + i}>", array=a) for i, a in enumerate(batch)]
            arrays += len(batch)
            continue
        text = os.fspath(entry)
        if os.path.isdir(text):
            files = _image_files(text)
            items += [Item(f, f) for f in files]
            if not files:
                failures.append(Failure(text, f"the folder holds no images (searched "
                                              f"recursively for {', '.join(IMAGE_EXTENSIONS)})"))
        elif os.path.isfile(text):
            items.append(Item(text, text))
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            files = [f for m in matches for f in (_image_files(m) if os.path.isdir(m) else [m])]
            items += [Item(f, f) for f in files]
            if not files:
                failures.append(Failure(text, "the pattern matches no image files"))
        else:
            failures.append(Failure(text, "no such file or folder (expected image files, "
                                          "folders or glob patterns)"))
    return items, failures


def _image_files(folder):
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return found


def _as_images(value):
    """An array as a list of pictures: (H, W) and (H, W, C) are one, (N, H, W, C) a batch."""
    array = np.asarray(value)
    if array.ndim == 2 or array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4) or not np.issubdtype(
            array.dtype, np.number):
        raise PredictError(f"an array of shape {array.shape} ({array.dtype}) is not a picture: "
                           "give (H, W), (H, W, C) or a batch (N, H, W, C) of raw 0-255 pixel "
                           "values, C being 1, 3 or 4")
    return list(array)


# ------------------------------------------------------------------------------ the recipe


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How pictures become a model's input: ``size`` x ``size`` pixels with ``channels``
    channels, by :func:`kres.data.evaluation_view` (``crop_fraction`` None: a plain resize),
    raw 0-255 values, then ``(x - mean) / std`` when ``mean``/``std`` are given (a model
    that does not normalise inside). ``origin`` says where the recipe was read."""

    size: int
    channels: int
    crop_fraction: float | None = None
    interpolation: str = "bilinear"
    mean: tuple | None = None
    std: tuple | None = None
    normalises_inside: bool = True
    origin: str = dataclasses.field(default="", compare=False)

    @classmethod
    def default(cls, size, channels, origin, **kwargs):
        """kres.data's evaluation view for a model of this size: a plain resize up to 64 px,
        above it the shorter side to size / 0.875 and the central square."""
        crop = kwargs.pop("crop_fraction", None)
        if crop is None and size > SMALL_IMAGE_MAX:
            crop = DEFAULT_CROP
        return cls(size, channels, crop, origin=origin, **kwargs)

    def describe(self) -> str:
        """The recipe in words, e.g. "resize to 32x32 bilinear, grayscale, raw 0-255 pixels;
        the model normalises inside"."""
        if self.crop_fraction is None:
            view = f"resize to {self.size}x{self.size} {self.interpolation}"
        else:
            view = (f"resize the shorter side to {round(self.size / self.crop_fraction)} "
                    f"{self.interpolation} (antialiased), centre crop {self.size}x{self.size}")
        colour = {1: "grayscale", 3: "RGB", 4: "RGBA"}.get(self.channels,
                                                        f"{self.channels} channels")
        if self.mean is not None:
            pixels = (f"(pixel - mean) / std with mean {_numbers(self.mean)} and std "
                      f"{_numbers(self.std)}")
        elif self.normalises_inside:
            pixels = "raw 0-255 pixels; the model normalises inside"
        else:
            pixels = "raw 0-255 pixels (no normalisation is recorded for this model)"
        text = f"{view}, {colour}, {pixels}"
        return f"{text} (from {self.origin})" if self.origin else text

    def draft_size(self, width, height):
        """The smallest (width, height) a JPEG may be decoded at (libjpeg's DCT scaling, Pillow's
        ``draft``) and still give the same view: what the antialiased resize of the crop path
        shrinks to. None for a plain resize, which samples the full-size picture."""
        if self.crop_fraction is None:
            return None
        scale = (self.size / self.crop_fraction) / min(width, height)
        return math.ceil(width * scale), math.ceil(height * scale)

    def normalise(self, pixels):
        if self.mean is None:
            return pixels
        return (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


def _numbers(values):
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


# ------------------------------------------------------------------------------ decoding


def decode_file(contents, recipe: Recipe):
    """The pixels (H, W, recipe.channels) of an image file's bytes, a uint8 tensor, as
    ``tf.io.decode_image`` gives them. A JPEG much larger than the recipe's view needs is
    decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, ``Recipe.draft_size``)."""
    import tensorflow as tf

    channels = recipe.channels

    def whole():
        return tf.io.decode_image(contents, channels=channels, expand_animations=False)

    if recipe.crop_fraction is None or channels not in (1, 3):
        return whole()

    def reduced():
        shape = tf.cast(tf.io.extract_jpeg_shape(contents)[:2], tf.float32)
        need = tf.math.ceil(shape * (recipe.size / recipe.crop_fraction) / tf.reduce_min(shape))
        factor = tf.reduce_min(tf.math.floordiv(shape, need))
        scale = tf.add_n([tf.cast(factor >= r, tf.int32) for r in (2, 4, 8)])
        return tf.switch_case(scale, [whole] + [
            functools.partial(tf.io.decode_jpeg, contents, channels=channels, ratio=r)
            for r in (2, 4, 8)])

    return tf.cond(tf.io.is_jpeg(contents), reduced, whole)


def decode(path, recipe: Recipe) -> np.ndarray:
    """An image file's uint8 pixels (H, W, recipe.channels) by Pillow, for what TensorFlow
    cannot decode; a :class:`PredictError` that says what is wrong with the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise PredictError(f"not an image (expected {ACCEPTED})") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise PredictError(f"cannot be read: {getattr(error, 'strerror', None) or error}") \
            from None
    with image:
        try:
            if image.format == "JPEG":
                need = recipe.draft_size(*image.size)
                if need is not None:
                    image.draft(image.mode, need)
            image.load()  # a GIF's first frame: the one Image.open stands on
            return convert(image, recipe.channels)
        except (OSError, SyntaxError, ValueError) as error:
            raise PredictError(f"a corrupt or truncated {image.format or ''} image ({error}); "
                               f"expected {ACCEPTED}".replace("  ", " ")) from None


def convert(image, channels) -> np.ndarray:
    """A Pillow image as uint8 pixels with ``channels`` channels: grayscale by Pillow's ITU-R
    601-2 luma, RGB by repeating gray, alpha dropped, palettes expanded, 16-bit scaled."""
    if image.mode.startswith("I;16"):  # Pillow's I;16 -> L conversion clips instead of scaling
        from PIL import Image

        image = Image.fromarray((np.asarray(image, np.uint16) >> 8).astype(np.uint8), "L")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise PredictError(f"the model takes {channels}-channel images; pictures give 1 "
                           "(grayscale), 3 (RGB) or 4 (RGBA)")
    pixels = np.asarray(image if image.mode == mode else image.convert(mode))
    return pixels.reshape(*pixels.shape[:2], channels)


def convert_array(array, channels) -> np.ndarray:
    """An array picture (H, W) or (H, W, 1/3/4) of raw 0-255 values with ``channels`` channels:
    grayscale by ITU-R 601 luma (0.299, 0.587, 0.114), RGB by repeating gray, alpha dropped."""
    array = np.asarray(array, np.float32)
    if array.ndim == 2:
        array = array[..., None]
    have = array.shape[-1]
    if have == 4 and channels != 4:
        array, have = array[..., :3], 3
    if have == channels:
        return array
    if have == 1 and channels in (3, 4):
        gray = np.repeat(array, 3, axis=-1)
        return gray if channels == 3 else np.concatenate(
            [gray, np.full_like(array, 255.0)], axis=-1)
    if have == 3 and channels == 1:
        return (array @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None]
    if have == 3 and channels == 4:
        return np.concatenate([array, np.full_like(array[..., :1], 255.0)], axis=-1)
    raise PredictError(f"an array picture with {have} channels cannot feed a model that takes "
                       f"{channels}; give 1 (grayscale), 3 (RGB) or 4 (RGBA) channels")


# ------------------------------------------------------------------------------ viewing


@functools.lru_cache(maxsize=None)
def _view_function(size, crop_fraction, interpolation):
    import tensorflow as tf

    from kres.data import evaluation_view

    # One trace per input dtype and rank (uint8 files, float arrays); any height and width.
    @tf.function(reduce_retracing=True)
    def view(images):
        return evaluation_view(images, size, crop_fraction, interpolation)

    return view


def view(pictures, recipe: Recipe) -> np.ndarray:
    """Decoded pictures (each H, W, C, uint8 or float, any sizes) as one float32 batch the model
    takes, the same-sized ones resized together: for arrays and Pillow's pictures (files are
    decoded and viewed in one TensorFlow call, see :func:`batches`)."""
    out = np.empty((len(pictures), recipe.size, recipe.size, recipe.channels), np.float32)
    groups = {}
    for i, picture in enumerate(pictures):
        groups.setdefault((picture.shape, picture.dtype), []).append(i)
    for (shape, _), where in groups.items():
        stack = np.stack([pictures[i] for i in where])
        if recipe.crop_fraction is None and shape[:2] == (recipe.size, recipe.size):
            out[where] = np.clip(stack, 0, 255)  # what the view does at the model's own size
        else:
            function = _view_function(recipe.size, recipe.crop_fraction, recipe.interpolation)
            out[where] = function(stack).numpy()
    return out


def prepare(images, recipe: Recipe, threads=None):
    """All of ``images`` as one batch for ``recipe``: ``(pixels, items, failures)``. For a few
    pictures; :func:`batches` streams many."""
    items, failures = find(images)
    found = list(batches(items, [recipe], batch_size=max(len(items), 1), threads=threads))
    pixels = [b.pixels[0] for b in found if b.items]
    empty = np.zeros((0, recipe.size, recipe.size, recipe.channels), np.float32)
    return (np.concatenate(pixels) if pixels else empty, [i for b in found for i in b.items],
            failures + [f for b in found for f in b.failures])


# ------------------------------------------------------------------------------ streaming


@dataclasses.dataclass
class Batch:
    """The pictures of one batch that could be read (``items``), their pixels per recipe, and
    the files that could not."""

    items: list
    pixels: list  # one float32 array (len(items), size, size, channels) per recipe
    failures: list


def batches(items, recipes, batch_size=32, threads=None):
    """:class:`Batch` after batch of ``items`` in order, prepared for each of ``recipes``
    (decoded once per distinct recipe); the next batch is prepared in a background thread while
    the caller uses the current one."""
    threads = threads or os.cpu_count() or 1
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    if not chunks:
        return
    distinct = tuple(dict.fromkeys(recipes))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kres-predict") as ahead:
        pending = ahead.submit(_prepare, chunks[0], recipes, distinct, threads)
        for following in chunks[1:] + [None]:
            batch = pending.result()
            if following is not None:
                pending = ahead.submit(_prepare, following, recipes, distinct, threads)
            yield batch


def _prepare(chunk, recipes, distinct, threads):
    """One Batch: the files through one TensorFlow call (read, decode and view, ``threads`` at a
    time), arrays through :func:`view`; a file TensorFlow cannot decode through Pillow."""
    rows = {}  # index in chunk -> a view per distinct recipe
    files = [i for i, item in enumerate(chunk) if item.path is not None]
    if files:
        rows.update(_decode_files([chunk[i].path for i in files], files, distinct, threads))
    failures = []
    for i, item in enumerate(chunk):
        if i not in rows:
            read = [_read(item, r) for r in distinct]
            if isinstance(read[0], Failure):
                failures.append(read[0])
            else:
                rows[i] = [view([pixels], r)[0] for pixels, r in zip(read, distinct)]
    good = sorted(rows)
    pixels = [r.normalise(np.stack([rows[i][distinct.index(r)] for i in good])) if good
              else None for r in recipes]
    return Batch([chunk[i] for i in good], pixels, failures)


def _decode_files(paths, indices, distinct, threads):
    """{index: [view per recipe]} of the files TensorFlow decodes: all in one call, or, when one
    of them fails, file by file (the failures left for Pillow)."""
    import tensorflow as tf

    function = _file_function(distinct, threads)
    try:
        views = [v.numpy() for v in function(tf.constant(paths))]
        return {i: [v[k] for v in views] for k, i in enumerate(indices)}
    except tf.errors.OpError:
        pass
    rows = {}
    for path, i in zip(paths, indices):
        try:
            rows[i] = [v.numpy()[0] for v in function(tf.constant([path]))]
        except tf.errors.OpError:
            continue
    return rows


@functools.lru_cache(maxsize=None)
def _file_function(distinct, threads):
    import tensorflow as tf

    from kres.data import evaluation_view

    def one(path):
        contents = tf.io.read_file(path)
        return tuple(evaluation_view(decode_file(contents, r), r.size, r.crop_fraction,
                                     r.interpolation) for r in distinct)

    signature = tuple(tf.TensorSpec((r.size, r.size, r.channels), tf.float32) for r in distinct)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def views(paths):
        return tf.map_fn(one, paths, fn_output_signature=signature, parallel_iterations=threads)

    return views


def _read(item, recipe):
    try:
        if item.path is None:
            return convert_array(item.array, recipe.channels)
        return decode(item.path, recipe)
    except PredictError as error:
        return Failure(item.name, str(error))
