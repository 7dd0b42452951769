"""tf.data pipelines: raw pixels in, batches out.

Every pipeline yields float32 NHWC images holding RAW pixel values in [0, 255] and int32 labels;
the models normalise inside (`kres.build(..., include_preprocessing=True)`).

Augmentation follows the image size. Small (CIFAR-sized, <= 64 px) images are padded by 1/8 of
their side and randomly cropped back; larger (ImageNet-sized) images get a random resized crop.
Both add a horizontal flip when the dataset allows it. Evaluation resizes small images and
resizes-then-centre-crops large ones. Random draws use stateless ops seeded per element, so a
pipeline is deterministic for a given seed however many threads map it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kres.data.sources import DataError, DatasetInfo, check_split, open_source

SMALL_IMAGE_MAX = 64  # up to this side, CIFAR-style augmentation; above it, ImageNet-style
CROP_FRACTION = 0.875  # evaluation centre crop for ImageNet-sized images (224 of 256)
CACHE_MAX_BYTES = 2 << 30  # decoded images up to this size are cached in memory


def info(name: str, data_dir: str | None = None) -> DatasetInfo:
    """Describe a dataset without reading its images.

    >>> kres.data.info("digits").image_shape
    (32, 32, 1)
    """
    return open_source(name, data_dir).info


def arrays(
    name: str,
    split: str = "test",
    *,
    image_size: int | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A whole split (or `limit` examples of it, chosen with `seed`) as numpy arrays.

    Images are float32 NHWC raw pixels in [0, 255], exactly as `load(..., training=False)` yields
    them; labels are int64. No augmentation; the same call always returns the same arrays.

    >>> x, y = kres.data.arrays("digits", "test")
    >>> x.shape, y.shape
    ((269, 32, 32, 1), (269,))
    """
    ds = load(name, split, batch_size=256, image_size=image_size, data_dir=data_dir, seed=seed,
              limit=limit)
    images, labels = [], []
    for x, y in ds.as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def load(
    name: str,
    split: str,
    *,
    batch_size: int,
    image_size: int | None = None,
    training: bool = False,
    data_dir: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    flip: bool | None = None,
    shard: tuple[int, int] | None = None,
    drop_remainder: bool | None = None,
    start_epoch: int | None = None,
    randaugment: int = 0,
    randaugment_factor: float = 0.5,
    crop_fraction: float | None = None,
    interpolation: str = "bilinear",
) -> tf.data.Dataset:
    """A batched `tf.data.Dataset` of `(images, labels)` for one split.

    Args:
        name: `digits`, `tfds:NAME` or `folder:PATH`.
        split: `train`, `validation` or `test`.
        batch_size: examples per batch (the global batch under a distribution strategy).
        image_size: square side of the images; default: the dataset's native side.
        training: shuffle and augment, and drop the last partial batch so every batch has the
            same static shape (what a TPU needs).
        seed: seeds the shuffle and the augmentation (and which `limit` examples are used).
        limit: use only this many examples of the split.
        flip: horizontal-flip augmentation; default: the dataset's `info.flip` (off for digits).
        shard: `(num_shards, index)`: read only this shard (one per host in multi-host training).
        drop_remainder: override the default (True when training).
        start_epoch: with `training`, return an endless stream of epochs `start_epoch`,
            `start_epoch + 1`, ... instead of one pass. Each epoch's order and augmentation
            depend only on `(seed, epoch)`, not on how often the dataset was iterated, so a
            resumed run (or a distribution engine that peeks at the data first) sees exactly
            the batches an uninterrupted single-device run sees. Every epoch is
            `examples // batch_size` batches; pass that as `steps_per_epoch` to `fit`.
        randaugment: with `training`, this many `keras.layers.RandAugment` operations per
            image (0: none), of strength `randaugment_factor` (Keras' normalised factor),
            after the crop and flip. Its draws come from Keras' seed generator, so they are
            seeded but not replayed exactly after a resume.
        crop_fraction: evaluation only: resize the shorter side to `image_size / crop_fraction`
            and keep the central square (timm's ``crop_pct``). Default: 0.875 above 64 px, no
            crop (a plain resize) up to 64 px.
        interpolation: evaluation resize method (`tf.image.resize`'s: bilinear, bicubic, ...),
            antialiased when shrinking as PIL's resize is.

    >>> ds = kres.data.load("digits", "train", batch_size=64, training=True)
    >>> ds.element_spec[0].shape
    TensorShape([64, 32, 32, 1])
    """
    _check_arguments(split, batch_size, image_size)
    source = open_source(name, data_dir)
    size = image_size or source.info.image_shape[0]
    flip = source.info.flip if flip is None else flip
    augment = _augmenter(size, flip, randaugment, randaugment_factor, seed)
    if training and start_epoch is not None and hasattr(source, "table"):
        columns, decode = source.table(split, limit=limit, seed=seed)
        if shard is not None:
            columns = tuple(c[shard[1] :: shard[0]] for c in columns)
        return _table_epochs(columns, decode, batch_size, seed, start_epoch, augment)
    ds, buffer = _examples(source, split, limit, seed, shard)
    if training and start_epoch is not None:
        return _streamed_epochs(ds, buffer, batch_size, seed, augment)
    if training:
        ds = _training_pass(ds, buffer, seed, augment)
    else:
        ds = _evaluation_pass(ds, size, crop_fraction, interpolation)
    drop = training if drop_remainder is None else drop_remainder
    return ds.batch(batch_size, drop_remainder=drop).prefetch(tf.data.AUTOTUNE)


