"""Pretrained weights, offline: timm/torchvision checkpoints against PyTorch reference
networks, the Hugging Face Hub path through huggingface_hub's own cache, Keras Applications files
through keras.utils.get_file's cache, integrity checks, transfer learning and the tag table."""

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import kres
import kres.weights
import randomise  # tests/ helper
from kres.errors import KresError
from kres.weights import file_hash, torch_names

torch = pytest.importorskip("torch")
import torch_resnets as tr  # noqa: E402  (tests/ helper; needs torch)

SIZE = 64
RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(2, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """name -> (torch reference net, path of its safetensors checkpoint), made once."""
    made = {}
    folder = tmp_path_factory.mktemp("checkpoints")

    def get(name):
        if name not in made:
            net = tr.make(name)
            made[name] = (net, tr.save(net, folder / f"{name}.safetensors"))
        return made[name]

    return get


def predict(model, x):
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def assert_close(name, ours, reference, atol):
    diff = float(np.abs(ours - reference).max())
    assert diff <= atol, (f"{name}: max |kres - reference| {diff:.2e} > {atol} (logits up to "
                          f"{np.abs(reference).max():.1f})")


# ---------------------------------------------------------------------------------------------
# timm / torchvision names, random weights, same logits to 1e-4


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnext50_32x4d",
                                  "wide_resnet50_2", "seresnet50", "resnet50d", "resnetv2_50"])
def test_timm_checkpoint_gives_the_reference_logits(name, checkpoint):
    net, path = checkpoint(name)
    model = kres.build(name, input_shape=(SIZE, SIZE, 3), weights=str(path))
    assert_close(name, predict(model, IMAGES), tr.logits(net, IMAGES), atol=1e-4)
    # every parameter of the checkpoint was used, and every weight of the model set
    assert model.kres_weights["assigned"] == len(model.weights)


def test_resnet_d_average_pool_matches_on_odd_sizes(checkpoint):
    """ResNet-D's shortcut pool is ceil_mode=True, count_include_pad=False in timm."""
    net, path = checkpoint("resnet18d")
    x = RNG.normal(size=(1, 75, 75, 3)).astype("float32")
    model = kres.build("resnet18d", input_shape=(75, 75, 3), weights=str(path))
    assert_close("resnet18d@75", predict(model, x), tr.logits(net, x), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The Hub path, end to end, with huggingface_hub's real cache and offline mode


def put_in_cache(cache, repo, source):
    """Lays out ``source`` as huggingface_hub stores a download of ``repo``'s model.safetensors:
    blobs/<sha256> (the Hub's LFS id), refs/main -> commit, snapshots/<commit>/model.safetensors
    -> the blob."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    blob = folder / "blobs" / file_hash(source)
    blob.parent.mkdir(parents=True)
    shutil.copyfile(source, blob)
    commit = hashlib.sha1(repo.encode()).hexdigest()
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    link = folder / "snapshots" / commit / "model.safetensors"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    return blob


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache in HF_HOME=tmp_path, offline; returns put(repo, file)."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both variables when first imported: point its constants at them too
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return lambda repo, source: put_in_cache(cache, repo, source)


def test_hub_path_in_a_fresh_process_with_only_environment_variables(tmp_path, checkpoint):
    """As a user would run it: HF_HOME and HF_HUB_OFFLINE=1 set before Python starts."""
    net, path = checkpoint("resnet18")
    put_in_cache(tmp_path / "hub", "timm/resnet18.tv_in1k", path)
    np.save(tmp_path / "x.npy", IMAGES)
    code = ("import sys, numpy as np, kres; "
            "m = kres.build('resnet18', input_shape=(64, 64, 3), weights='tv_in1k'); "
            "np.save(sys.argv[2], np.asarray(m.predict(np.load(sys.argv[1]), verbose=0)))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1", PYTHONPATH=root,
               TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_close("resnet18 (hub, fresh process)", np.load(tmp_path / "y.npy"),
                 tr.logits(net, IMAGES), atol=1e-4)


def test_hub_imagenet_picks_the_default_tag_and_says_which(hub, checkpoint, capsys):
    net, path = checkpoint("resnet18")
    hub("timm/resnet18.a1_in1k", path)
    model = kres.build("resnet18", input_shape=(SIZE, SIZE, 3), weights="imagenet")
    assert model.kres_weights["name"] == "resnet18.a1_in1k"
    assert "'resnet18.a1_in1k'" in capsys.readouterr().err
    assert_close("resnet18 (hub)", predict(model, IMAGES), tr.logits(net, IMAGES), atol=1e-4)


def test_hub_tag_with_its_own_preprocessing_takes_raw_pixels(hub, checkpoint):
    """timm's resnetv2_50.a1h_in1k expects Inception statistics (inputs in [-1, 1]); with
    include_preprocessing the kres model takes [0, 255] RGB."""
    net, path = checkpoint("resnetv2_50")
    hub("timm/resnetv2_50.a1h_in1k", path)
    assert kres.preprocessing("resnetv2_50", "a1h_in1k")["mean"] == [127.5] * 3
    model = kres.build("resnetv2_50", input_shape=(SIZE, SIZE, 3), weights="a1h_in1k",
                       include_preprocessing=True)
    pixels = RNG.uniform(0, 255, size=(2, SIZE, SIZE, 3)).astype("float32")
    assert_close("resnetv2_50 (hub, raw pixels)", predict(model, pixels),
                 tr.logits(net, pixels / 127.5 - 1.0), atol=1e-4)


def test_hub_corrupt_download_is_refused_and_removed(hub, checkpoint):
    _, path = checkpoint("resnet18")
    blob = hub("timm/resnet18.tv_in1k", path)
    with open(blob, "r+b") as f:  # a truncated download, still named by the published sha256
        f.truncate(os.path.getsize(blob) // 2)
    with pytest.raises(KresError, match="corrupt or truncated.*removed from the cache"):
        kres.build("resnet18", input_shape=(SIZE, SIZE, 3), weights="tv_in1k")
    assert not blob.exists()
    with pytest.raises(KresError, match="could not fetch timm/resnet18.tv_in1k"):
        kres.build("resnet18", input_shape=(SIZE, SIZE, 3), weights="tv_in1k")


# ---------------------------------------------------------------------------------------------
# Keras Applications through get_file's cache in KERAS_HOME


KERAS_APPS = {"keras_resnet50": ("ResNet50", "resnet"), "keras_resnet50v2": ("ResNet50V2",
                                                                            "resnet_v2")}


def keras_reference(name, path):
    """keras.applications' model with random weights (and random BatchNorm statistics), saved
    in the Keras 2 .h5 layout of the published file, at ``path``."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    app = getattr(keras.applications, KERAS_APPS[name][0])(
        weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    randomise.keras_norms(app, RNG)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, app)
    return app


