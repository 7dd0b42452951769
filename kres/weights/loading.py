"""Putting checkpoint arrays into a kres model: every shape is checked before anything is
assigned, so a checkpoint either loads whole (with the transfer-learning exceptions it announces)
or not at all."""

import os
import sys

import numpy as np

from kres.errors import KresError
from kres.files import load_keras_archive
from kres.weights import fetch, torch_names
from kres.weights.table import TABLE

WEIGHT_SUFFIXES = (".keras", ".weights.h5", ".h5", ".safetensors")


def say(model, message):
    """Tells the user (stderr) and records the message on ``model.kres_weights["notes"]``."""
    print(f"kres: {message}", file=sys.stderr)
    model.kres_weights.setdefault("notes", []).append(message)


# ---------------------------------------------------------------------------------------------
# Which checkpoint


def pretrained_info(name, weights="imagenet"):
    """The table entry (a :class:`Pretrained`) meant by ``weights`` for the model ``name``:
    ``"imagenet"`` (the default tag), a tag (``"a1_in1k"``), ``"resnet50.a1_in1k"`` or
    ``"timm/resnet50.a1_in1k"``."""
    tags = sorted(e.tag for e in TABLE.values() if e.model == name)
    text = weights[len("timm/"):] if weights.startswith("timm/") else weights
    model, _, tag = text.rpartition(".")
    if model and model != name:
        raise KresError(f"weights {weights!r} are for model {model!r}, not {name!r}; build "
                        f"{model!r} or pick one of {name!r}'s tags: {', '.join(tags) or 'none'}")
    if tag == "imagenet":
        defaults = [e for e in TABLE.values() if e.model == name and e.default]
        if not defaults:
            raise KresError(
                f"no pretrained weights for model {name!r}; models with weights: "
                f"{', '.join(sorted({e.model for e in TABLE.values()}))}")
        return defaults[0]
    entry = TABLE.get(f"{name}.{tag}")
    if entry is None:
        raise KresError(f"invalid weights {weights!r} for model {name!r}: accepted are None, "
                        f"'imagenet', a path to a {'/'.join(WEIGHT_SUFFIXES)} file, or one of "
                        f"the tags {', '.join(tags) if tags else '(none: no pretrained weights)'}")
    return entry


# ---------------------------------------------------------------------------------------------
# Readers


def read_safetensors(path):
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001 - SafetensorError, truncated headers, ...
        raise KresError(f"cannot read the safetensors file {path!r}: {e}") from None


