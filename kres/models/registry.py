"""The spec table: every named architecture is one row here. Adding a model is adding a row."""

from kres.models.spec import ResNetSpec

HE2015 = "He et al. 2015, Deep Residual Learning for Image Recognition (arXiv:1512.03385)"
HE2016 = "He et al. 2016, Identity Mappings in Deep Residual Networks (arXiv:1603.05027)"
XIE2017 = "Xie et al. 2017, Aggregated Residual Transformations (ResNeXt, arXiv:1611.05431)"
WRN2016 = "Zagoruyko & Komodakis 2016, Wide Residual Networks (arXiv:1605.07146)"
HU2018 = "Hu et al. 2018, Squeeze-and-Excitation Networks (arXiv:1709.01507)"
TRICKS2019 = "He et al. 2019, Bag of Tricks for Image Classification (ResNet-D, arXiv:1812.01187)"
RS2021 = "Bello et al. 2021, Revisiting ResNets: Improved Training and Scaling Strategies " \
         "(ResNet-RS, arXiv:2103.07579)"
BIT2020 = "Kolesnikov et al. 2020, Big Transfer (BiT): General Visual Representation Learning " \
          "(arXiv:1912.11370)"
ECA2020 = "Wang et al. 2020, ECA-Net: Efficient Channel Attention (arXiv:1910.03151)"
ZHANG2019 = "Zhang 2019, Making Convolutional Networks Shift-Invariant Again (arXiv:1904.11486)"
HIGHWAY2015 = "Srivastava et al. 2015, Training Very Deep Networks (Highway Networks, " \
              "arXiv:1507.06228)"

IMAGENET = dict(family="imagenet", widths=(64, 128, 256, 512), strides=(1, 2, 2, 2))
# The CIFAR papers' plain initialisation: zero-initialised branches cost resnet20 on digits
# 98% -> 25% validation accuracy after 10 epochs. Only the 1000+-layer nets keep them, because
# their untrained outputs overflow to NaN without.
CIFAR = dict(family="cifar", widths=(16, 32, 64), strides=(1, 2, 2), stem="cifar", stem_width=16,
             input_shape=(32, 32, 3), num_classes=10, preprocessing="cifar", zero_init_last=False)
KERAS = dict(IMAGENET, bn_epsilon=1.001e-5, bn_momentum=0.99, conv_bias=True,
             preprocessing="caffe", zero_init_last=False)

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
          152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}

REGISTRY = {}


def register(name, base, **fields):
    """Adds one row to the table."""
    spec = ResNetSpec(name=name, **{**base, **fields})
    spec.validate()
    REGISTRY[name] = spec
    return spec


def _block(depth):
    return "basic" if depth < 50 else "bottleneck"


# ImageNet, v1.5 layout (stride in the 3x3, no conv bias): torchvision / timm.
for d in (18, 34, 50, 101, 152, 200):
    register(f"resnet{d}", IMAGENET, architecture="ResNet", reference=HE2015,
             block=_block(d), depths=DEPTHS[d])
for d in (18, 34, 50, 101):
    register(f"resnet{d}d", IMAGENET, architecture="ResNet-D", reference=TRICKS2019,
             block=_block(d), depths=DEPTHS[d], stem="deep", stem_width=32, shortcut="avgpool")
for d, card, bw in ((50, 32, 4), (101, 32, 8), (101, 64, 4)):
    register(f"resnext{d}_{card}x{bw}d", IMAGENET, architecture="ResNeXt", reference=XIE2017,
             block="bottleneck", depths=DEPTHS[d], cardinality=card, base_width=bw)
for d in (50, 101):
    register(f"wide_resnet{d}_2", IMAGENET, architecture="Wide ResNet", reference=WRN2016,
             block="bottleneck", depths=DEPTHS[d], base_width=128)
for d in (18, 34, 50, 101, 152):
    register(f"seresnet{d}", IMAGENET, architecture="SE-ResNet", reference=HU2018,
             block=_block(d), depths=DEPTHS[d], se_ratio=1 / 16)
for d in (50, 101):
    register(f"seresnext{d}_32x4d", IMAGENET, architecture="SE-ResNeXt", reference=HU2018,
             block="bottleneck", depths=DEPTHS[d], cardinality=32, base_width=4, se_ratio=1 / 16)
for d in (50, 101, 152):
    register(f"resnetv2_{d}", IMAGENET, architecture="ResNetV2 (pre-activation)",
             reference=HE2016, block="preact_bottleneck", depths=DEPTHS[d], stem="preact")
for d in (18, 34):
    register(f"plain{d}", IMAGENET, architecture="Plain (no shortcuts)", reference=HE2015,
             block="basic", depths=DEPTHS[d], shortcut="none")

# ResNet-RS: ResNet-D stem and shortcuts, a strided 3x3 conv in place of the stem's max-pool, SE
# with ratio 0.25 (timm/models/resnet.py, resnetrs*). Depths from the paper's Table 7; head
# dropout and stochastic depth per size as keras.applications' ResNetRS* (Keras 2.x) set them.
RS = dict(IMAGENET, architecture="ResNet-RS", reference=RS2021, block="bottleneck", stem="deep",
          stem_width=32, stem_pool="conv", shortcut="avgpool", se_ratio=0.25)