def rename_layers(path, prefix):
    import h5py

    with h5py.File(path, "r+") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        for n in names:
            f.move(n, prefix + n)
        f.attrs["layer_names"] = [(prefix + n).encode() for n in names]


@pytest.mark.parametrize("name", list(KERAS_APPS))
def test_keras_applications_imagenet_equals_keras(name, tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    calls, get_file = [], keras.utils.get_file
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: calls.append(a) or get_file(
        *a, **k))
    entry = kres.weights.pretrained_info(name)
    file_name = entry.files[0][0]
    assert file_name == f"{name[len('keras_'):]}_weights_tf_dim_ordering_tf_kernels.h5"
    cached = tmp_path / "models" / file_name  # where get_file caches the download
    app = keras_reference(name, cached)
    # our file is not the published one: pin its sha256 (documented override for mirrors)
    with kres.weights.expected_hash(file_name, file_hash(cached)):
        model = kres.build(name, input_shape=(SIZE, SIZE, 3), weights="imagenet")
        raw = kres.build(name, input_shape=(SIZE, SIZE, 3), weights="imagenet",
                         include_preprocessing=True)
    assert model.kres_weights["file"] == str(cached)
    assert calls[0] == (file_name, entry.url)  # fetched through keras.utils.get_file
    assert model.kres_weights["assigned"] == len(model.weights)
    assert_close(name, predict(model, IMAGES), predict(app, IMAGES), atol=1e-5)
    # a local Keras 2 .h5 file whose layer names differ loads by position, as load_weights does
    rename_layers(cached, prefix="old_")
    for w in model.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    kres.weights.load_into(model, str(cached))
    assert model.kres_weights["matched"] == "by position"
    assert_close(f"{name} (.h5 by position)", predict(model, IMAGES), predict(app, IMAGES),
                 atol=1e-5)
    # include_preprocessing: raw RGB pixels == keras' preprocess_input then the model
    pixels = RNG.uniform(0, 255, size=(2, SIZE, SIZE, 3)).astype("float32")
    module = getattr(keras.applications, KERAS_APPS[name][1])
    reference = predict(app, module.preprocess_input(pixels.copy()))
    assert_close(f"{name} (raw pixels)", predict(raw, pixels), reference,
                 atol=1e-5 * max(1.0, float(np.abs(reference).max())))


