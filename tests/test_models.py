"""The model zoo as a specification: published sizes, keras.applications parity, behaviour."""

import pytest

import kres
from kres.models.blocks import BLOCKS, STEMS

# Published trainable-parameter counts (torchvision / timm, 1000 classes).
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240, "seresnet50": 28_088_024, "resnetv2_50": 25_549_352,
}
# He et al. 2015, Table 6: millions of parameters, as the paper rounds them.
CIFAR_PARAMS_M = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85,
                  "resnet110": 1.7}
# torchvision's "GFLOPS" (multiply-accumulates) at 224x224.
PUBLISHED_GMACS = {"resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "resnext50_32x4d": 4.23}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_trainable_params_equal_published(info, name):
    assert info(name)["trainable_params"] == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(CIFAR_PARAMS_M))
def test_cifar_params_round_to_paper(info, name):
    digits = 1 if name == "resnet110" else 2
    assert round(info(name)["trainable_params"] / 1e6, digits) == CIFAR_PARAMS_M[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_macs_within_one_percent_of_published(info, name):
    macs = info(name)["macs"] / 1e9
    assert abs(macs - PUBLISHED_GMACS[name]) / PUBLISHED_GMACS[name] < 0.01


def test_macs_are_counted_from_the_layers():
    # resnet20 at 32x32, by hand: stem 3*3*3*16*32*32; stage 1: 6 convs 3*3*16*16*32*32;
    # stage 2: 3*3*16*32*16*16 + 5 * 3*3*32*32*16*16; stage 3 likewise at 8x8; classifier 64*10.
    convs = (3 * 3 * 3 * 16 * 1024 + 6 * 3 * 3 * 16 * 16 * 1024
             + 3 * 3 * 16 * 32 * 256 + 5 * 3 * 3 * 32 * 32 * 256
             + 3 * 3 * 32 * 64 * 64 + 5 * 3 * 3 * 64 * 64 * 64)
    assert kres.model_info("resnet20")["macs"] == convs + 640
    assert kres.model_info("resnet20", input_shape=(64, 64, 3))["macs"] == 4 * convs + 640


def test_model_info_fields(info):
    i = info("resnet50")
    assert i["family"] == "imagenet" and i["input_shape"] == (224, 224, 3)
    assert i["num_classes"] == 1000 and "arXiv:1512.03385" in i["reference"]
    # resnet50 has 26,560 BatchNorm channels, each with a moving mean and variance.
    assert i["total_params"] == i["trainable_params"] + 2 * 26_560
    assert [(f["channels"], f["stride"]) for f in i["feature_info"]] == [
        (64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)]
    c = info("resnet20")
    assert c["family"] == "cifar" and c["input_shape"] == (32, 32, 3) and c["num_classes"] == 10
    assert [(f["channels"], f["stride"]) for f in c["feature_info"]] == [
        (16, 1), (16, 1), (32, 2), (64, 4)]


def test_list_models_pattern():
    assert kres.list_models("resnext*") == ["resnext101_32x8d", "resnext101_64x4d",
                                            "resnext50_32x4d"]
    assert kres.list_models() == sorted(kres.list_models())
    assert len(kres.list_models()) == 75  # every row of the spec table (kres/models/registry.py)
    assert kres.list_models("nothing*") == []


def test_every_registered_row_names_a_block_stem_and_preprocessing_the_tables_know():
    from kres import pixels
    from kres.models import spec

    assert set(spec.PREPROCESSING) == set(pixels.MODES)
    for name in kres.list_models():
        s = kres.models.get_spec(name)
        assert s.block in BLOCKS and s.stem in STEMS, name
        assert s.preprocessing in pixels.MODES, name


def _tiny(**overrides):
    """A four-stage network of one 8-plane unit per stage, at 64x64."""
    return kres.models.get_spec("resnet18").replace(
        depths=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8, input_shape=(64, 64, 3),
        **overrides)


@pytest.mark.parametrize("block", list(BLOCKS))
def test_a_block_outputs_planes_times_its_expansion_and_preact_ones_end_with_bn_relu(block):
    facts = BLOCKS[block]
    model = kres.build(_tiny(block=block), features_only=True)
    assert [o.shape[-1] for o in model.outputs[1:]] == [8 * facts.expansion] * 4
    names = {layer.name for layer in model.layers}
    assert ({"post_bn", "post_relu"} <= names) == facts.preact


@pytest.mark.parametrize("stem", list(STEMS))
def test_a_stem_gives_the_feature_levels_its_spec_states(stem):
    spec = _tiny(stem=stem)
    model = kres.build(spec, features_only=True)
    assert [(o.shape[-1], 64 // o.shape[1]) for o in model.outputs] == [
        (level["channels"], level["stride"]) for level in spec.feature_info()]