def read_legacy_h5(path):
    """A Keras 2 style ``.h5`` weights file (as Keras Applications publish) as
    ``{layer name: {weight name: array}}``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            out = {}
            for lname in root.attrs["layer_names"]:
                lname = lname.decode() if isinstance(lname, bytes) else str(lname)
                group = root[lname]
                names = [n.decode() if isinstance(n, bytes) else str(n)
                         for n in group.attrs.get("weight_names", [])]
                if names:
                    out[lname] = {n.split("/")[-1].split(":")[0]: np.asarray(group[n])
                                  for n in names}
            return out
    except (OSError, KeyError) as e:
        raise KresError(f"cannot read the Keras weights file {path!r}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Planning and assigning


def _h5_arrays(layer, groups):
    if layer.name not in groups:
        raise KresError(f"the weights file has no layer {layer.name!r}; it is not a file of "
                        f"this architecture")
    group = groups[layer.name]
    items = []
    for var in layer.weights:
        vname = var.name.split("/")[-1].split(":")[0]
        if vname not in group:
            raise KresError(f"the weights file has no weight {layer.name}/{vname}")
        items.append((var, group[vname], f"{layer.name}/{vname}"))
    return items


def assign(model, arrays_for_layer, keys, origin, shown=lambda k, v: tuple(v.shape)):
    """Checks every weight of ``model`` against the checkpoint, then assigns them all.

    ``arrays_for_layer(layer)`` gives ``[(variable, array in Keras layout, key)]``; ``keys`` are
    all the checkpoint's keys (unused ones are an error); ``shown(key, array)`` is the shape to
    print for a key. The classifier is skipped when its shape differs (another num_classes), the
    stem convolution adapted when the input has other than 3 channels; both are announced.
    """
    plan, used, notes = [], set(), []
    layers = [layer for layer in model.layers if layer.weights]
    has_top = any(layer.name == torch_names.CLASSIFIER for layer in layers)
    for layer in layers:
        items = arrays_for_layer(layer)
        used.update(key for _, _, key in items)
        layer_plan = []
        for var, value, key in items:
            want = tuple(var.shape)
            if tuple(value.shape) == want:
                layer_plan.append((var, value))
                continue
            if (layer.name in torch_names.STEM_CONVS and value.ndim == 4 and value.shape[2] == 3
                    and value.shape[:2] + value.shape[3:] == want[:2] + want[3:]):
                layer_plan.append((var, torch_names.adapt_input_conv(value, want[2])))
                how = "summed over RGB" if want[2] == 1 else f"repeated, scaled by 3/{want[2]}"
                notes.append(f"adapted {layer.name!r} from 3 input channels to {want[2]} ({how})")
                continue
            if layer.name == torch_names.CLASSIFIER:
                layer_plan = None
                notes.append(f"not loading the classifier {layer.name!r}: the checkpoint has "
                             f"{value.shape[-1]} classes, the model {want[-1]}; it keeps its "
                             f"random initialisation (everything else is loaded)")
                break
            raise KresError(
                f"{origin} does not fit {model.name!r}: checkpoint parameter {key!r} has shape "
                f"{shown(key, value)} (Keras layout {tuple(value.shape)}) but kres layer "
                f"{layer.name!r} needs {var.name} of shape {want}")
        plan.extend(layer_plan or [])
    unused = sorted(k for k in keys if k not in used and not k.endswith("num_batches_tracked"))
    if not has_top:
        head = [k for k in unused if k.split(".")[0] in ("fc", "head") or k.startswith(
            torch_names.CLASSIFIER + "/")]
        unused = [k for k in unused if k not in head]
        if head:
            notes.append("the checkpoint's classifier is not used (the model has no top)")
    if unused:
        raise KresError(f"{origin} does not fit {model.name!r}: {len(unused)} checkpoint "
                        f"parameters have no place in the model, first {unused[0]!r} "
                        f"(all: {', '.join(unused[:8])}{' ...' if len(unused) > 8 else ''})")
    for var, value in plan:
        var.assign(np.asarray(value, dtype=var.dtype))
    model.kres_weights["assigned"] = len(plan)
    for note in notes:
        say(model, note)
    return model


def load_state_dict(model, spec, state, origin):
    """Loads a timm / torchvision state dict (name -> NumPy array) into a kres model."""
    if spec is None or torch_names.scheme(spec) is None:
        raise KresError(f"{origin}: timm/torchvision checkpoints load into the ImageNet ResNets "
                        f"(resnet*, resnet*d, resnext*, wide_resnet*, seresnet*, resnetrs*, "
                        f"ecaresnet*, resnetblur*, resnetv2_*), not into "
                        f"{getattr(spec, 'name', model.name)!r}")

    def arrays(layer):
        prefix = torch_names.torch_prefix(layer.name, spec)
        if prefix is None:
            raise KresError(f"kres layer {layer.name!r} has no timm/torchvision counterpart")
        return torch_names.layer_arrays(layer, prefix, state)

    return assign(model, arrays, set(state), origin,
                  shown=lambda key, value: tuple(np.shape(state[key])))


def load_legacy_h5(model, path, origin=None):
    """A Keras 2 style ``.h5`` file: matched by layer name, or, when the names differ but the
    number of layers with weights is the same, by position (what ``model.load_weights`` does
    with such files, and how keras.applications loads its own)."""
    return load_groups(model, read_legacy_h5(path), origin or repr(path))


def load_groups(model, groups, origin):
    """``{layer name: {weight name: array}}`` into ``model``: by layer name, or by position when
    the names differ but the number of layers with weights is the same."""
    ours = [layer.name for layer in model.layers if layer.weights]
    if not set(ours) <= set(groups) and len(ours) == len(groups):
        groups = dict(zip(ours, groups.values()))  # dicts keep the file's layer order
        model.kres_weights["matched"] = "by position"
    missing = [name for name in ours if name not in groups]
    if missing:
        raise KresError(f"{origin} does not fit {model.name!r}: it has no layer {missing[0]!r} "
                        f"({len(missing)} of the model's {len(ours)} layers with weights are "
                        "missing); it is not a file of this architecture")
    keys = {f"{layer}/{w}" for layer, ws in groups.items() for w in ws}
    return assign(model, lambda layer: _h5_arrays(layer, groups), keys, origin)


def load_keras_file(model, path):
    """``.weights.h5`` files of the same architecture (Keras' own loader); ``.keras`` files
    layer by layer, so that a model with another number of classes or input channels takes
    everything else (the classifier re-initialised, the stem adapted; both announced)."""
    if path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except ValueError as e:
            raise KresError(f"weights file {path!r} does not fit {model.name!r}: {e}") from None
        return model
    source = load_keras_archive(path)  # kres.models, which loads weights, registered its layers
    groups = {layer.name: {v.name: np.asarray(v) for v in layer.weights}
              for layer in source.layers if layer.weights}
    return load_groups(model, groups, f"weights file {path!r}")


def load_pretrained(model, spec, entry):
    """Fetches, verifies and loads one table entry."""
    has_top = any(layer.name == torch_names.CLASSIFIER for layer in model.layers)
    origin = f"pretrained weights {entry.name}"
    model.kres_weights.update(tag=entry.tag, name=entry.name, source=entry.source)
    if entry.source == "keras":
        path = fetch.keras_file(entry, include_top=has_top)
        model.kres_weights["file"] = path
        try:
            return load_legacy_h5(model, path, origin)
        except KresError as e:
            if "cannot read" in str(e):  # verified yet unreadable: do not keep it either
                fetch.discard(path)
            raise
    path = fetch.hub_file(entry)
    model.kres_weights["file"] = path
    try:
        state = read_safetensors(path)
    except KresError:
        fetch.discard(os.path.realpath(path), path)
        raise
    return load_state_dict(model, spec, state, origin)


def load_into(model, weights, spec=None):
    """Loads ``weights`` into ``model`` in place and returns it.

    ``weights``: a path to a ``.keras`` / ``.weights.h5`` file of the same architecture, a Keras
    2 style ``.h5`` file (by layer name, else by position), a ``.safetensors`` file with
    timm/torchvision parameter names, ``"imagenet"`` (the model's default pretrained tag) or a tag
    from :func:`kres.list_pretrained` (``"a1_in1k"``, ``"resnet50.a1_in1k"``).
    What was loaded is recorded in ``model.kres_weights``.
    """
    spec = spec if spec is not None else getattr(model, "kres_spec", None)
    if not isinstance(weights, (str, os.PathLike)):
        raise KresError(f"invalid weights {weights!r}: accepted are None, 'imagenet', a "
                        f"pretrained tag (kres.list_pretrained()) or a path to a "
                        f"{'/'.join(WEIGHT_SUFFIXES)} file")
    text = os.fspath(weights)
    # a plain dict (Keras would wrap an attribute dict in a tracking structure)
    object.__setattr__(model, "kres_weights", {"weights": text})
    if text.endswith(WEIGHT_SUFFIXES):
        if not os.path.isfile(text):
            raise KresError(f"weights file not found: {text!r}")
        model.kres_weights.update(source="file", file=text)
        if text.endswith((".keras", ".weights.h5")):
            return load_keras_file(model, text)
        if text.endswith(".h5"):
            return load_legacy_h5(model, text)
        return load_state_dict(model, spec, read_safetensors(text), repr(text))
    name = spec.name if spec is not None else model.name
    entry = pretrained_info(name, text)
    if text == "imagenet" and entry.source == "timm":
        say(model, f"weights='imagenet' for {name!r} loads timm's {entry.name!r} "
            f"({entry.top1:.1f}% top-1 at {entry.eval_size}px, licence {entry.license})")
    return load_pretrained(model, spec, entry)
