"""The PyTorch side of the peer rows: timm (imported so that a torchvision built for another
torch does not stop it) and a PyTorch twin of the CIFAR ResNets, which timm does not have.
The benchmark and the tests share this one copy. Needs torch (and timm for ``import_timm``):
``pip install kres[bench]``."""

from __future__ import annotations

import sys
import types

import torch
from torch import nn
from torch.nn import functional as F


def import_timm():
    """timm, imported even where torchvision's compiled operators cannot load.

    timm imports torchvision. The registry's torchvision 0.28 wheel is a CUDA build (its _C.so
    links libtorch_cuda.so), so beside the CPU build of torch 2.13 its import fails while
    registering kernels for its own operators (``operator torchvision::nms does not exist``),
    which no ResNet uses; it is then imported without those registrations. Raises ImportError
    when timm is not installed."""
    try:
        import timm
    except (RuntimeError, OSError):
        for name in [n for n in sys.modules if n.split(".")[0] in ("timm", "torchvision")]:
            del sys.modules[name]
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[name] = types.ModuleType(name)
        import timm
    return timm


def timm_model(name: str, **kwargs):
    """``timm.create_model(name, pretrained=False, **kwargs)``: timm's own architecture with
    its random initialisation (nothing is downloaded)."""
    return import_timm().create_model(name, pretrained=False, **kwargs)


class CifarBasic(nn.Module):
    """The CIFAR ResNets' basic unit (He et al. 2015): two 3x3 convolutions with BatchNorm and
    an "option A" shortcut (every other pixel, zero channels added front and back), the layers
    of kres' ``basic`` unit over its ``cifar`` shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            front = self.pad // 2
            shortcut = F.pad(shortcut, (0, 0, 0, 0, front, self.pad - front))
        return F.relu(y + shortcut)


class CifarResNet(nn.Module):
    """A CIFAR ResNet of ``depth`` = 6n + 2 layers (resnet20: n = 3): a 3x3 stem of 16
    filters, three stages of 16, 32 and 64 filters (strides 1, 2, 2), global average pooling
    and a linear classifier; the same layers and parameter count as ``kres.build("resnet20")``
    without its preprocessing."""

    def __init__(self, depth=20, in_channels=3, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        units, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(n):
                units.append(CifarBasic(cin, width, stride if b == 0 else 1))
                cin = width
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.units(F.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


# kres names -> how PyTorch users build the same architecture.
CIFAR_DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56, "resnet110": 110}


def twin(name: str, in_channels=3, num_classes=1000):
    """The PyTorch network with the layers of ``kres.build(name)``: timm's model of that name,
    or :class:`CifarResNet` for the CIFAR ResNets."""
    if name in CIFAR_DEPTHS:
        return CifarResNet(CIFAR_DEPTHS[name], in_channels, num_classes)
    return timm_model(name, in_chans=in_channels, num_classes=num_classes)


def trainable_params(net) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def versions() -> dict:
    """{package: version} of the PyTorch side (timm left out where it is not installed)."""
    found = {"torch": torch.__version__}
    try:
        found["timm"] = import_timm().__version__
    except ImportError:
        pass
    return found
