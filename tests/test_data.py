"""kres.data: the embedded digits, tfds builders (mocked offline), image folders, bad data."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

import kres.data
from kres.data import DataError, DataNotFoundError

# ---------------------------------------------------------------------------------- digits


def test_digits_info():
    info = kres.data.info("digits")
    assert info.name == "digits"
    assert info.num_classes == 10
    assert info.image_shape == (32, 32, 1)
    assert info.class_names == [str(i) for i in range(10)]
    assert dict(info.splits) == {"train": 1259, "validation": 269, "test": 269}
    assert info.flip is False


def test_digits_split_is_fixed_and_stratified():
    # Pinned values: a change here changes every published digits figure.
    _, y = kres.data.arrays("digits", "test")
    assert y[:10].tolist() == [6, 6, 5, 8, 8, 7, 3, 3, 8, 4]
    assert np.bincount(y).tolist() == [27, 27, 27, 27, 27, 27, 27, 27, 26, 27]
    _, y_val = kres.data.arrays("digits", "validation")
    _, y_train = kres.data.arrays("digits", "train")
    assert np.bincount(y_val).tolist() == [27, 27, 27, 27, 27, 27, 27, 27, 26, 27]
    assert len(y_train) + len(y_val) + len(y) == 1797


def test_digits_splits_are_disjoint():
    from sklearn.datasets import load_digits

    raw = load_digits().images.reshape(1797, -1)
    seen = []
    for split in kres.data.SPLITS:
        x, _ = kres.data.arrays("digits", split, image_size=8)
        seen.append({row.tobytes() for row in np.round(x.reshape(len(x), -1) * 16 / 255).astype(np.uint8)})
    # Every split holds distinct images, except for the few exact duplicates the data set has.
    unique = len({row.tobytes() for row in raw.astype(np.uint8)})
    assert len(seen[0] | seen[1] | seen[2]) == unique


def test_arrays_are_raw_pixels_and_deterministic():
    x, y = kres.data.arrays("digits", "test")
    assert x.shape == (269, 32, 32, 1) and x.dtype == np.float32
    assert y.shape == (269,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 255.0
    x2, y2 = kres.data.arrays("digits", "test")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_arrays_match_the_evaluation_pipeline():
    x, y = kres.data.arrays("digits", "validation", image_size=24)
    batches = list(kres.data.load("digits", "validation", batch_size=100, image_size=24))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    assert [b[0].shape[0] for b in batches] == [100, 100, 69]  # evaluation keeps every example


def test_arrays_limit_picks_a_seeded_subset():
    x, _ = kres.data.arrays("digits", "train", limit=50)
    assert x.shape == (50, 32, 32, 1)
    np.testing.assert_array_equal(x, kres.data.arrays("digits", "train", limit=50)[0])
    assert not np.array_equal(x, kres.data.arrays("digits", "train", limit=50, seed=1)[0])


def test_training_pipeline_has_static_shapes_and_drops_the_remainder():
    ds = kres.data.load("digits", "train", batch_size=64, training=True)
    assert ds.element_spec[0].shape == (64, 32, 32, 1)
    assert ds.element_spec[0].dtype == tf.float32
    assert ds.element_spec[1].shape == (64,) and ds.element_spec[1].dtype == tf.int32
    assert sum(1 for _ in ds) == 1259 // 64


def test_training_pipeline_is_seeded_and_varies_per_epoch():
    def first_batch(ds):
        return next(iter(ds))[0].numpy()

    a = kres.data.load("digits", "train", batch_size=32, training=True, seed=3)
    b = kres.data.load("digits", "train", batch_size=32, training=True, seed=3)
    np.testing.assert_array_equal(first_batch(a), first_batch(b))
    assert not np.array_equal(first_batch(a), first_batch(a))  # second epoch: new order, new crops
    c = kres.data.load("digits", "train", batch_size=32, training=True, seed=4)
    assert not np.array_equal(first_batch(b), first_batch(c))


def test_epoch_stream_depends_only_on_seed_and_epoch():
    def epochs(start, count):
        ds = kres.data.load("digits", "train", batch_size=32, training=True, limit=96,
                            start_epoch=start)
        batches = [b[0].numpy() for b in ds.take(3 * count)]
        return [np.concatenate(batches[3 * k : 3 * k + 3]) for k in range(count)]

    first, second = epochs(0, 2)
    assert not np.array_equal(first, second)
    # A stream resumed at epoch 1 continues with exactly the data an uninterrupted one sees.
    np.testing.assert_array_equal(epochs(1, 1)[0], second)
    # Every epoch is a permutation of the same 96 examples (before augmentation).
    plain = kres.data.load("digits", "train", batch_size=32, training=True, limit=96, start_epoch=0,
                           flip=False)
    labels = [np.sort(np.concatenate([b[1].numpy() for b in plain.skip(3 * k).take(3)])) for k in (0, 1)]
    np.testing.assert_array_equal(labels[0], labels[1])


def _translations(image, pad, flips):
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)])
    size = image.shape[0]
    views = [padded[i : i + size, j : j + size] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return views + ([v[:, ::-1] for v in views] if flips else [])


def _is_one_of(image, views):
    return any(np.array_equal(image, v) for v in views)


def test_small_images_are_padded_and_cropped_without_flip_for_digits():
    original = kres.data.arrays("digits", "train", limit=1)[0][0]
    ds = kres.data.load("digits", "train", batch_size=1, training=True, limit=1)
    crops = [next(iter(ds))[0][0].numpy() for _ in range(20)]
    assert all(_is_one_of(c, _translations(original, 4, flips=False)) for c in crops)
    assert len({c.tobytes() for c in crops}) > 1


def test_flip_can_be_turned_on():
    original = kres.data.arrays("digits", "train", limit=1)[0][0]
    ds = kres.data.load("digits", "train", batch_size=1, training=True, limit=1, flip=True)
    crops = [next(iter(ds))[0][0].numpy() for _ in range(30)]
    unflipped = _translations(original, 4, flips=False)
    assert all(_is_one_of(c, _translations(original, 4, flips=True)) for c in crops)
    assert any(not _is_one_of(c, unflipped) for c in crops)


def test_bad_split_and_batch_size():
    with pytest.raises(DataError, match="split must be one of"):
        kres.data.load("digits", "valid", batch_size=8)
    with pytest.raises(DataError, match="batch_size must be a positive integer"):
        kres.data.load("digits", "train", batch_size=0)


def test_unknown_dataset_kind_lists_what_is_accepted():
    with pytest.raises(DataError, match=r"Unknown dataset 'mnist'.*'digits'.*'tfds:NAME'.*'folder:PATH'"):
        kres.data.info("mnist")


# ------------------------------------------------------------------------------------ tfds


def test_tfds_cifar10_loads_through_the_real_builder():
    with tfds.testing.mock_data(num_examples=20):
        info = kres.data.info("tfds:cifar10")
        assert info.num_classes == 10 and info.image_shape == (32, 32, 3)
        ds = kres.data.load("tfds:cifar10", "train", batch_size=8, training=True)
        batches = list(ds)
    assert len(batches) == 2
    images, labels = batches[0]
    assert images.shape == (8, 32, 32, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0


def test_tfds_cifar10_trains_a_step(tmp_path):
    from kres.training import TrainConfig, train

    with tfds.testing.mock_data(num_examples=16):
        result = train(TrainConfig(model="resnet20", data="tfds:cifar10", out=str(tmp_path / "run"),
                                   epochs=1, batch_size=8, image_size=16, verbose=0))
    assert result.recipe.steps_per_epoch == 2
    assert result.model.input_shape == (None, 16, 16, 3)
    assert np.isfinite(result.history[0]["loss"])


def test_tfds_imagenet_sized_images_get_random_resized_crops():
    with tfds.testing.mock_data(num_examples=4):
        info = kres.data.info("tfds:imagenette/160px-v2")
        assert info.num_classes == 10 and info.image_shape == (160, 160, 3)
        train = kres.data.load("tfds:imagenette/160px-v2", "train", batch_size=2, training=True,
                               image_size=96)
        test = kres.data.load("tfds:imagenette/160px-v2", "test", batch_size=4, image_size=96)
        assert next(iter(train))[0].shape == (2, 96, 96, 3)
        assert next(iter(test))[0].shape == (4, 96, 96, 3)


def test_tfds_splits_without_validation_hold_out_part_of_train():
    from kres.data.sources import _tfds_split_names

    assert _tfds_split_names("cifar10", ("train", "test")) == {
        "train": "train[:-10%]", "validation": "train[-10%:]", "test": "test"}
    assert _tfds_split_names("imagenet2012", ("train", "validation", "test")) == {
        "train": "train[:-1%]", "validation": "train[-1%:]", "test": "validation"}


def test_unknown_tfds_name_lists_close_matches():
    with pytest.raises(DataError, match=r"Unknown tensorflow-datasets name 'cifar11'.*cifar10"):
        kres.data.info("tfds:cifar11")


# ---------------------------------------------------------------------------------- folder

COLOURS = {"cat": (200, 30, 30), "dog": (30, 30, 200)}


def write_folder(root, splits=("train", "val", "test"), per_class=3, size=(20, 24)):
    """A tiny split/class/image folder: every class is one solid colour."""
    for split in splits:
        for cls, colour in COLOURS.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (size[1], size[0]), colour).save(d / f"{i}.png")
    return root


def test_folder_info(tmp_path):
    info = kres.data.info(f"folder:{write_folder(tmp_path)}")
    assert info.class_names == ["cat", "dog"]
    assert info.num_classes == 2
    assert info.image_shape == (20, 24, 3)
    assert dict(info.splits) == {"train": 6, "validation": 6, "test": 6}


def test_folder_images_keep_their_labels(tmp_path):
    x, y = kres.data.arrays(f"folder:{write_folder(tmp_path)}", "test", image_size=16)
    assert x.shape == (6, 16, 16, 3)
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    for image, label in zip(x, y):
        colour = COLOURS[["cat", "dog"][label]]
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), colour, atol=1e-3)


def test_folder_trains_a_step(tmp_path):
    from kres.training import TrainConfig, train

    root = write_folder(tmp_path / "data", per_class=8)
    result = train(TrainConfig(model="resnet20", data=f"folder:{root}", out=str(tmp_path / "run"),
                               epochs=1, batch_size=4, image_size=16, verbose=0))
    assert result.metrics["epochs_completed"] == 1
    assert np.isfinite(result.history[0]["loss"])


def test_missing_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        kres.data.info(f"folder:{tmp_path / 'nowhere'}")
    assert issubclass(DataNotFoundError, FileNotFoundError)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="has no train/ directory"):
        kres.data.info(f"folder:{tmp_path}")


def test_folder_without_validation_or_test(tmp_path):
    with pytest.raises(DataError, match="neither validation/"):
        kres.data.info(f"folder:{write_folder(tmp_path, splits=('train',))}")


def test_class_without_images(tmp_path):
    root = write_folder(tmp_path)
    (root / "train" / "bird").mkdir()
    with pytest.raises(DataError, match=r"Class 'bird' has no images"):
        kres.data.info(f"folder:{root}")


def test_unreadable_image(tmp_path):
    root = write_folder(tmp_path)
    bad = root / "val" / "dog" / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"Cannot read image .*broken\.png"):
        kres.data.info(f"folder:{root}")
