"""kres.predict and tools/predict.py: a model on pictures from files, prepared as recorded for
it, with its class names; several files of one model compared; every bad input named in one line.

The digits tests read the main job (test_export's session fixtures: resnet20 trained on digits
and exported) on its test split written to PNG files. The photograph tests use scikit-image's
real pictures (RGB, grayscale, a JPEG) plus RGBA, GIF and BMP files written from them, through
one small untrained model saved as .keras, .tflite and .onnx.
"""

import csv
import io
import json
import re
import os
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kres
import kres.data
import kres.export
import kres.predict
from helpers.digit_folders import write_digit_folder
from kres.data.imagenet import imagenet1k_classes
from kres.pixels import MODES
from conftest import subprocess_env as env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ("astronaut.png", "camera.png", "coffee.png", "rocket.jpg")
SIZE = 72  # above 64 px: kres' evaluation view resizes the shorter side and crops the centre


def cli(*args):
    """tools/predict.py in a process of its own, as a user runs it."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"),
                           *map(str, args)], capture_output=True, text=True, env=env(), cwd=ROOT,
                          timeout=600)


def main(capsys, *args):
    """The same command in this process (no second TensorFlow start-up): what
    ``subprocess.run`` would give."""
    from kres.cli.predict import main as command

    code = command([str(a) for a in args], prog="tools/predict.py")
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory):
    """The digits test split as PNG files, test/digit_<class>/<i>.png, and the float images and
    labels they were written from."""
    root = write_digit_folder(tmp_path_factory.mktemp("digits"), classes=range(10))
    return root / "test", kres.data.arrays("digits", "test")


def digit_image(path, arrays):
    """The float test image a PNG file was written from (digit_folders' naming)."""
    x, y = arrays
    label = int(os.path.basename(os.path.dirname(path)).split("_")[1])
    return x[y == label][int(os.path.splitext(os.path.basename(path))[0])], label


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photographs in several sizes, formats and colour modes: name -> path."""
    folder = tmp_path_factory.mktemp("photos")
    data = resources.files("skimage") / "data"
    paths = {name: str(data / name) for name in PHOTOS}
    chelsea = Image.open(data / "chelsea.png").convert("RGB")  # 451x300
    chelsea.save(folder / "chelsea.png")
    alpha = Image.linear_gradient("L").resize(chelsea.size)
    Image.merge("RGBA", (*chelsea.split(), alpha)).save(folder / "chelsea_rgba.png")
    first = Image.open(data / "coffee.png").convert("RGB").quantize(64)  # a palette image
    second = Image.open(data / "astronaut.png").convert("RGB").resize(first.size).quantize(64)
    first.save(folder / "coffee.gif", save_all=True, append_images=[second], duration=100)
    first.save(folder / "coffee_frame0.png")
    Image.open(data / "astronaut.png").resize((300, 200)).save(folder / "astronaut.bmp")
    paths.update({p.name: str(p) for p in folder.iterdir()})
    return paths


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """An untrained resnet20 at 72x72 RGB (raw pixels in, normalisation inside, random
    BatchNorm statistics so that pictures differ) as .keras, fp32 .tflite and fp32 .onnx files,
    with nothing beside them (no run config, no manifest)."""
    import randomise

    folder = tmp_path_factory.mktemp("small")
    model = kres.build("resnet20", input_shape=(SIZE, SIZE, 3), include_preprocessing=True)
    randomise.keras_norms(model, np.random.default_rng(0))
    model.save(folder / "small.keras")
    kres.export.to_tflite(model, str(folder / "small.tflite"))
    kres.export.to_onnx(model, str(folder / "small.onnx"))
    return {kind: str(folder / f"small.{kind}") for kind in ("keras", "tflite", "onnx")}


# ---------------------------------------------------------------------------------- digits


def test_cli_int8_tflite_on_digit_pngs_gives_the_manifest_accuracy(main_job, manifest,
                                                                   digit_pngs, tmp_path):
    folder, arrays = digit_pngs
    int8 = manifest.artifact("tflite", "int8")
    out = tmp_path / "predictions.json"
    done = cli(int8, folder, "--json", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("tools/predict.py: 269 images in ")
    result = json.loads(out.read_text())
    assert result["recipe"] == (
        "resize to 32x32 bilinear, grayscale, raw 0-255 pixels; the model normalises inside "
        f"(from {manifest.path}: kres' evaluation view of the model's 32 px input)")
    assert result["classes"].endswith("labels.txt") and result["failed"] == []
    predictions = result["predictions"]
    assert len(predictions) == 269
    # PNG holds integer pixels: the files are the test images rounded. Each file's answer is the
    # int8 file's answer on its rounded image, and the accuracy is the manifest's up to the
    # images whose answer rounding changes (none of the 269 for the main job's model).
    runner = kres.export.load(int8)
    images, labels = zip(*(digit_image(p["path"], arrays) for p in predictions))
    images = np.stack(images)
    on_rounded = runner.predict(np.round(images)).argmax(-1)
    changed = int((runner.predict(images).argmax(-1) != on_rounded).sum())
    assert [p["top_k"][0]["index"] for p in predictions] == on_rounded.tolist()
    correct = sum(p["top_k"][0]["index"] == label for p, label in zip(predictions, labels))
    entry = next(a for a in manifest.artifacts if a["path"] == os.path.basename(int8))
    assert abs(correct - round(entry["accuracy"] * 269)) <= changed
    assert [p["top_k"][0]["name"] for p in predictions] == [str(i) for i in on_rounded]


def test_cli_compare_reports_agreement_with_best_keras(main_job, digits_run, manifest,
                                                       digit_pngs, capsys):
    folder, _ = digit_pngs
    int8 = manifest.artifact("tflite", "int8")
    onnx = manifest.artifact("onnx", "int8")
    done = main(capsys, digits_run / "best.keras", folder, "--compare", int8, onnx)
    assert done.returncode == 0, done.stderr
    entries = {a["path"]: a for a in manifest.artifacts}
    agreed = []
    for path in (int8, onnx):
        agreement = entries[os.path.basename(path)]["top1_agreement"]
        row = next(line for line in done.stdout.splitlines() if line.startswith(path))
        # The PNG files hold the test images rounded to integers; rounding may change the answer
        # of Keras or the int8 file on an image near a decision boundary (0 or 1 of 269 seen,
        # e.g. a digit 5 that Keras gave 47.2 % and the int8 file gave an 8 46.6 %).
        agreed.append(int(re.search(r"\((\d+) of 269\)", row).group(1)))
        assert abs(agreed[-1] - round(agreement * 269)) <= 2, done.stdout
    everywhere = "every source gives the first one's top-1 on every image" in done.stdout
    assert everywhere == (agreed == [269, 269]), done.stdout


def test_run_directory_brings_its_recipe_and_dataset_names(digits_run, digit_pngs):
    folder, arrays = digit_pngs
    files = sorted(str(p) for p in (folder / "digit_7").glob("*.png"))[:4]
    result = kres.predict(digits_run, files, top_k=3)
    assert result.source == str(digits_run / "best.keras")
    assert result.recipe == (
        "resize to 32x32 bilinear, grayscale, raw 0-255 pixels; the model normalises inside "
        f"(from {digits_run / 'config.json'}: kres' evaluation view of the run's 32 px images)")
    assert result.labels_from == "the run's dataset 'digits'"
    assert [p.path for p in result] == files
    assert all(len(p.names) == 3 and p.names[0] == str(p.indices[0]) for p in result)


def test_export_directory_means_its_fp32_tflite(manifest, digit_pngs):
    folder, _ = digit_pngs
    directory = os.path.dirname(manifest.path)
    result = kres.predict(directory, folder / "digit_1")
    assert result.source == f"{directory} (resnet20_fp32.tflite)"
    assert result.labels_from == os.path.join(directory, "labels.txt")
    reference = kres.predict(manifest.artifact("tflite", "fp32"), folder / "digit_1")
    assert [p.probabilities for p in result] == [p.probabilities for p in reference]


def test_arrays_give_what_their_png_files_give(digits_run, digit_pngs):
    folder, arrays = digit_pngs
    files = sorted(str(p) for p in (folder / "digit_4").glob("*.png"))[:5]
    pixels = np.stack([np.round(digit_image(f, arrays)[0]) for f in files])
    from_files = kres.predict(digits_run, files)
    from_arrays = kres.predict(digits_run, pixels)
    assert [p.path for p in from_arrays] == [f"<array {i}>" for i in range(5)]
    np.testing.assert_allclose([p.probabilities for p in from_arrays],
                               [p.probabilities for p in from_files], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------- photos


def test_photographs_get_the_same_top1_from_keras_tflite_and_onnx(small_model, photos):
    pictures = [photos[n] for n in ("astronaut.png", "camera.png", "coffee.png", "rocket.jpg",
                                    "chelsea_rgba.png", "coffee.gif", "astronaut.bmp")]
    results = {kind: kres.predict(path, pictures) for kind, path in small_model.items()}
    for kind, result in results.items():
        assert [p.path for p in result] == pictures and result.failed == [], kind
        assert result.labels_from.startswith("class indices"), kind
    assert results["keras"].recipe == (
        "resize the shorter side to 82 bilinear (antialiased), centre crop 72x72, RGB, raw "
        "0-255 pixels; the model normalises inside (from the model's 72 px input (no "
        "config.json beside it): kres' evaluation view)")
    assert results["onnx"].recipe.startswith(
        "resize the shorter side to 82 bilinear (antialiased), centre crop 72x72, RGB, raw "
        "0-255 pixels (no normalisation is recorded for this model) (from its input shape "
        "only, no manifest.json beside it")
    tops = {kind: [p.indices[0] for p in result] for kind, result in results.items()}
    assert tops["tflite"] == tops["keras"] and tops["onnx"] == tops["keras"]
    for kind in ("tflite", "onnx"):
        np.testing.assert_allclose([p.probabilities for p in results[kind]],
                                   [p.probabilities for p in results["keras"]], atol=1e-5)


def test_compare_lists_every_disagreement_with_each_answer(small_model, photos, tmp_path):
    from kres.saving import load_keras_model

    pictures = [photos[n] for n in PHOTOS] + [photos["chelsea.png"], photos["astronaut.bmp"]]
    # The same model with two classes swapped in its classifier: the first picture's top-1 and
    # top-2. It disagrees exactly on the pictures whose top-1 is one of the two, the first
    # among them, whatever the random weights are.
    first = kres.predict(small_model["keras"], pictures[:1], top_k=2)[0]
    swap = [int(first.indices[1]), int(first.indices[0])]
    other = load_keras_model(small_model["keras"])
    classifier = other.get_layer("predictions")
    kernel, bias = classifier.get_weights()
    kernel[:, swap[::-1]], bias[swap[::-1]] = kernel[:, swap], bias[swap]
    classifier.set_weights([kernel, bias])
    other.save(tmp_path / "other.keras")
    sources = [small_model["tflite"], small_model["onnx"], str(tmp_path / "other.keras")]
    comparison = kres.predict.compare(sources, pictures, top_k=10)
    tflite, onnx, keras_file = comparison.predictions
    assert comparison.sources == sources and comparison.agreement[:2] == [1.0, 1.0]
    differ = [i for i, (a, b) in enumerate(zip(tflite, keras_file)) if a.indices[0] !=
              b.indices[0]]
    assert differ == [i for i, p in enumerate(tflite) if p.indices[0] in swap] and 0 in differ
    assert comparison.agreement[2] == (len(pictures) - len(differ)) / len(pictures)
    assert comparison.disagreements == [
        (pictures[i], [(p[i].names[0], p[i].probabilities[0]) for p in (tflite, onnx,
                                                                        keras_file)])
        for i in differ]
    def full(prediction):  # top_k=10 keeps all of resnet20's 10 classes
        return np.array([dict(zip(prediction.indices, prediction.probabilities))[c]
                         for c in range(10)])

    for s, other in ((1, onnx), (2, keras_file)):
        assert comparison.max_difference[s] == max(
            float(np.abs(full(a) - full(b)).max()) for a, b in zip(tflite, other))
    assert comparison.max_difference[1] < 1e-5
    table = comparison.table()
    assert f"the {len(differ)} images on which they disagree (top-1 of each source):" in table
    for i in differ:
        row = next(line for line in table.splitlines() if line.startswith(pictures[i]))
        assert row.split() == [pictures[i]] + [
            cell for p in (tflite, onnx, keras_file)
            for cell in (p[i].names[0], f"{p[i].probabilities[0]:.1%}")]


def test_colour_modes_become_the_models_channels(small_model, photos):
    recipe = kres.predict.open_source(small_model["tflite"]).recipe
    names = ["chelsea.png", "chelsea_rgba.png", "camera.png", "coffee.gif", "coffee_frame0.png"]
    pixels, items, failures = kres.predict.prepare([photos[n] for n in names], recipe)
    assert failures == [] and pixels.shape == (5, SIZE, SIZE, 3)
    rgb, rgba, gray, gif, frame0 = pixels
    np.testing.assert_array_equal(rgba, rgb)  # alpha dropped
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])  # grey repeated to RGB
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_array_equal(gif, frame0)  # an animated GIF's first frame
    # A grayscale model sees an RGB photo as kres' folder datasets decode it for one channel.
    gray_recipe = kres.predict.Recipe.default(SIZE, 1, "test")
    luma, _, _ = kres.predict.prepare(photos["chelsea.png"], gray_recipe)
    expected = kres.data.evaluation_view(tf.io.decode_image(
        tf.io.read_file(photos["chelsea.png"]), channels=1), SIZE).numpy()
    np.testing.assert_array_equal(luma[0], expected)


def test_large_jpeg_is_decoded_at_a_reduced_scale_to_nearly_the_same_pixels(photos):
    """rocket.jpg (640x427) for a 72 px model needs 124x83 before the crop: libjpeg decodes it
    at 1/4 scale (160x107). The view differs from the full decode's by a few grey levels."""
    recipe = kres.predict.Recipe.default(SIZE, 3, "test")
    assert recipe.draft_size(640, 427) == (124, 83)
    contents = tf.io.read_file(photos["rocket.jpg"])
    assert kres.predict.images.decode_file(contents, recipe).shape == (107, 160, 3)
    assert kres.predict.images.decode(photos["rocket.jpg"], recipe).shape == (107, 160, 3)
    reduced, _, _ = kres.predict.prepare(photos["rocket.jpg"], recipe)
    full = kres.data.evaluation_view(tf.io.decode_image(contents, channels=3), SIZE).numpy()
    difference = np.abs(reduced[0] - full)
    assert 0 < difference.mean() < 2.0 and np.percentile(difference, 99) < 16


def test_imagenet_checkpoint_names_imagenet_classes(photos, tmp_path):
    torch = pytest.importorskip("torch")  # noqa: F841  (the reference network)
    import torch_resnets as tr

    net = tr.make("resnet18")
    weights = tr.save(net, tmp_path / "resnet18.safetensors")
    pictures = [photos["astronaut.png"], photos["coffee.png"], photos["camera.png"]]
    result = kres.predict("resnet18", pictures, weights=str(weights))
    names = imagenet1k_classes()
    assert len(names) == 1000 and names[0] == "tench, Tinca tinca"
    assert names[281] == "tabby, tabby cat"
    assert result.labels_from.startswith("ImageNet-1k")
    assert result.recipe.startswith(
        "resize the shorter side to 256 bilinear (antialiased), centre crop 224x224, RGB, raw "
        "0-255 pixels; the model normalises inside")
    for p in result:
        assert p.names == tuple(names[i] for i in p.indices) and len(p.names) == 5
    # The probabilities are the softmax of the PyTorch network's logits on the same pixels.
    recipe = kres.predict.open_source("resnet18", weights=str(weights)).recipe
    pixels, _, _ = kres.predict.prepare(pictures, recipe)
    stats = MODES["imagenet"]
    logits = tr.logits(net, (pixels - np.float32(stats.mean)) / np.float32(stats.std))
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    for p, expected in zip(result, softmax):
        assert list(p.indices) == np.argsort(-expected)[:5].tolist()
        np.testing.assert_allclose(p.probabilities, expected[list(p.indices)], atol=1e-4)


def test_pretrained_tag_brings_its_evaluation_size_crop_and_interpolation(photos, tmp_path,
                                                                         monkeypatch):
    pytest.importorskip("torch")
    import huggingface_hub.constants as constants
    import torch_resnets as tr
    from test_weights import put_in_cache

    weights = tr.save(tr.make("resnet18"), tmp_path / "resnet18.safetensors")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    put_in_cache(tmp_path / "hub", "timm/resnet18.a1_in1k", weights)
    result = kres.predict("resnet18", photos["rocket.jpg"], weights="a1_in1k", top_k=2)
    assert result.source == "resnet18.a1_in1k"
    assert result.recipe == (
        "resize the shorter side to 288 bicubic (antialiased), centre crop 288x288, RGB, raw "
        "0-255 pixels; the model normalises inside (from pretrained weights resnet18.a1_in1k: "
        "their evaluation size, crop fraction and interpolation)")
    assert result[0].names == tuple(imagenet1k_classes()[i] for i in result[0].indices)


def test_a_softmax_head_is_not_softmaxed_twice(photos):
    model = kres.build("resnet20", input_shape=(32, 32, 3), include_preprocessing=True,
                       classifier_activation="softmax")
    result = kres.predict(model, photos["coffee.png"], top_k=10)
    recipe = kres.predict.open_source(model).recipe
    pixels, _, _ = kres.predict.prepare(photos["coffee.png"], recipe)
    expected = np.asarray(model(pixels))[0]
    assert result.scores == "the model's own probabilities (its outputs sum to 1)"
    np.testing.assert_allclose(result[0].probabilities, np.sort(expected)[::-1], atol=1e-6)


def test_table_json_csv_and_plot(small_model, photos):
    pictures = [photos["coffee.png"], photos["camera.png"]]
    result = kres.predict(small_model["tflite"], pictures, top_k=3)
    table = result.table()
    assert table.splitlines()[0] == f"source: {small_model['tflite']}"
    assert table.splitlines()[4].split() == ["image", "top-1", "top-2", "top-3"]
    data = json.loads(result.to_json())
    assert [p["path"] for p in data["predictions"]] == pictures
    assert [len(p["top_k"]) for p in data["predictions"]] == [3, 3]
    rows = list(csv.reader(io.StringIO(result.to_csv())))
    assert rows[0] == ["path", "index_1", "name_1", "probability_1", "index_2", "name_2",
                       "probability_2", "index_3", "name_3", "probability_3", "error"]
    assert [r[0] for r in rows[1:]] == pictures
    figure = result.plot()
    assert len(figure.axes) == 4  # each picture beside its bars
    assert [t.get_text() for t in figure.axes[1].get_yticklabels()] == list(
        result[0].names[::-1])


# ---------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("bad")
    data = open(photos["rocket.jpg"], "rb").read()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 3])
    (folder / "notes.png").write_text("not a picture\n")
    (folder / "empty").mkdir()
    return folder


