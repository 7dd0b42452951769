"""The pretrained table: every (model, tag) kres can load, where it comes from, under which licence,
how well it does and how its inputs must be prepared.

Top-1 figures are the sources' own: timm's ``results/results-imagenet.csv`` (evaluated at
``eval_size`` with ``eval_crop``; the rows added with ResNet-RS, BiT, ECA and ResNet-Blur come from
its version at commit aa4b585) and the Keras Applications documentation table. Preprocessing
(``mean``/``std`` in 0-255 pixel units, RGB) is taken from timm's ``default_cfgs`` for each tag and
from ``keras.applications.imagenet_utils`` for the Keras files.
"""

from dataclasses import dataclass, field

from kres.pixels import MODES

# Keras Applications: same address, file names and (md5) hashes as keras.applications.resnet.
KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
KERAS_MD5 = {  # name: (with top, without top), copied from keras/src/applications/resnet.py
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}

@dataclass(frozen=True)
class Pretrained:
    """One checkpoint of one model."""

    model: str  # kres model name
    tag: str  # e.g. "a1_in1k" (timm) or "imagenet" (Keras Applications)
    source: str  # "timm" (Hugging Face Hub) or "keras" (Keras Applications)
    license: str
    top1: float  # published ImageNet-1k top-1 (%)
    eval_size: int = 224  # resolution of the published top-1
    eval_crop: float = 0.875
    input_size: int = 224  # training resolution (timm's "input_size")
    crop_pct: float = 0.875  # centre-crop fraction at input_size (timm's "crop_pct")
    interpolation: str = "bilinear"
    mode: str = "imagenet"  # a key of MODES
    default: bool = False  # picked by weights="imagenet"
    num_classes: int = 1000
    files: tuple = field(default=(), compare=False)  # keras: ((name, md5), (notop name, md5))

    @property
    def name(self):
        return f"{self.model}.{self.tag}"

    @property
    def hub_repo(self):
        return f"timm/{self.model}.{self.tag}" if self.source == "timm" else None

    @property
    def mean(self):
        return MODES[self.mode].mean

    @property
    def std(self):
        return MODES[self.mode].std

    @property
    def url(self):
        if self.source == "timm":
            return f"https://huggingface.co/{self.hub_repo}/resolve/main/model.safetensors"
        return KERAS_BASE_URL + self.files[0][0]

    def as_dict(self):
        return {
            "model": self.model, "tag": self.tag, "name": self.name, "source": self.source,
            "license": self.license, "top1": self.top1, "eval_size": self.eval_size,
            "eval_crop": self.eval_crop, "input_size": self.input_size, "crop_pct": self.crop_pct,
            "interpolation": self.interpolation, "preprocessing": self.mode,
            "mean": list(self.mean), "std": list(self.std),
            "channel_order": MODES[self.mode].channel_order,
            "num_classes": self.num_classes, "url": self.url, "default": self.default,
        }


TABLE = {}

APACHE, BSD, NC = "apache-2.0", "bsd-3-clause", "cc-by-nc-4.0"
# timm's cfg families (timm/models/resnet.py): torchvision, RSB "a1/a2" (train 224, test 288),
# RSB "a3" (train 160, test 224), "_ttcfg" (train 224, test 288 crop 0.95), gluon.
TV = dict(license=BSD)
TV2 = dict(license=BSD, input_size=176, crop_pct=0.875, eval_crop=0.965)
RSB = dict(license=APACHE, eval_size=288, eval_crop=1.0, crop_pct=0.95, interpolation="bicubic")
RSB3 = dict(license=APACHE, eval_crop=0.95, input_size=160, crop_pct=0.95, interpolation="bicubic")
TT = dict(license=APACHE, eval_size=288, eval_crop=0.95, interpolation="bicubic")
GLUON = dict(license=APACHE, interpolation="bicubic")
FB = dict(license=NC)


def _add(model, tag, top1, base=None, **kw):
    entry = Pretrained(model=model, tag=tag, source="timm", top1=top1, **{**(base or {}), **kw})
    TABLE[entry.name] = entry


