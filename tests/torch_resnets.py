"""Test-only PyTorch reference networks with timm's / torchvision's exact parameter names
(timm/models/resnet.py ``ResNet``, timm/models/resnetv2.py ``ResNetV2``), random weights, saved
as safetensors the way the Hub stores them. timm itself is not a dependency."""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import randomise


def _divisible(v, divisor=8):  # timm's make_divisible with round_limit=0 (its SEModule)
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class SE(nn.Module):
    def __init__(self, channels):
        super().__init__()
        rd = _divisible(channels / 16)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.fc2 = nn.Conv2d(rd, channels, 1)

    def forward(self, x):
        s = F.relu(self.fc1(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.fc2(s))


class Basic(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample, groups=1, base_width=64, se=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SE(planes) if se else None
        self.downsample = downsample

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        y = self.se(y) if self.se is not None else y
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, groups=1, base_width=64, se=False):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.se = SE(planes * 4) if se else None
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        y = self.se(y) if self.se is not None else y
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """timm ``ResNet`` / torchvision ``ResNet`` naming: conv1, bn1, layer1..4, fc."""

    def __init__(self, block, layers, groups=1, base_width=64, deep_stem=False, stem_width=64,
                 avg_down=False, se=False, num_classes=1000):
        super().__init__()
        if deep_stem:
            w = stem_width
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                nn.Conv2d(w, 2 * w, 3, 1, 1, bias=False))
            inplanes = 2 * w
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            inplanes = 64
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride, out = (1 if i == 0 else 2), planes * block.expansion
            down = None
            if stride != 1 or inplanes != out:
                if avg_down:
                    pool = nn.Identity() if stride == 1 else nn.AvgPool2d(
                        2, stride, ceil_mode=True, count_include_pad=False)
                    down = nn.Sequential(pool, nn.Conv2d(inplanes, out, 1, bias=False),
                                         nn.BatchNorm2d(out))
                else:
                    down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False),
                                         nn.BatchNorm2d(out))
            blocks = []
            for b in range(n):
                blocks.append(block(inplanes, planes, stride if b == 0 else 1,
                                    down if b == 0 else None, groups, base_width, se))
                inplanes = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


class BatchNormAct2d(nn.BatchNorm2d):  # timm's: BN then ReLU, BN's parameter names
    def forward(self, x):
        return F.relu(super().forward(x))


class DownsampleConv(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        return self.conv(x)


class PreActBottleneck(nn.Module):
    def __init__(self, cin, cout, stride, project):
        super().__init__()
        mid = cout // 4
        self.downsample = DownsampleConv(cin, cout, stride) if project else None
        self.norm1 = BatchNormAct2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = BatchNormAct2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.norm3 = BatchNormAct2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)

    def forward(self, x):
        xp = self.norm1(x)
        shortcut = self.downsample(xp) if self.downsample is not None else x
        return self.conv3(self.norm3(self.conv2(self.norm2(self.conv1(xp))))) + shortcut


class Stage(nn.Module):
    def __init__(self, cin, cout, stride, depth):
        super().__init__()
        self.blocks = nn.Sequential(*[
            PreActBottleneck(cin if b == 0 else cout, cout, stride if b == 0 else 1, b == 0)
            for b in range(depth)])

    def forward(self, x):
        return self.blocks(x)


class Head(nn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.fc = nn.Conv2d(cin, num_classes, 1)  # timm ResNetV2: ClassifierHead(use_conv=True)

    def forward(self, x):
        return self.fc(x.mean((2, 3), keepdim=True)).flatten(1)


class ResNetV2(nn.Module):
    """timm ``ResNetV2`` (resnetv2_50) naming: stem.conv, stages.N.blocks.M.*, norm, head.fc."""

    def __init__(self, layers, num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(3, 64, 7, 2, 3, bias=False))
        self.stem.add_module("pool", nn.MaxPool2d(3, 2, 1))
        self.stages = nn.Sequential(*[
            Stage(cin, cout, 1 if i == 0 else 2, d) for i, (cin, cout, d) in enumerate(
                zip((64, 256, 512, 1024), (256, 512, 1024, 2048), layers))])
        self.norm = BatchNormAct2d(2048)
        self.head = Head(2048, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.stages(self.stem(x))))


FACTORIES = {
    "resnet18": lambda: ResNet(Basic, (2, 2, 2, 2)),
    "resnet18d": lambda: ResNet(Basic, (2, 2, 2, 2), deep_stem=True, stem_width=32,
                                avg_down=True),
    "resnet34": lambda: ResNet(Basic, (3, 4, 6, 3)),
    "resnet50": lambda: ResNet(Bottleneck, (3, 4, 6, 3)),
    "resnet50d": lambda: ResNet(Bottleneck, (3, 4, 6, 3), deep_stem=True, stem_width=32,
                                avg_down=True),
    "resnext50_32x4d": lambda: ResNet(Bottleneck, (3, 4, 6, 3), groups=32, base_width=4),
    "wide_resnet50_2": lambda: ResNet(Bottleneck, (3, 4, 6, 3), base_width=128),
    "seresnet50": lambda: ResNet(Bottleneck, (3, 4, 6, 3), se=True),
    "resnetv2_50": lambda: ResNetV2((3, 4, 6, 3)),
}


def make(name, seed=0):
    """A reference network with random weights and random BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = FACTORIES[name]()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        randomise.torch_norms(net, g)
        for m in net.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        head = net.fc if hasattr(net, "fc") else net.head.fc
        head.weight.mul_(20.0)  # logits of order 10, so that 1e-4 is a demanding tolerance
    return net.eval()


def state_dict(net):
    """The checkpoint as the Hub stores it: name -> NumPy array (with num_batches_tracked)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def save(net, path):
    from safetensors.numpy import save_file

    save_file(state_dict(net), str(path))
    return path


def logits(net, images_nhwc):
    """Runs the torch net on NHWC float images (the kres layout)."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        return net(x).numpy()