def _check_arguments(split, batch_size, image_size):
    check_split(split)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 8):
        raise DataError(f"image_size must be an integer of at least 8 pixels, got {image_size!r}")


def _table_epochs(columns, decode, batch_size, seed, start_epoch, augment):
    """Endless epochs of a split held as a table of rows, each a stateless function of
    (seed, epoch): a permutation of the rows, then per-example augmentation seeded by
    (epoch seed, position)."""
    columns = tuple(tf.constant(c) for c in columns)
    n = int(columns[0].shape[0])

    def epoch(e):
        epoch_seed = tf.cast(seed, tf.int64) * 1_000_003 + e
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([epoch_seed, tf.constant(0, tf.int64)]))

        def example(i, row):
            image, label = decode(*(tf.gather(c, row) for c in columns))
            return augment(image, label, seed=tf.stack([epoch_seed, i]))

        ds = tf.data.Dataset.from_tensor_slices(order).enumerate()
        ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size, drop_remainder=True)

    return tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch).prefetch(tf.data.AUTOTUNE)


def _examples(source, split, limit, seed, shard):
    """The split's (image, label) examples, only this shard's, cached in memory when they fit;
    and the size of the buffer that shuffles them."""
    ds = source.examples(split, limit=limit, seed=seed)
    if shard is not None:
        ds = ds.shard(*shard)
    num = limit or source.info.splits.get(split)
    if num is not None and num * _bytes_per_image(source.info) <= CACHE_MAX_BYTES:
        ds = ds.cache()
    return ds, min(num or 10_000, 10_000)