# (model, default tag first) -> tags. Defaults follow timm.create_model(name, pretrained=True).
_add("resnet18", "a1_in1k", 73.158, RSB, default=True)
_add("resnet18", "a2_in1k", 72.372, RSB)
_add("resnet18", "a3_in1k", 68.254, RSB3)
_add("resnet18", "tv_in1k", 69.760, TV)
_add("resnet18", "gluon_in1k", 70.838, GLUON)
_add("resnet18", "fb_ssl_yfcc100m_ft_in1k", 72.594, FB)
_add("resnet18", "fb_swsl_ig1b_ft_in1k", 73.282, FB)
_add("resnet18d", "ra2_in1k", 73.794, TT, default=True)
_add("resnet34", "a1_in1k", 77.918, RSB, default=True)
_add("resnet34", "a2_in1k", 77.158, RSB)
_add("resnet34", "a3_in1k", 72.970, RSB3)
_add("resnet34", "bt_in1k", 76.480, TT)
_add("resnet34", "tv_in1k", 73.314, TV)  # torchvision's published figure
_add("resnet34", "gluon_in1k", 74.578, GLUON)
_add("resnet34d", "ra2_in1k", 78.436, TT, default=True)
_add("resnet50", "a1_in1k", 81.214, RSB, default=True)
_add("resnet50", "a1h_in1k", 80.676, RSB, input_size=176, crop_pct=0.9, eval_size=224)
_add("resnet50", "a2_in1k", 80.772, RSB)
_add("resnet50", "a3_in1k", 78.048, RSB3)
_add("resnet50", "b1k_in1k", 80.706, RSB)
_add("resnet50", "b2k_in1k", 80.454, RSB)
_add("resnet50", "c1_in1k", 80.912, RSB)
_add("resnet50", "c2_in1k", 80.870, RSB)
_add("resnet50", "d_in1k", 80.972, RSB)
_add("resnet50", "ram_in1k", 79.976, TT)
_add("resnet50", "am_in1k", 78.998, GLUON)  # AugMix: bicubic, crop 0.875
_add("resnet50", "ra_in1k", 79.836, TT)
_add("resnet50", "bt_in1k", 79.640, TT)
_add("resnet50", "tv_in1k", 76.130, TV)
_add("resnet50", "tv2_in1k", 80.850, TV2)
_add("resnet50", "gluon_in1k", 77.580, GLUON)
_add("resnet50", "fb_ssl_yfcc100m_ft_in1k", 79.234, FB)
_add("resnet50", "fb_swsl_ig1b_ft_in1k", 81.182, FB)
_add("resnet50d", "ra2_in1k", 81.356, TT, default=True)
_add("resnet50d", "a1_in1k", 81.450, RSB)
_add("resnet50d", "a2_in1k", 81.164, RSB)
_add("resnet50d", "a3_in1k", 78.722, RSB3)
_add("resnet50d", "gluon_in1k", 79.078, GLUON)
_add("resnet101", "a1h_in1k", 82.778, RSB, default=True)
_add("resnet101", "a1_in1k", 82.322, RSB)
_add("resnet101", "a2_in1k", 82.236, RSB)
_add("resnet101", "a3_in1k", 79.814, RSB3)
_add("resnet101", "tv_in1k", 77.376, TV)
_add("resnet101", "tv2_in1k", 81.890, TV2)
_add("resnet101", "gluon_in1k", 79.310, GLUON)
_add("resnet101d", "ra2_in1k", 83.016, TT, input_size=256, crop_pct=0.95, eval_size=320,
     eval_crop=1.0, default=True)
_add("resnet101d", "gluon_in1k", 80.426, GLUON)
_add("resnet152", "a1h_in1k", 83.450, RSB, default=True)
_add("resnet152", "a1_in1k", 82.732, RSB)
_add("resnet152", "a2_in1k", 82.608, RSB)
_add("resnet152", "a3_in1k", 80.546, RSB3)
_add("resnet152", "tv_in1k", 78.322, TV)
_add("resnet152", "tv2_in1k", 82.288, TV2)
_add("resnet152", "gluon_in1k", 79.694, GLUON)
_add("resnext50_32x4d", "a1h_in1k", 82.014, RSB, default=True)
_add("resnext50_32x4d", "a1_in1k", 81.466, RSB)
_add("resnext50_32x4d", "a2_in1k", 81.304, RSB)
_add("resnext50_32x4d", "a3_in1k", 79.268, RSB3)
_add("resnext50_32x4d", "ra_in1k", 80.698, TT)
_add("resnext50_32x4d", "tv_in1k", 77.618, TV)
_add("resnext50_32x4d", "tv2_in1k", 81.182, TV2)
_add("resnext50_32x4d", "gluon_in1k", 79.360, GLUON)
_add("resnext50_32x4d", "fb_ssl_yfcc100m_ft_in1k", 80.338, FB)
_add("resnext50_32x4d", "fb_swsl_ig1b_ft_in1k", 82.174, FB)
_add("resnext101_32x8d", "tv2_in1k", 82.832, TV2, default=True)
_add("resnext101_32x8d", "tv_in1k", 79.310, TV)
_add("resnext101_32x8d", "fb_wsl_ig1b_ft_in1k", 82.698, FB)
_add("resnext101_32x8d", "fb_ssl_yfcc100m_ft_in1k", 81.606, FB)
_add("resnext101_32x8d", "fb_swsl_ig1b_ft_in1k", 84.302, FB)
_add("resnext101_64x4d", "c1_in1k", 83.156, RSB, default=True)
_add("resnext101_64x4d", "tv_in1k", 82.992, TV)
_add("resnext101_64x4d", "gluon_in1k", 80.600, GLUON)
_add("wide_resnet50_2", "racm_in1k", 82.280, TT, default=True)
_add("wide_resnet50_2", "tv_in1k", 78.480, TV)
_add("wide_resnet50_2", "tv2_in1k", 81.606, TV2)
_add("wide_resnet101_2", "tv2_in1k", 82.498, TV2, default=True)
_add("wide_resnet101_2", "tv_in1k", 78.838, TV)
_add("seresnet50", "a1_in1k", 81.102, RSB, default=True)
_add("seresnet50", "a2_in1k", 81.106, RSB)
_add("seresnet50", "a3_in1k", 77.028, RSB3)
_add("seresnet50", "ra2_in1k", 81.284, TT)
_add("seresnext50_32x4d", "racm_in1k", 82.196, TT, default=True)
_add("seresnext50_32x4d", "gluon_in1k", 79.910, GLUON)
_add("seresnext101_32x4d", "gluon_in1k", 80.892, GLUON, default=True)
# timm's ResNetV2 (pre-activation, BatchNorm): Inception mean/std, i.e. inputs in [-1, 1].
_add("resnetv2_50", "a1h_in1k", 81.398, RSB, mode="tf", default=True)
_add("resnetv2_101", "a1h_in1k", 83.002, RSB, mode="tf", default=True)
# ResNet-RS, ported by timm from the TensorFlow TPU ResNet-RS checkpoints. No separate test crop:
# evaluated at test_input_size with crop_pct.
RS = dict(license=APACHE, interpolation="bicubic")
for _d, _top1, _size, _crop, _eval in ((50, 79.934, 160, 0.91, 224), (101, 82.288, 192, 0.94, 288),
                                       (152, 83.710, 256, 1.0, 320), (200, 84.448, 256, 1.0, 320),
                                       (270, 84.438, 256, 1.0, 352), (350, 84.710, 288, 1.0, 384),
                                       (420, 85.010, 320, 1.0, 416)):
    _add(f"resnetrs{_d}", "tf_in1k", _top1, RS, input_size=_size, crop_pct=_crop, eval_size=_eval,
         eval_crop=_crop, default=True)
