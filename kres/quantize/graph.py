"""A trained kres model rewritten as its QAT twin: the graph the int8 converters execute.

Each group of layers that becomes ONE int8 kernel (Conv2D + BatchNorm + ReLU, Add + ReLU, Dense,
the pooling, the input normalisation) becomes one weighted layer (BatchNorm folded, weights
fake-quantised per channel) followed by an :class:`ActivationQuantizer` on the group's output,
which keeps the name of the group's last layer (``conv2_block1_out``, ``predictions``): the
tensors the converters quantise are the tensors QAT quantises. Layers that move values without
changing them (padding, max-pooling, the zero-channel shortcut) keep their input's quantisation,
as TFLite's int8 kernels require. The input normalisation keeps its name (``preprocessing``);
its quantiser is ``preprocessing_quant``.
"""

from __future__ import annotations

import keras

from kres.errors import ConfigError
from kres.models.layers import DropPath, ResidualAdd, ZeroPadChannels
from kres.quantize.fold import fold
from kres.quantize.layers import ActivationQuantizer, QuantConv2D, QuantDense

# Layers that pass int8 values through unchanged (same scale and zero point in and out).
PASS_THROUGH = (keras.layers.ZeroPadding2D, keras.layers.MaxPooling2D, ZeroPadChannels,
                keras.layers.Flatten, keras.layers.Reshape)
# Layers that are the identity at inference.
IDENTITY = (keras.layers.Dropout, DropPath)
# Layers whose output is a new int8 tensor.
REQUANTISED = (keras.layers.GlobalAveragePooling2D,
               keras.layers.AveragePooling2D)
SUPPORTED = ", ".join(["Conv2D (+ BatchNormalization) (+ ReLU)", "Dense", "Add", "ReLU",
                       "Normalization"] + sorted(
    {c.__name__ for c in (*PASS_THROUGH, *IDENTITY, *REQUANTISED)}))


def _is_relu(layer):
    return (isinstance(layer, keras.layers.Activation)
            and getattr(layer.activation, "__name__", "") == "relu") or (
        isinstance(layer, keras.layers.ReLU) and layer.max_value is None
        and not layer.negative_slope and not layer.threshold)


def _is_add(layer):
    return isinstance(layer, keras.layers.Add) or (
        isinstance(layer, ResidualAdd) and layer.alpha == 1.0 and layer.step == 1.0)


def _clone(layer, **changes):
    config = {**layer.get_config(), **changes}
    return type(layer).from_config(config)


class _Graph:
    """The functional model's layers with who reads whose output."""

    def __init__(self, model):
        self.model = model
        self.readers = {}
        for layer in model.layers:
            for node in layer._inbound_nodes:
                for tensor in node.input_tensors:
                    self.readers.setdefault(id(tensor), []).append(layer)
        self.outputs = {id(t) for t in model.outputs}

    def sole_reader(self, layer):
        """The one layer that reads ``layer``'s output, or None (several, or a model output)."""
        output = layer.output
        readers = self.readers.get(id(output), [])
        if len(readers) != 1 or id(output) in self.outputs:
            return None
        return readers[0]


def rewrite(model, *, decay=0.999):
    """The QAT twin of the functional ``model`` (BatchNorm folded, fake quantisation inserted),
    with the trained weights; activation ranges still empty (see :func:`observe`)."""
    graph = _Graph(model)
    tensors = {}  # id of the float model's tensor -> the QAT model's tensor
    absorbed = set()
    inputs = []
    for layer in model.layers:
        if id(layer) in absorbed:
            continue
        if isinstance(layer, keras.layers.InputLayer):
            inputs.append(keras.Input(shape=layer.output.shape[1:], dtype=layer.output.dtype,
                                      name=layer.name))
            tensors[id(layer.output)] = inputs[-1]
            continue
        args = [tensors[id(t)] for t in _only_call(layer).input_tensors]
        group, y = _twin(graph, layer, args, decay)
        absorbed.update(id(l) for l in group)
        tensors[id(group[-1].output)] = y
    outputs = [tensors[id(t)] for t in model.outputs]
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)


def _only_call(layer):
    """The one node of a layer called once."""
    if len(layer._inbound_nodes) != 1:
        raise ConfigError(f"layer {layer.name!r} is used {len(layer._inbound_nodes)} times; "
                          "QAT rewrites models whose layers are each called once")
    return layer._inbound_nodes[0]


