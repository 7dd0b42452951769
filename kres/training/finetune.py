"""Fine-tuning: which checkpoint a run starts from and which layers stay fixed.

`freeze` names a prefix of the network: ``stem``, ``stages<N`` (the stem and stages 1..N-1; a
stage is one ``conv{N+1}_block*`` group, keras.applications' naming) or ``backbone`` (all but the
classifier). Frozen layers are set ``trainable=False``; a frozen BatchNormalization then also
runs in inference mode, normalising with its moving statistics and never updating them
(Keras 3's BatchNormalization documents this, unlike tf.keras 1.x): the fine-tuning trap where
a "frozen" network keeps changing its statistics does not arise.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

from kres.errors import ConfigError, KresError
from kres.weights.loading import WEIGHT_SUFFIXES, pretrained_info

_STAGES = re.compile(r"^stages<(\d+)$")
_STAGE_LAYER = re.compile(r"^conv(\d+)_block\d+_")
_STEM_LAYER = re.compile(r"^(conv1|pool1)(_|$)")
HEAD_LAYERS = ("predictions", "head_dropout")


def parse_freeze(freeze: str, num_stages: int) -> int:
    """How many stages ``freeze`` fixes: 0 (none), -1 (the stem only), N-1 for ``stages<N``,
    or ``num_stages + 1`` (the backbone: every stage and whatever follows them but the head)."""
    if freeze == "none":
        return 0
    if freeze == "stem":
        return -1
    if freeze == "backbone":
        return num_stages + 1
    match = _STAGES.match(freeze) if isinstance(freeze, str) else None
    if match and 1 <= int(match.group(1)) - 1 <= num_stages:
        return int(match.group(1)) - 1
    raise ConfigError(
        f"freeze={freeze!r} names no part of a model with {num_stages} stages; accepted: none, "
        f"backbone, stem, or stages<N with N from 2 to {num_stages + 1} (the stem and stages "
        f"1..N-1)")


def frozen(model, freeze: str) -> list:
    """The layers of ``model`` that ``freeze`` fixes (those with weights, in model order)."""
    if freeze == "none":
        return []
    spec = getattr(model, "kres_spec", None)
    if spec is None:
        raise ConfigError(f"freeze={freeze!r} needs a kres model (one that knows its stages); "
                          f"{model.name!r} is not, so only freeze='none' applies")
    num_stages = len(spec.depths)
    stages = parse_freeze(freeze, num_stages)
    out = []
    for layer in model.layers:
        if not layer.weights or stages == 0:
            continue
        if layer.name in HEAD_LAYERS or layer.name == "preprocessing":
            continue
        if stages > num_stages or _STEM_LAYER.match(layer.name):
            out.append(layer)
            continue
        match = _STAGE_LAYER.match(layer.name)
        if match and int(match.group(1)) - 1 <= stages:
            out.append(layer)
    return out


def set_frozen(model, freeze: str) -> list[str]:
    """Makes exactly the layers ``freeze`` names non-trainable (every other one trainable);
    returns their names. Recompile afterwards: Keras reads the trainable set at compile time."""
    names = {layer.name for layer in frozen(model, freeze)}
    for layer in model.layers:
        if layer.weights:
            layer.trainable = layer.name not in names
    return sorted(names)


def is_file(weights) -> bool:
    return isinstance(weights, str) and weights.endswith(WEIGHT_SUFFIXES)


def check_weights(model: str, weights: str) -> None:
    """A ConfigError now, before any download or model, for weights that cannot be meant."""
    if not isinstance(weights, str) or not weights:
        raise ConfigError(f"weights={weights!r} is invalid; accepted: a pretrained tag, imagenet, "
                          f"or a path to a {'/'.join(WEIGHT_SUFFIXES)} file")
    if is_file(weights):
        if not os.path.isfile(weights):
            raise ConfigError(f"weights={weights!r}: no such file")
        return
    try:
        pretrained_info(model, weights)
    except KresError as e:
        raise ConfigError(str(e)) from None


def checkpoint_size(model: str, weights: str | None) -> int | None:
    """The square input side a checkpoint was trained at, when it says: a pretrained tag's
    training size, or the input of a ``.keras`` file; None otherwise (take the dataset's)."""
    if weights is None:
        return None
    if not is_file(weights):
        return pretrained_info(model, weights).input_size
    if weights.endswith(".keras"):
        try:
            with zipfile.ZipFile(weights) as z:
                config = json.loads(z.read("config.json"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ConfigError(f"weights={weights!r} is not a readable .keras file: {e}") from None
        for layer in config.get("config", {}).get("layers", []):
            shape = layer.get("config", {}).get("batch_shape")
            if layer.get("class_name") == "InputLayer" and shape and shape[1] == shape[2]:
                return shape[1] if isinstance(shape[1], int) else None
    return None
