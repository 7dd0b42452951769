"""More of the residual family as rows and pieces of the one builder: ResNet-RS, BiT (GroupNorm and
weight-standardised convolutions), ECA attention, BlurPool downsampling, highway gates and
dilated backbones (output_stride). timm is the reference: its model definitions with random
weights, saved as the safetensors checkpoints the Hub holds, loaded without PyTorch by kres."""

import numpy as np
import pytest

import keras
import kres
from kres.models.blocks import HIGHWAY_GATE_BIAS, eca_kernel_size
from kres.models.layers import BlurPool2D, HighwayMix, StdConv2D
from kres.errors import KresError

pytest.importorskip("torch")
import timm_reference as timm_ref  # noqa: E402  (tests/ helper; needs torch and timm)

SIZE = 64
IMAGES = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype("float32")

# timm's trainable parameter counts (1000 classes), as timm.create_model(name) builds them.
TIMM_PARAMS = {"resnetrs50": 35_691_912, "resnetrs101": 63_618_696,
               "resnetv2_50x1_bit": 25_549_352, "ecaresnet50d": 25_576_350}


def predict(model, x):
    out = model(x, training=False)
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def assert_close(case, ours, reference, atol=1e-4):
    diff = float(np.abs(ours - reference).max())
    assert diff <= atol, f"{case}: max |kres - timm| = {diff} > {atol}"


# ---------------------------------------------------------------------------------------------
# Sizes


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_trainable_params_equal_timm(info, name):
    assert info(name)["trainable_params"] == TIMM_PARAMS[name]


def test_reference_figures_are_timms_own():
    assert {name: timm_ref.trainable_params(name) for name in TIMM_PARAMS} == TIMM_PARAMS


# ---------------------------------------------------------------------------------------------
# timm checkpoints (random weights) load and give timm's outputs to 1e-4


@pytest.mark.parametrize("name,piece", [
    ("resnetrs50", "ResNet-RS: strided-conv stem pool, SE 0.25, ResNet-D shortcuts"),
    ("resnetv2_50x1_bit", "BiT: GroupNorm, weight-standardised convs, zero-padded stem pool"),
    ("ecaresnet50d", "ECA attention"),
    ("resnetblur50", "BlurPool in the stem and the strided bottlenecks"),
    ("resnetblur18", "BlurPool in strided basic units"),
])
def test_timm_checkpoint_gives_timms_logits(name, piece, tmp_path):
    net = timm_ref.create(name)
    model = kres.build(name, input_shape=(SIZE, SIZE, 3),
                       weights=timm_ref.save(net, tmp_path / f"{name}.safetensors"))
    assert model.kres_weights["assigned"] == len(model.weights)
    assert_close(name, predict(model, IMAGES), timm_ref.run(net, IMAGES))


def test_group_norm_plugs_into_a_post_activation_resnet(tmp_path):
    """norm='group' is a piece of any unit: resnet18 with GroupNorm(32) in place of BatchNorm is
    timm's resnet18 with ``norm_layer="groupnorm"`` (32 groups)."""
    net = timm_ref.create("resnet18", norm_layer="groupnorm")
    model = kres.build("resnet18", input_shape=(SIZE, SIZE, 3), norm="group",
                       weights=timm_ref.save(net, tmp_path / "gn.safetensors"))
    assert model.get_layer("conv2_block1_1_gn").groups == 32
    assert_close("resnet18 norm=group", predict(model, IMAGES), timm_ref.run(net, IMAGES))


# ---------------------------------------------------------------------------------------------
# Dilated backbones


def test_resnet50_output_stride_8_gives_28x28_features_at_224():
    model = kres.build("resnet50", include_top=False, output_stride=8)
    assert model.output_shape == (None, 28, 28, 2048)
    assert model.get_layer("conv5_block3_2_conv").dilation_rate == (4, 4)
    assert model.get_layer("conv5_block1_2_conv").dilation_rate == (2, 2)  # previous dilation