def _twin(graph, layer, args, decay):
    """What stands for ``layer`` (and the layers its int8 kernel absorbs) in the QAT model, on
    the QAT tensors ``args``: the group of float layers it replaces and the tensor that stands
    for the group's output."""
    if isinstance(layer, keras.layers.BatchNormalization):
        raise ConfigError(
            f"BatchNormalization {layer.name!r} does not follow a convolution, so no int8 "
            "kernel can absorb it; QAT supports post-activation ResNets (conv -> BN -> "
            "ReLU), not pre-activation ones")
    if type(layer) is keras.layers.Conv2D and layer.groups == 1:
        group, y = _conv(graph, layer, args[0])
    elif type(layer) is keras.layers.Dense:
        group, y = _dense(graph, layer, args[0])
    elif _is_add(layer):
        group, y = _add(graph, layer, args)
    elif isinstance(layer, IDENTITY):
        return [layer], args[0]
    elif isinstance(layer, PASS_THROUGH):  # keeps its input's quantisation
        return [layer], _clone(layer)(args[0])
    elif isinstance(layer, keras.layers.Normalization):
        # keeps its name: exporters read the input normalisation from "preprocessing"
        y = _copy(layer, args[0])
        return [layer], ActivationQuantizer(decay=decay, name=f"{layer.name}_quant")(y)
    elif isinstance(layer, REQUANTISED) or _is_relu(layer):
        group = [layer]
        y = _copy(layer, args[0], name=_op_name(group))
    else:
        raise ConfigError(
            f"layer {layer.name!r} ({type(layer).__name__}) has no int8 equivalent QAT can "
            f"simulate; supported: {SUPPORTED}")
    return group, ActivationQuantizer(decay=decay, name=group[-1].name)(y)


def _conv(graph, layer, x):
    """Conv2D, the BatchNormalization folded into it and the ReLU after: one int8 kernel."""
    bn = graph.sole_reader(layer)
    bn = bn if isinstance(bn, keras.layers.BatchNormalization) and bn.axis in (
        -1, 3, [3], [-1]) else None
    kernel, bias = fold(layer.kernel.numpy(), layer.bias.numpy() if layer.use_bias else None, bn)
    group = [layer] + ([bn] if bn else [])
    relu = _fused_relu(graph, group)
    y = _weighted(QuantConv2D, layer, x, kernel, bias,
                  activation="relu" if relu else "linear", name=_op_name(group))
    return group, y


def _dense(graph, layer, x):
    kernel, bias = fold(layer.kernel.numpy(), layer.bias.numpy() if layer.use_bias else None)
    group = [layer]
    if layer.activation is keras.activations.linear:
        _fused_relu(graph, group)
    return group, _weighted(QuantDense, layer, x, kernel, bias, name=_op_name(group))


def _add(graph, layer, args):
    """Add and the ReLU after it: one int8 kernel."""
    group = [layer]
    _fused_relu(graph, group)
    y = keras.layers.Add(name=_op_name(group))(args)
    if len(group) > 1:
        y = keras.layers.Activation("relu", name=f"{layer.name}_relu")(y)
    return group, y


def _weighted(quant_class, layer, x, kernel, bias, **changes):
    """``layer`` as ``quant_class`` (weights fake-quantised per channel) with the folded
    ``kernel`` and ``bias``, called on ``x``."""
    weighted = quant_class.from_config(_clone(layer, use_bias=True, **changes).get_config())
    y = weighted(x)
    weighted.set_weights([kernel, bias])
    return y


def _copy(layer, x, **changes):
    """A copy of ``layer`` with its weights, called on ``x``."""
    copy = _clone(layer, **changes)
    y = copy(x)
    copy.set_weights(layer.get_weights())
    return y


def _fused_relu(graph, group):
    """Append the ReLU that reads the group's output, if it is the only reader; return it."""
    reader = graph.sole_reader(group[-1])
    if reader is not None and _is_relu(reader):
        group.append(reader)
        return reader
    return None


def _op_name(group):
    """The weighted op's name: its own, unless the group's quantiser (named after the group's
    last layer) takes that name."""
    return group[0].name if len(group) > 1 else f"{group[0].name}_op"