for d, depths, dropout, drop_path in (
        (50, DEPTHS[50], 0.25, 0.0), (101, DEPTHS[101], 0.25, 0.0), (152, DEPTHS[152], 0.25, 0.0),
        (200, DEPTHS[200], 0.25, 0.1), (270, (4, 29, 53, 4), 0.25, 0.1),
        (350, (4, 36, 72, 4), 0.4, 0.1), (420, (4, 44, 87, 4), 0.4, 0.1)):
    register(f"resnetrs{d}", RS, depths=depths, head_dropout=dropout, drop_path_rate=drop_path)

# BiT: pre-activation bottlenecks with GroupNorm (32 groups) and weight-standardised convs, a
# zero-padded stem pool, widths x1 to x4 (timm/models/resnetv2.py, resnetv2_*_bit). No
# zero-initialised last conv: weight standardisation cannot train one.
BIT = dict(IMAGENET, architecture="BiT (ResNetV2, GroupNorm + WS)", reference=BIT2020,
           block="preact_bottleneck", stem="bit", norm="group", conv="weight_std",
           preprocessing="tf", zero_init_last=False)
for d, k in ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2), (152, 4)):
    register(f"resnetv2_{d}x{k}_bit", BIT, depths=DEPTHS[d], stem_width=64 * k,
             widths=tuple(k * w for w in IMAGENET["widths"]))

# ResNet-D with ECA in place of SE (timm's ecaresnet*d).
for d in (50, 101):
    register(f"ecaresnet{d}d", IMAGENET, architecture="ECA-ResNet-D", reference=ECA2020,
             block="bottleneck", depths=DEPTHS[d], stem="deep", stem_width=32,
             shortcut="avgpool", attention="eca")

# Anti-aliased: BlurPool after the stem's stride-1 max-pool and in every strided unit (timm's
# resnetblur*).
for d, deep in ((18, False), (50, False), (50, True), (101, True)):
    register(f"resnetblur{d}{'d' if deep else ''}", IMAGENET, architecture="ResNet-Blur",
             reference=ZHANG2019, block=_block(d), depths=DEPTHS[d], downsample="blur",
             stem_pool="blur", **(dict(stem="deep", stem_width=32, shortcut="avgpool")
                                  if deep else {}))

# keras.applications' exact architectures (same layer names, parameters and outputs).
for d in (50, 101, 152):
    register(f"keras_resnet{d}", KERAS, architecture="Keras ResNet", reference=HE2015,
             block="keras_v1", depths=DEPTHS[d])
    register(f"keras_resnet{d}v2", KERAS, architecture="Keras ResNetV2", reference=HE2016,
             block="keras_v2", depths=DEPTHS[d], stem="keras_v2", strides=(2, 2, 2, 1),
             stride_in_last_unit=True, shortcut="subsample", preprocessing="tf")

# CIFAR (He et al. 2015, Section 4.2): 6n+2 layers, option A shortcuts.
for d in (20, 32, 44, 56, 110, 1202):
    n = (d - 2) // 6
    register(f"resnet{d}", CIFAR, architecture="CIFAR ResNet", reference=HE2015,
             block="basic", depths=(n, n, n), shortcut="zeropad", zero_init_last=d > 1000)
    if d != 1202:
        register(f"plain{d}", CIFAR, architecture="CIFAR Plain (no shortcuts)", reference=HE2015,
                 block="basic", depths=(n, n, n), shortcut="none")
# Highway twins of the CIFAR ResNets: the same units, each mixing T*F(x) + (1-T)*x through a
# learned sigmoid gate T (Srivastava et al. 2015) instead of adding F(x) + x.
for d in (20, 32, 44, 56, 110):
    n = (d - 2) // 6
    register(f"highway{d}", CIFAR, architecture="CIFAR Highway (gated shortcuts)",
             reference=HIGHWAY2015, block="basic", depths=(n, n, n), shortcut="highway")
register("preact_resnet110", CIFAR, architecture="CIFAR PreAct ResNet", reference=HE2016,
         block="preact_basic", depths=(18, 18, 18), stem="cifar_preact")
for d in (164, 1001):
    n = (d - 2) // 9
    register(f"preact_resnet{d}", CIFAR, architecture="CIFAR PreAct ResNet", reference=HE2016,
             block="preact_bottleneck", depths=(n, n, n), stem="cifar_preact",
             zero_init_last=d > 1000)
for d, k in ((16, 4), (16, 8), (28, 10), (40, 4)):
    n = (d - 4) // 6
    register(f"wrn{d}_{k}", CIFAR, architecture="CIFAR Wide ResNet", reference=WRN2016,
             block="preact_basic", depths=(n, n, n), widths=(16 * k, 32 * k, 64 * k),
             stem="cifar_preact")