def test_keras_applications_without_top_use_the_notop_file(tmp_path, monkeypatch):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    file_name = kres.weights.pretrained_info("keras_resnet50").files[1][0]
    assert file_name == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached = tmp_path / "models" / file_name
    cached.parent.mkdir(parents=True)
    keras.utils.set_random_seed(2)
    app = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                      input_shape=(SIZE, SIZE, 3))
    with h5py.File(cached, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, app)
    with kres.weights.expected_hash(file_name, file_hash(cached)):
        model = kres.build("keras_resnet50", input_shape=(SIZE, SIZE, 3), include_top=False,
                           pooling="avg", weights="imagenet")
    assert_close("keras_resnet50 (no top)", predict(model, IMAGES), predict(app, IMAGES),
                 atol=1e-5)


def test_keras_file_failing_the_published_md5_is_refused_and_removed(tmp_path, monkeypatch):
    """No override: the file is checked against keras.applications' own md5, which a file we
    made cannot match, exactly as a corrupted download would not."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)
    with pytest.raises(KresError, match="2cb95161c43110f7111970584f804107.*removed"):
        kres.build("keras_resnet50", weights="imagenet")
    assert not cached.exists()


def test_keras_truncated_cached_file_is_refused_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    name = "keras_resnet50v2"
    file_name = kres.weights.pretrained_info(name).files[0][0]
    cached = tmp_path / "models" / file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(RNG.bytes(1 << 16))  # verified before it is parsed
    good = file_hash(cached)
    with open(cached, "r+b") as f:
        f.truncate(os.path.getsize(cached) - 4096)
    with kres.weights.expected_hash(file_name, good):
        with pytest.raises(KresError, match="corrupt or truncated"):
            kres.build(name, input_shape=(SIZE, SIZE, 3), weights="imagenet")
    assert not cached.exists()


# ---------------------------------------------------------------------------------------------
# Transfer learning


def converted(state, layer, spec):
    """The checkpoint's arrays for one kres layer, in Keras layout."""
    prefix = torch_names.torch_prefix(layer.name, spec)
    return [value for _, value, _ in torch_names.layer_arrays(layer, prefix, state)]


