"""timm as the test-only PyTorch reference: its own model definitions (``pretrained=False``: nothing
is downloaded) with random weights and random normalisation statistics, saved as the safetensors
state dicts the Hugging Face Hub holds."""

import numpy as np
import pytest

import randomise


def import_timm():
    """timm (through kres' own import of it, which copes with a torchvision built for another
    torch), or a skip when torch or timm is not installed."""
    try:
        from kres.bench.torch_peers import import_timm as library_import

        return library_import()
    except ImportError:
        pytest.skip("timm is not installed (pip install timm)")


def create(name, seed=0, **kwargs):
    """``timm.create_model(name, pretrained=False, **kwargs)`` in eval mode, with random norm
    parameters and statistics and a classifier giving logits of order 10 (so that 1e-4 is a
    demanding tolerance)."""
    import torch
    from torch import nn

    timm = import_timm()
    torch.manual_seed(seed)
    net = timm.create_model(name, pretrained=False, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        randomise.torch_norms(net, g)
        head = net.get_classifier()
        if head.weight.numel():
            fan_in = head.weight[0].numel()
            head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 3 / fan_in ** 0.5)
            head.bias.copy_(torch.randn(head.bias.shape, generator=g) * 0.1)
    return net.eval()


def trainable_params(name, **kwargs):
    import torch

    timm = import_timm()
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        net = timm.create_model(name, pretrained=False, **kwargs)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def state_dict(net):
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def save(net, path):
    from safetensors.numpy import save_file

    save_file(state_dict(net), str(path))
    return str(path)


def run(net, images_nhwc):
    """The torch net on NHWC float images (the kres layout); 4-D outputs come back NHWC."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        y = net(x).numpy()
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y