def _streamed_epochs(ds, buffer, batch_size, seed, augment):
    """Endless epochs of a streamed (tfds) split, which has no random access: the order is
    seeded but, after a resume, restarts rather than continuing exactly."""
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate().map(
        lambda i, ex: augment(*ex, seed=tf.stack([i, tf.cast(seed, tf.int64)])),
        num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _training_pass(ds, buffer, seed, augment):
    """One training pass: shuffled, each example augmented with its own stateless seed."""
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    # One fresh random integer per example and epoch: the per-element stateless seed.
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, randoms))
    return ds.map(
        lambda example, r: augment(*example, seed=tf.stack([r, tf.cast(seed, tf.int64)])),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _evaluation_pass(ds, size, crop_fraction, interpolation):
    """Each image resized (and centre-cropped) for evaluation."""
    if crop_fraction is not None and not 0 < crop_fraction <= 1:
        raise DataError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
    return ds.map(lambda x, y: (evaluation_view(x, size, crop_fraction, interpolation), y),
                  num_parallel_calls=tf.data.AUTOTUNE)


def _augmenter(size, flip, randaugment, factor, seed):
    """The per-example training augmentation: crop and flip, then RandAugment if asked."""
    if not randaugment:
        return lambda image, label, seed: _augment(image, label, seed=seed, size=size, flip=flip)
    import keras

    rand = keras.layers.RandAugment(value_range=(0, 255), num_ops=randaugment, factor=factor,
                                    seed=seed)

    def augment(image, label, seed):
        image, label = _augment(image, label, seed=seed, size=size, flip=flip)
        image = tf.clip_by_value(tf.cast(rand(image), tf.float32), 0.0, 255.0)
        return tf.ensure_shape(image, (size, size, image.shape[-1])), label

    return augment


def mix(ds: tf.data.Dataset, *, mixup: float, cutmix: float, seed: int = 0) -> tf.data.Dataset:
    """Mixup (``keras.layers.MixUp``, alpha ``mixup``) or CutMix (``keras.layers.CutMix``, alpha
    ``cutmix``) on each batch of ``(images, one-hot labels)``: with both, alternate batches get
    one or the other, as timm's Mixup does with equal odds (0 turns one off).

    >>> ds = kres.data.mix(ds, mixup=0.1, cutmix=1.0)
    """
    import keras

    layers = []
    if mixup:
        layers.append(keras.layers.MixUp(alpha=mixup, seed=seed))
    if cutmix:
        layers.append(keras.layers.CutMix(factor=cutmix, seed=seed))
    if not layers:
        return ds

    def apply(layer, x, y):
        out = layer({"images": x, "labels": y})
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

    def mixed(i, batch):
        x, y = batch
        if len(layers) == 1:
            return apply(layers[0], x, y)
        return tf.cond(i % 2 == 0, lambda: apply(layers[0], x, y),
                       lambda: apply(layers[1], x, y))

    return ds.enumerate().map(mixed, num_parallel_calls=tf.data.AUTOTUNE)


def _bytes_per_image(meta: DatasetInfo) -> int:
    h, w, c = meta.image_shape
    return h * w * c


def _resize(image: tf.Tensor, height, width) -> tf.Tensor:
    return tf.image.resize(image, tf.stack([height, width]), method="bilinear")


def evaluation_view(image: tf.Tensor, size: int, crop_fraction: float | None = None,
                    interpolation: str = "bilinear") -> tf.Tensor:
    """The pixels a model is evaluated on: one image (H, W, C) or a batch of same-sized images
    (N, H, W, C), raw 0-255 values, made ``size`` x ``size`` float32 as `load` does when not
    training. Up to 64 px without ``crop_fraction``: a plain bilinear resize (CIFAR-sized data);
    otherwise the shorter side resized to ``size / crop_fraction`` (default 0.875 above 64 px)
    with ``interpolation``, antialiased, and the central square kept."""
    image = tf.cast(image, tf.float32)
    if crop_fraction is None and size > SMALL_IMAGE_MAX:
        crop_fraction = CROP_FRACTION
    if crop_fraction is None:
        if image.shape[-3] != size or image.shape[-2] != size:
            image = _resize(image, size, size)
    else:
        # Resize the shorter side to size / crop_fraction, then take the central square.
        shape = tf.cast(tf.shape(image)[-3:-1], tf.float32)
        scale = (size / crop_fraction) / tf.reduce_min(shape)
        hw = tf.cast(tf.round(shape * scale), tf.int32)
        image = tf.image.resize(image, hw, method=interpolation, antialias=True)
        top, left = (hw[0] - size) // 2, (hw[1] - size) // 2
        image = image[..., top : top + size, left : left + size, :]
    image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.ensure_shape(image, (*image.shape[:-3], size, size, image.shape[-1]))


def _augment(image, label, *, seed, size: int, flip: bool):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.cast(image, tf.float32)
    channels = image.shape[-1]
    if size <= SMALL_IMAGE_MAX:
        if image.shape[0] != size or image.shape[1] != size:
            image = _resize(image, size, size)
        pad = max(size // 8, 1)
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, (size, size, channels), seed=crop_seed)
    else:
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=crop_seed,
            min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.slice(image, begin, extent)
        image = _resize(image, size, size)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.ensure_shape(image, (size, size, channels)), label