def test_one_channel_ten_classes_loads_everything_else_exactly(checkpoint, capsys):
    net, path = checkpoint("resnet18")
    state = tr.state_dict(net)
    model = kres.build("resnet18", input_shape=(SIZE, SIZE, 1), num_classes=10,
                       weights=str(path))
    err = capsys.readouterr().err
    assert "not loading the classifier 'predictions'" in err and "1000 classes" in err
    assert "summed over RGB" in err and model.kres_weights["notes"]
    out = predict(model, IMAGES[..., :1])
    assert out.shape == (2, 10) and np.isfinite(out).all()
    stem = model.get_layer("conv1_conv").kernel.numpy()
    rgb = state["conv1.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_allclose(stem, rgb.sum(axis=2, keepdims=True), rtol=1e-6, atol=1e-7)
    checked = 0
    for layer in model.layers:
        if not layer.weights or layer.name in ("conv1_conv", "predictions"):
            continue
        for var, value in zip(layer.weights, converted(state, layer, model.kres_spec)):
            assert np.array_equal(var.numpy(), value), var.path
            checked += 1
    assert checked == len(model.weights) - 3  # all but the stem kernel, classifier kernel+bias


def test_more_channels_repeat_and_rescale_the_stem(checkpoint):
    net, path = checkpoint("resnet18")
    model = kres.build("resnet18", input_shape=(SIZE, SIZE, 5), include_top=False,
                       pooling="avg", weights=str(path))
    rgb = tr.state_dict(net)["conv1.weight"].transpose(2, 3, 1, 0)
    expected = np.concatenate([rgb, rgb[:, :, :2]], axis=2) * (3 / 5)
    np.testing.assert_allclose(model.get_layer("conv1_conv").kernel.numpy(), expected,
                               rtol=1e-6)
    assert predict(model, np.ones((1, SIZE, SIZE, 5), "float32")).shape == (1, 512)


# ---------------------------------------------------------------------------------------------
# Integrity: a checkpoint that does not fit never loads partially


def test_mismatch_names_the_first_parameter_with_both_shapes(checkpoint):
    _, path = checkpoint("resnet18")
    model = kres.build("resnet18", input_shape=(SIZE, SIZE, 3), stem_width=32)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(KresError, match=r"'conv1\.weight' has shape \(64, 3, 7, 7\).*"
                                        r"'conv1_conv' needs kernel of shape \(7, 7, 3, 32\)"):
        kres.weights.load_into(model, str(path))
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def test_checkpoint_of_another_depth_is_refused(checkpoint):
    _, path = checkpoint("resnet18")
    with pytest.raises(KresError, match="no parameter 'layer1.2.conv1.weight'"):
        kres.build("resnet34", input_shape=(SIZE, SIZE, 3), weights=str(path))


def test_unused_checkpoint_parameters_are_refused(checkpoint, tmp_path):
    from safetensors.numpy import save_file

    net, _ = checkpoint("resnet18")
    state = tr.state_dict(net)
    state["layer1.0.se.fc1.weight"] = np.zeros((8, 64, 1, 1), "float32")  # an SE checkpoint
    save_file(state, str(tmp_path / "se.safetensors"))
    with pytest.raises(KresError, match="have no place in the model, first "
                                        "'layer1.0.se.fc1.weight'"):
        kres.build("resnet18", input_shape=(SIZE, SIZE, 3),
                   weights=str(tmp_path / "se.safetensors"))


def test_unreadable_safetensors_file_gives_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(KresError, match="cannot read the safetensors file"):
        kres.weights.load_into(kres.build("resnet20"), str(bad))


# ---------------------------------------------------------------------------------------------
# The table


REQUIRED = ["resnet18.tv_in1k", "resnet18.a1_in1k", "resnet34.tv_in1k", "resnet34.a1_in1k",
            "resnet50.tv_in1k", "resnet50.a1_in1k", "resnet101.tv_in1k", "resnet101.a1_in1k",
            "resnet152.tv_in1k", "resnet152.a1_in1k", "resnet50d.ra2_in1k",
            "resnext50_32x4d.tv_in1k", "wide_resnet50_2.tv_in1k", "seresnet50.a1_in1k",
            "resnetv2_50.a1h_in1k"] + [f"keras_resnet{d}{v}.imagenet" for d in (50, 101, 152)
                                       for v in ("", "v2")]


def test_list_pretrained_has_every_issue_model_with_source_licence_and_top1():
    rows = kres.weights.list_pretrained()
    names = {r["name"] for r in rows}
    assert not set(REQUIRED) - names
    models = set(kres.list_models())
    for r in rows:
        assert r["model"] in models
        assert r["source"] in ("timm", "keras") and r["license"]
        assert 60 < r["top1"] < 90
    defaults = [r["model"] for r in rows if r["default"]]
    assert sorted(defaults) == sorted({r["model"] for r in rows})  # exactly one per model
    assert [r["name"] for r in kres.weights.list_pretrained("resnet50.tv*")] == [
        "resnet50.tv2_in1k", "resnet50.tv_in1k"]
    assert kres.weights.list_pretrained("resnet50")[0]["name"] == "resnet50.a1_in1k"


def test_preprocessing_of_a_tag():
    tv = kres.preprocessing("resnet50", "tv_in1k")
    assert tv["mean"] == [123.675, 116.28, 103.53] and tv["crop_pct"] == 0.875
    assert tv["interpolation"] == "bilinear" and tv["input_size"] == 224
    a1 = kres.preprocessing("resnet50", "a1_in1k")
    assert (a1["eval_size"], a1["eval_crop"], a1["interpolation"]) == (288, 1.0, "bicubic")
    caffe = kres.preprocessing("keras_resnet50", "imagenet")
    assert caffe["channel_order"] == "BGR" and caffe["std"] == [1.0, 1.0, 1.0]


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(KresError, match="a1_in1k.*tv_in1k"):
        kres.weights.load_into(kres.build("resnet20"), "a9_in1k", spec=kres.models.get_spec(
            "resnet18"))
    with pytest.raises(KresError, match="no pretrained weights for model 'resnet20'"):
        kres.build("resnet20", weights="imagenet")
    with pytest.raises(KresError, match="are for model 'resnet50'"):
        kres.build("resnet20", weights="resnet50.a1_in1k")