def test_bad_files_are_named_and_skipped_and_the_good_ones_kept(small_model, photos,
                                                                bad_files):
    inputs = [photos["coffee.png"], bad_files / "truncated.jpg", bad_files / "notes.png",
              bad_files / "empty", bad_files / "missing.jpg", photos["camera.png"]]
    result = kres.predict(small_model["tflite"], inputs)
    assert [p.path for p in result] == [photos["coffee.png"], photos["camera.png"]]
    lines = [f.line() for f in result.failed]
    assert lines[:2] == [
        f"{bad_files / 'empty'}: the folder holds no images (searched recursively for .png, "
        ".jpg, .jpeg, .bmp, .gif)",
        f"{bad_files / 'missing.jpg'}: no such file or folder (expected image files, folders "
        "or glob patterns)"]
    # Pillow's own words say how much was missing ("image file is truncated (13 bytes not
    # processed)" with Pillow 13).
    assert lines[2].startswith(f"{bad_files / 'truncated.jpg'}: a corrupt or truncated JPEG "
                               "image (image file is truncated")
    assert lines[2].endswith("); expected a JPEG, PNG, BMP or GIF file")
    assert lines[3:] == [
        f"{bad_files / 'notes.png'}: not an image (expected a JPEG, PNG, BMP or GIF file)"]
    alone = kres.predict(small_model["tflite"], [photos["coffee.png"], photos["camera.png"]])
    assert [p.probabilities for p in result] == [p.probabilities for p in alone]


