"""The SavedModel: the model's inference as a TensorFlow graph, the artifact the TFLite and ONNX
converters start from too."""

from __future__ import annotations

import os

from kres.export.common import io_names


def serving_function(model, named_outputs=False):
    """The model's inference as a tf.function with a named, batch-dynamic input; with
    ``named_outputs`` it returns a dict {output layer name: tensor}."""
    import tensorflow as tf

    input_name, output_names = io_names(model)
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=input_name)

    def serve(images):
        outputs = model(images, training=False)
        if not named_outputs:
            return outputs
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(output_names, outputs))

    return tf.function(serve, input_signature=[spec], autograph=False)


def to_saved_model(model, path):
    """Write ``model`` as a TensorFlow SavedModel directory: signature ``serving_default`` with
    the Keras input's name (``images``) and the output layers' names (``predictions``). Like every
    converter it checks nothing: `kres.export.export` loads it back and compares it with Keras.

    >>> kres.export.to_saved_model(model, "exports/tmp/saved_model")
    """
    import tensorflow as tf

    path = os.fspath(path)
    serve = serving_function(model, named_outputs=True)
    module = tf.Module()
    # Keras' model.export stores every variable twice (Keras' wrapper and the tf.Variable under
    # it): 2.8 MB instead of 1.5 MB for resnet20. Track the tf.Variables once.
    module.weights = [v.value for v in model.variables]
    module.serve = serve
    tf.saved_model.save(module, path,
                        signatures={"serving_default": serve.get_concrete_function()})
    return path