@pytest.mark.parametrize("name,output_stride", [
    ("resnet50", 8), ("resnet50d", 8), ("resnetv2_50x1_bit", 8), ("resnetblur50", 16),
    ("resnetrs50", 16),
])
def test_stride_32_checkpoint_loads_into_a_dilated_network_unchanged(name, output_stride,
                                                                     tmp_path):
    """The checkpoint comes from timm's stride-32 network; the dilated kres model equals timm's
    ``output_stride`` model with the same state dict (ResNet-D's shortcut pool turns into a
    stride-1 same-padded pool, BlurPool blurs at stride 1 where dilation begins, as in timm)."""
    net = timm_ref.create(name)
    path = timm_ref.save(net, tmp_path / f"{name}.safetensors")
    dilated = timm_ref.create(name, output_stride=output_stride)
    dilated.load_state_dict(net.state_dict())
    model = kres.build(name, input_shape=(SIZE, SIZE, 3), output_stride=output_stride,
                       weights=path)
    assert model.kres_weights["assigned"] == len(model.weights)  # every weight, same shapes
    assert_close(f"{name} output_stride={output_stride}", predict(model, IMAGES),
                 timm_ref.run(dilated, IMAGES))


def test_feature_info_and_features_follow_output_stride():
    info = kres.model_info("resnet18", output_stride=16, input_shape=(64, 64, 3))
    assert [f["stride"] for f in info["feature_info"]] == [2, 4, 8, 16, 16]
    model = kres.build("resnet18", features_only=True, output_stride=16,
                       input_shape=(None, None, 3))
    shapes = [o.shape for o in predict(model, np.zeros((1, 64, 64, 3), "float32"))]
    assert [s[1] for s in shapes] == [32, 16, 8, 4, 4]


def test_output_stride_works_for_the_keras_layouts():
    model = kres.build("keras_resnet50v2", include_top=False, output_stride=16)
    assert model.output_shape == (None, 14, 14, 2048)


# ---------------------------------------------------------------------------------------------
# The pieces


def test_resnet_rs_rows_set_dropout_and_stochastic_depth_per_size():
    get = kres.models.get_spec
    assert [(get(f"resnetrs{d}").head_dropout, get(f"resnetrs{d}").drop_path_rate)
            for d in (50, 101, 152, 200, 270, 350, 420)] == [
        (0.25, 0.0), (0.25, 0.0), (0.25, 0.0), (0.25, 0.1), (0.25, 0.1), (0.4, 0.1), (0.4, 0.1)]
    assert [get(f"resnetrs{d}").depths for d in (270, 350, 420)] == [
        (4, 29, 53, 4), (4, 36, 72, 4), (4, 44, 87, 4)]


def test_resnet_rs_replaces_the_stem_pool_by_a_strided_conv():
    model = kres.build("resnetrs50", input_shape=(SIZE, SIZE, 3), depths=(1, 1, 1, 1))
    assert model.get_layer("pool1_conv").kernel.shape == (3, 3, 64, 64)
    assert model.get_layer("pool1_conv").strides == (2, 2)
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]


def test_bit_width_factor_multiplies_every_width():
    model = kres.build("resnetv2_50x3_bit", input_shape=(SIZE, SIZE, 3), include_top=False,
                       depths=(1, 1, 1, 1))
    assert model.get_layer("conv1_conv").kernel.shape == (7, 7, 3, 192)
    assert model.get_layer("conv2_block1_2_conv").kernel.shape == (3, 3, 192, 192)
    assert model.output_shape[-1] == 3 * 2048
    assert all(isinstance(layer, StdConv2D) for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D))


def test_weight_standardised_conv_equals_a_conv_with_standardised_kernel():
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 4)).astype("float32")
    ws = StdConv2D(6, 3, padding="same", use_bias=False, epsilon=1e-8)
    y = keras.ops.convert_to_numpy(ws(x))
    k = ws.kernel.numpy()
    k = (k - k.mean(axis=(0, 1, 2))) / np.sqrt(k.var(axis=(0, 1, 2)) + 1e-8)
    plain = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)
    plain.build(x.shape)
    plain.kernel.assign(k)
    np.testing.assert_allclose(y, keras.ops.convert_to_numpy(plain(x)), atol=1e-5)