def test_cli_lists_each_bad_file_in_one_line_and_exits_1(small_model, photos, bad_files):
    done = cli(small_model["onnx"], photos["coffee.png"], bad_files / "notes.png",
               bad_files / "empty")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"tools/predict.py: error: {bad_files / 'empty'}: the folder holds no images (searched "
        "recursively for .png, .jpg, .jpeg, .bmp, .gif)",
        f"tools/predict.py: error: {bad_files / 'notes.png'}: not an image (expected a JPEG, "
        "PNG, BMP or GIF file)"]
    assert any(line.startswith(photos["coffee.png"]) for line in done.stdout.splitlines())
    assert done.stdout.splitlines()[-1].startswith("tools/predict.py: 1 image in ")
    assert done.stdout.splitlines()[-1].endswith("; 2 failed")


def test_when_nothing_can_be_read_each_input_is_named(small_model, bad_files):
    with pytest.raises(kres.predict.ImageError) as caught:
        kres.predict(small_model["tflite"], [bad_files / "empty", bad_files / "notes.png"])
    assert str(caught.value).splitlines() == [
        "none of the 2 inputs could be read:",
        f"  {bad_files / 'empty'}: the folder holds no images (searched recursively for .png, "
        ".jpg, .jpeg, .bmp, .gif)",
        f"  {bad_files / 'notes.png'}: not an image (expected a JPEG, PNG, BMP or GIF file)"]
    with pytest.raises(kres.predict.ImageError, match=r"^\S*nothing\*\.png: the pattern "
                                                       "matches no image files$"):
        kres.predict(small_model["tflite"], str(bad_files / "nothing*.png"))


