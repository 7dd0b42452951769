"""Input statistics of each preprocessing mode, stated once: what the models' Normalization
layers, ``kres.preprocessing()`` and the pretrained-weight table all read."""

from dataclasses import dataclass


@dataclass(frozen=True)
class PixelStats:
    """Per-channel mean and standard deviation in pixel units (0-255), in RGB order, and the
    channel order the network itself expects after normalising."""

    mean: tuple
    std: tuple
    channel_order: str = "RGB"


MODES = {
    # torchvision / timm ImageNet statistics
    "imagenet": PixelStats((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    # CIFAR-10 training-set statistics
    "cifar": PixelStats((125.31, 122.95, 113.87), (62.99, 62.09, 66.70)),
    # [-1, 1] scaling (Keras "tf" mode; timm's "inception" mean/std)
    "tf": PixelStats((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    # Keras Applications ResNet v1 ("caffe" mode): mean subtraction only, then RGB -> BGR
    "caffe": PixelStats((123.68, 116.779, 103.939), (1.0, 1.0, 1.0), "BGR"),
    "none": PixelStats((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
