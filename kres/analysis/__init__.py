"""What a residual network costs, and why it trains, measured.

Counting (``counting``): parameters, multiply-accumulates, feature levels, :func:`model_info`.

Dynamics, on any kres model (residual, plain twin or ``keras_*``), whose units are found from
its own ``conv{stage}_block{n}_*`` layer names (``units``):

- :func:`gradient_flow`: the loss gradient's norm at each unit's output and kernels;
- :func:`residual_ratios`: ``||h F(x)|| / ||a x||`` per unit on real inputs;
- :func:`lipschitz`: per-unit and network upper bounds, Jacobian norms and measured sensitivity;
- :func:`ode_convergence`: the same network at depths L with step 1/L, converging as L grows;
- :func:`lesion`: the error with units deleted, one at a time and at random (Veit et al. 2016);
- :func:`refinement`: the cosine between each unit's ``F(x)`` and ``-dL/dx`` (Jastrzebski et
  al. 2018);
- :func:`feature_rank`: the effective rank of each unit's outputs over a batch;
- :func:`robustness`: accuracy under FGSM and PGD attacks of growing epsilon.

Each returns plain data (dicts of NumPy arrays, lists and floats) and has a ``plot_*`` companion
that returns a matplotlib figure. ``gradient_flow`` and ``lipschitz`` take gradients with
TensorFlow (``tf.GradientTape``) and need its backend; ``refinement`` and ``robustness`` take
them on TensorFlow or JAX (``chain.value_and_gradient``); the rest runs on any backend.

>>> x, y = kres.data.arrays("digits", "train", limit=64)
>>> model = kres.build("resnet56", input_shape=(32, 32, 1), include_preprocessing=True)
>>> plot_gradient_flow(gradient_flow(model, x, y))
"""

from kres.analysis.counting import count_macs, count_params, describe, model_info
from kres.analysis.dynamics import gradient_flow, residual_ratios
from kres.analysis.bounds import conv_gain, jacobian_norm, layer_gain, lipschitz, sensitivity
from kres.analysis.lesion import lesion
from kres.analysis.ode import ode_convergence
from kres.analysis.plots import (plot_feature_rank, plot_gradient_flow, plot_lesion,
                                 plot_lipschitz, plot_ode_convergence, plot_refinement,
                                 plot_residual_ratios, plot_robustness)
from kres.analysis.representations import effective_rank, feature_rank, refinement
from kres.analysis.robustness import robustness
from kres.analysis.units import ResidualUnit, find_units

__all__ = ["count_macs", "count_params", "describe", "model_info",
           "gradient_flow", "residual_ratios", "lipschitz", "ode_convergence", "find_units",
           "ResidualUnit", "layer_gain", "conv_gain", "jacobian_norm", "sensitivity",
           "plot_gradient_flow", "plot_residual_ratios", "plot_lipschitz", "plot_ode_convergence",
           "lesion", "refinement", "feature_rank", "effective_rank", "robustness", "plot_lesion",
           "plot_refinement", "plot_feature_rank", "plot_robustness"]