EXPECTED = ("expected a model name (kres.list_models()), a .keras file, a training run "
            "directory, an export directory (with manifest.json), a .tflite or .onnx file or a "
            "SavedModel directory")


def test_a_source_that_is_not_a_model_is_one_clear_error(photos, bad_files):
    cases = {
        photos["coffee.png"]: f"'{photos['coffee.png']}' is not a model: a .png file; {EXPECTED}",
        str(bad_files / "empty"): f"'{bad_files / 'empty'}' is not a model: a folder with no "
                                  f"manifest.json, best.keras or saved_model.pb; {EXPECTED}",
        str(bad_files / "gone.tflite"): f"no such file or folder: "
                                        f"'{bad_files / 'gone.tflite'}'; {EXPECTED}",
        "resnet5": "'resnet5' is not a model: no such file or folder, and no model of that name "
                   f"(close: resnet56, resnet50, resnet50d, resnet152, seresnet50); {EXPECTED}",
    }
    for source, message in cases.items():
        with pytest.raises(kres.predict.SourceError) as caught:
            kres.predict(source, photos["coffee.png"])
        assert str(caught.value) == message
    os.link(bad_files / "notes.png", bad_files / "notes.tflite")
    with pytest.raises(kres.KresError, match=r"notes\.tflite' does not load as tflite"):
        kres.predict(bad_files / "notes.tflite", photos["coffee.png"])