# BiT (Google's checkpoints, timm/models/resnetv2.py): Inception mean/std; ImageNet-21k
# pre-training fine-tuned on ImageNet-1k at 448 (152x4: 480), or distilled at 224. The
# ImageNet-21k-only tags (21,843 classes) have no ImageNet-1k top-1 and are not listed.
BIT = dict(license=APACHE, mode="tf", input_size=448, crop_pct=1.0, eval_size=448, eval_crop=1.0)
BIT224 = dict(license=APACHE, mode="tf", interpolation="bicubic")
_add("resnetv2_50x1_bit", "goog_distilled_in1k", 82.820, BIT224, default=True)
_add("resnetv2_50x1_bit", "goog_in21k_ft_in1k", 80.386, BIT)
_add("resnetv2_50x3_bit", "goog_in21k_ft_in1k", 83.982, BIT, default=True)
_add("resnetv2_101x1_bit", "goog_in21k_ft_in1k", 82.332, BIT, default=True)
_add("resnetv2_101x3_bit", "goog_in21k_ft_in1k", 84.430, BIT, default=True)
_add("resnetv2_152x2_bit", "goog_teacher_in21k_ft_in1k", 82.918, BIT224, default=True)
_add("resnetv2_152x2_bit", "goog_teacher_in21k_ft_in1k_384", 83.858, BIT224, input_size=384,
     crop_pct=1.0, eval_size=384, eval_crop=1.0)
_add("resnetv2_152x2_bit", "goog_in21k_ft_in1k", 84.468, BIT)
_add("resnetv2_152x4_bit", "goog_in21k_ft_in1k", 84.936, BIT, input_size=480, eval_size=480,
     default=True)
# ECA-ResNet-D (Alibaba MIIL) and ResNet-Blur (timm); the other resnetblur* have no weights.
_add("ecaresnet50d", "miil_in1k", 81.648, TT, default=True)
_add("ecaresnet101d", "miil_in1k", 83.006, TT, default=True)
_add("resnetblur50", "bt_in1k", 80.248, TT, default=True)

# Keras Applications (top-1 from the keras.io applications table; input 224, no published crop).
# v1 files are Kaiming He's Caffe ResNets (MIT licence) converted by the Keras team; v2 files
# were trained by the Keras team. Both are distributed with Keras under Apache-2.0.
for _name, _top1 in (("resnet50", 74.9), ("resnet101", 76.4), ("resnet152", 76.6),
                     ("resnet50v2", 76.0), ("resnet101v2", 77.2), ("resnet152v2", 78.0)):
    _v2 = _name.endswith("v2")
    _entry = Pretrained(
        model=f"keras_{_name}", tag="imagenet", source="keras",
        license="apache-2.0 (v1: MIT, ported from Kaiming He's Caffe models)" if not _v2
        else "apache-2.0", top1=_top1, mode="tf" if _v2 else "caffe", default=True,
        files=((f"{_name}_weights_tf_dim_ordering_tf_kernels.h5", KERAS_MD5[_name][0]),
               (f"{_name}_weights_tf_dim_ordering_tf_kernels_notop.h5", KERAS_MD5[_name][1])),
    )
    TABLE[_entry.name] = _entry
