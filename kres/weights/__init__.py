"""Pretrained weights for kres models: Keras Applications files and timm checkpoints (Hugging Face
Hub), local ``.keras`` / ``.weights.h5`` / ``.h5`` / ``.safetensors`` files, the table of every
(model, tag) with its source, licence, top-1 and preprocessing, and transfer learning.

>>> kres.list_pretrained("resnet50*")[0]["name"]
'resnet50.a1_in1k'
>>> model = kres.build("resnet50", weights="a1_in1k", num_classes=10)  # all but the classifier
"""

import fnmatch

from kres.errors import KresError
from kres.weights.torch_names import adapt_input_conv
from kres.files import file_hash
from kres.weights.fetch import expected_hash
from kres.weights.loading import (WEIGHT_SUFFIXES, load_into, load_state_dict, pretrained_info,
                                  read_safetensors)
from kres.weights.table import TABLE, Pretrained

__all__ = ["list_pretrained", "pretrained_info", "preprocessing_mode", "load_into",
           "load_state_dict", "read_safetensors", "expected_hash", "file_hash",
           "adapt_input_conv", "Pretrained", "TABLE"]


def list_pretrained(pattern="*"):
    """Every (model, tag) kres can load whose ``"model.tag"`` name matches the fnmatch
    ``pattern``, as dicts with the source, licence, published top-1 and preprocessing, sorted by
    model then (default first) top-1.

    >>> [p["name"] for p in kres.list_pretrained("resnet50.tv*")]
    ['resnet50.tv2_in1k', 'resnet50.tv_in1k']
    """
    rows = [e for e in TABLE.values()
            if fnmatch.fnmatch(e.name, pattern) or fnmatch.fnmatch(e.model, pattern)]
    rows.sort(key=lambda e: (e.model, not e.default, -e.top1))
    return [e.as_dict() for e in rows]


def preprocessing_mode(name, weights):
    """The preprocessing mode ("imagenet", "tf", "caffe") of pretrained ``weights`` for model
    ``name``, or None when ``weights`` is not a pretrained tag (a file path, None)."""
    if not isinstance(weights, str) or weights.endswith(WEIGHT_SUFFIXES):
        return None
    try:
        return pretrained_info(name, weights).mode
    except KresError:
        return None