def test_compare_refuses_another_input_size_or_class_count(small_model, photos, tmp_path,
                                                           capsys):
    other_size = kres.build("resnet20", input_shape=(32, 32, 3), include_preprocessing=True)
    other_size.save(tmp_path / "size.keras")
    other_classes = kres.build("resnet20", input_shape=(SIZE, SIZE, 3), num_classes=7,
                               include_preprocessing=True)
    other_classes.save(tmp_path / "classes.keras")
    with pytest.raises(kres.predict.CompareError) as caught:
        kres.predict.compare([small_model["tflite"], str(tmp_path / "size.keras")],
                             photos["coffee.png"])
    assert str(caught.value) == (
        f"cannot compare '{tmp_path / 'size.keras'}' with '{small_model['tflite']}': it takes "
        "32x32x3 images, the first 72x72x3; compare files of the same model")
    done = main(capsys, small_model["tflite"], photos["coffee.png"], "--compare",
                tmp_path / "classes.keras")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"tools/predict.py: error: cannot compare '{tmp_path / 'classes.keras'}' with "
        f"'{small_model['tflite']}': it takes 72x72x3 images and gives 7 classes, the first "
        "takes 72x72x3 and gives 10; compare files of the same model"]


def test_cli_usage_errors_exit_2_in_one_line(capsys):
    done = main(capsys, "resnet20", "x.png", "--json", "a.json", "--csv", "b.csv")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "tools/predict.py: error: argument --csv: not allowed with argument --json (see --help)"]
    done = main(capsys, "resnet20", "x.png", "--top-k", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "tools/predict.py: error: argument --top-k: expected a positive integer, got '0' (see "
        "--help)"]