@pytest.mark.parametrize("channels,k", [(64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_size_grows_with_log_channels(channels, k):
    assert eca_kernel_size(channels) == k


def test_eca_replaces_se_in_any_unit():
    model = kres.build("seresnet18", attention="eca", input_shape=(SIZE, SIZE, 3))
    assert not [layer for layer in model.layers if "_se_" in layer.name]
    assert model.get_layer("conv5_block2_eca_conv").kernel.shape == (5, 1, 1)  # 512 channels


def test_blur_pool_blurs_with_the_binomial_filter_and_subsamples():
    impulse = np.zeros((1, 7, 7, 1), "float32")
    impulse[0, 3, 3, 0] = 16.0
    blurred = keras.ops.convert_to_numpy(BlurPool2D(1)(impulse))
    np.testing.assert_allclose(blurred[0, 2:5, 2:5, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert blurred.sum() == 16.0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(BlurPool2D(2)(impulse)),
                                  blurred[:, ::2, ::2, :])
    flat = np.full((1, 6, 6, 3), 5.0, "float32")  # reflect padding keeps a constant image
    np.testing.assert_allclose(keras.ops.convert_to_numpy(BlurPool2D(2)(flat)), 5.0)


def test_blur_downsampling_moves_the_stride_after_the_activation():
    model = kres.build("resnetblur50", input_shape=(SIZE, SIZE, 3))
    assert model.get_layer("conv3_block1_2_conv").strides == (1, 1)
    blur = model.get_layer("conv3_block1_2_blur")
    assert blur.input is model.get_layer("conv3_block1_2_relu").output
    assert blur.strides == 2
    assert isinstance(model.get_layer("pool1_blur"), BlurPool2D)
    assert model.get_layer("pool1_pool").strides == (1, 1)


# ---- highway gates


def test_highway_adds_one_gate_per_unit_biased_to_carry():
    model = kres.build("highway20")
    gates = [layer for layer in model.layers if layer.name.endswith("_gate")]
    assert len(gates) == 9
    assert all(np.all(g.bias.numpy() == HIGHWAY_GATE_BIAS) for g in gates)
    # 1x1 convs with bias: 3 * 16*17 + (16*32 + 32) + 2 * 32*33 + (32*64 + 64) + 2 * 64*65
    assert kres.model_info("highway20")["trainable_params"] - \
        kres.model_info("resnet20")["trainable_params"] == 13_904


def test_highway_unit_mixes_gate_branch_and_carry():
    """conv3_block1 of highway20: y = relu(T * F(x) + (1 - T) * carry(x)), T = sigmoid(W x + b),
    the carry subsampled and zero-padded from 16 to 32 channels (option A)."""
    model = kres.build("highway20")
    x_in = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    names = ["conv2_block3_out", "conv3_block1_2_bn", "conv3_block1_out"]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    x, branch, out = predict(probe, x_in)
    gate_layer = model.get_layer("conv3_block1_gate")
    w, b = gate_layer.kernel.numpy()[0, 0], gate_layer.bias.numpy()
    sub = x[:, ::2, ::2, :]
    gate = 1 / (1 + np.exp(-(sub @ w + b)))
    carry = np.pad(sub, [(0, 0), (0, 0), (0, 0), (8, 8)])
    np.testing.assert_allclose(out, np.maximum(gate * branch + (1 - gate) * carry, 0), atol=1e-5)


def test_highway_shut_gates_carry_the_input_and_open_gates_give_the_plain_twin():
    x = np.random.default_rng(3).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    highway, plain = kres.build("highway20"), kres.build("plain20")
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(highway.get_layer(layer.name).get_weights())
    gates = [layer for layer in highway.layers if layer.name.endswith("_gate")]

    def set_gates(bias):
        for g in gates:
            g.set_weights([np.zeros_like(g.kernel.numpy()), np.full(g.bias.shape, bias)])

    set_gates(-40.0)  # T = 0: every unit carries its (non-negative) input
    probe = keras.Model(highway.input, [highway.get_layer("conv1_relu").output,
                                        highway.get_layer("conv2_block3_out").output])
    stem, stage1 = predict(probe, x)
    np.testing.assert_allclose(stage1, stem, atol=1e-6)
    set_gates(40.0)  # T = 1: the plain network
    np.testing.assert_allclose(predict(highway, x), predict(plain, x), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Saving, errors, the weights table


def test_keras_file_with_every_new_piece_reloads_in_safe_mode(tmp_path):
    model = kres.build("resnet18", input_shape=(SIZE, SIZE, 3), norm="group",
                       conv="weight_std", downsample="blur", stem_pool="blur", attention="eca",
                       shortcut="highway", output_stride=16)
    assert {HighwayMix, BlurPool2D, StdConv2D} <= {type(layer) for layer in model.layers}
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(predict(loaded, IMAGES), predict(model, IMAGES))


@pytest.mark.parametrize("name,kwargs,pattern", [
    ("resnet50", {"output_stride": 12}, r"invalid output_stride.*got 12.*None or one of 4, 8, "
                                        r"16, 32"),
    ("resnet20", {"output_stride": 8}, r"invalid output_stride.*got 8.*1, 2, 4"),
    ("resnet50", {"attention": "foo"}, r"unknown attention.*got 'foo'.*'se', 'eca', 'none'"),
    ("resnet20", {"stem_pool": "blur"}, r"stem_pool \(the 'cifar' stem has no pooling to "
                                        r"replace\).*got 'blur'.*accepted: None"),
    ("resnet50", {"stem_pool": "avg"}, r"unknown stem_pool.*got 'avg'"),
    ("resnet50", {"downsample": "avg"}, r"unknown downsample.*'stride', 'blur'"),
    ("resnet50", {"norm": "layer"}, r"unknown norm.*got 'layer'.*'batch', 'group'"),
    ("resnet50", {"conv": "ws"}, r"unknown conv.*got 'ws'.*'plain', 'weight_std'"),
    ("resnet20", {"norm": "group"}, r"norm_groups \(GroupNorm splits channels \[16\].*got 32"),
    ("keras_resnet50", {"downsample": "blur"}, r"'keras_v1' block builds its own"),
    ("resnetv2_50", {"conv": "weight_std"}, r"zero_init_last.*got True.*False with "
                                            r"conv='weight_std'"),
    ("highway20", {"shortcut_scale": "1/L"}, r"highway gate sets the mix itself"),
])
def test_invalid_choices_say_what_they_got_and_accept(name, kwargs, pattern):
    with pytest.raises(KresError, match=pattern):
        kres.build(name, **kwargs)


NEW_TAGS = {  # name: (licence, top-1, eval size, eval crop, interpolation, preprocessing)
    "resnetrs50.tf_in1k": ("apache-2.0", 79.934, 224, 0.91, "bicubic", "imagenet"),
    "resnetrs420.tf_in1k": ("apache-2.0", 85.010, 416, 1.0, "bicubic", "imagenet"),
    "resnetv2_50x1_bit.goog_distilled_in1k": ("apache-2.0", 82.820, 224, 0.875, "bicubic",
                                              "tf"),
    "resnetv2_50x3_bit.goog_in21k_ft_in1k": ("apache-2.0", 83.982, 448, 1.0, "bilinear", "tf"),
    "ecaresnet50d.miil_in1k": ("apache-2.0", 81.648, 288, 0.95, "bicubic", "imagenet"),
    "resnetblur50.bt_in1k": ("apache-2.0", 80.248, 288, 0.95, "bicubic", "imagenet"),
}


def test_list_pretrained_has_the_new_families_with_licence_and_preprocessing():
    rows = {r["name"]: r for r in kres.list_pretrained()}
    for name, expected in NEW_TAGS.items():
        r = rows[name]
        assert (r["license"], r["top1"], r["eval_size"], r["eval_crop"], r["interpolation"],
                r["preprocessing"]) == expected, name
    assert kres.preprocessing("resnetv2_50x1_bit", "goog_distilled_in1k")["mean"] == [127.5] * 3
    assert rows["resnetv2_50x1_bit.goog_distilled_in1k"]["default"]

