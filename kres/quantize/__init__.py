"""Quantisation-aware training (QAT): fine-tune a trained kres model with simulated int8.

``qat(model, images)`` returns the model's QAT twin: BatchNorm folded into the convolutions,
ReLU fused, weights fake-quantised per output channel (symmetric int8) and every int8 tensor of
the exporters' graphs fake-quantised per tensor (asymmetric int8, ranges from ``images`` and
then a moving average in training). Pure Keras 3: it trains on the TensorFlow and JAX backends.
`kres.export.export` writes its int8 TFLite and ONNX files with the ranges the model holds, without
calibration (`kres.export.qat`); `kres.export.comparison` sets them beside the float model's.

>>> import kres.quantize
>>> x, _ = kres.data.arrays("digits", "train", image_size=32)
>>> q = kres.quantize.qat("runs/digits-resnet20", x[:256])
>>> q.compile(...); q.fit(...)     # or: kres train --qat --out runs/digits-resnet20
"""

from kres.quantize.layers import ActivationQuantizer, QuantConv2D, QuantDense  # noqa: F401
from kres.quantize.observe import observe, quantizers, ranges  # noqa: F401
from kres.quantize.qat import is_qat, qat  # noqa: F401
