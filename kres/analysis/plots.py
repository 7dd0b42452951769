"""Figures for the measurements: each ``plot_*`` draws what its function returned and returns a
matplotlib ``Figure`` (not attached to pyplot, so nothing accumulates; a notebook shows the
figure when it is a cell's last expression, ``fig.savefig(path)`` writes it).

Each takes one result, or a dict ``{label: result}`` to compare models on one figure.
"""

from __future__ import annotations

import numpy as np


def plot_gradient_flow(results, title="Gradient norm per unit, stem to head"):
    """Two panels: dL/d(unit output) and dL/d(unit kernels) against unit index (log scale).

    >>> plot_gradient_flow({"plain56": gradient_flow(plain, x, y),
    ...                     "resnet56": gradient_flow(resnet, x, y)}).savefig("flow.png")
    """
    fig, axes = _figure(2, title)
    for label, r in _labelled(results).items():
        index = np.arange(1, len(r["units"]) + 1)
        axes[0].semilogy(index, r["output_norms"], label=f"{label} (first/last {r['output_ratio']:.3g})")
        axes[1].semilogy(index, r["kernel_norms"], label=f"{label} (first/last {r['kernel_ratio']:.3g})")
    _decorate(axes[0], "unit", "||dL / d unit output||")
    _decorate(axes[1], "unit", "||dL / d unit kernels||")
    return fig


def plot_residual_ratios(results, title="Residual ratio ||h F(x)|| / ||a x|| per unit"):
    """Ratio of branch to shortcut against unit index (log scale)."""
    fig, (ax,) = _figure(1, title)
    for label, r in _labelled(results).items():
        ax.semilogy(np.arange(1, len(r["units"]) + 1), r["ratios"], marker=".", label=label)
    _decorate(ax, "unit", "||h F(x)|| / ||a x||")
    return fig


def plot_lipschitz(results, title="Lipschitz bounds against measured sensitivity"):
    """Left: per unit, the layer-product bound, the Jacobian norm and the measured sensitivity.
    Right: the same for the whole network, with the gradient-direction sensitivity."""
    fig, axes = _figure(2, title)
    labelled = _labelled(results)
    styles = (("unit_bounds", "-", "bound"), ("unit_jacobian_norms", "--", "Jacobian norm"),
              ("unit_sensitivity", ":", "sensitivity (random d)"))
    measures = (("bound", "bound"), ("jacobian_norm", "Jacobian norm"),
                ("sensitivity_gradient", "gradient d"), ("sensitivity_random", "random d"))
    width = 0.8 / len(labelled)
    for i, (label, r) in enumerate(labelled.items()):
        color = f"C{i}"
        index = np.arange(1, len(r["units"]) + 1)
        for key, style, name in styles:
            axes[0].semilogy(index, r[key], style, color=color, label=f"{label}: {name}")
        values = [float(np.max(r[key])) for key, _ in measures]  # the largest over the images
        axes[1].bar(np.arange(len(measures)) + i * width, values, width, color=color, log=True,
                    label=label)
    axes[1].set_xticks(np.arange(len(measures)) + 0.4 - width / 2, [m for _, m in measures])
    _decorate(axes[0], "unit", "gain")
    _decorate(axes[1], "", "gain of the whole network (max over images)")
    return fig


def plot_ode_convergence(results, title="Outputs converge as depth L grows with step h = 1/L"):
    """Distance of each depth's outputs to the deepest network's, log-log, with a 1/L guide."""
    fig, (ax,) = _figure(1, title)
    for label, r in _labelled(results).items():
        depths, distances = r["depths"][:-1], r["distances"][:-1]
        ax.loglog(depths, distances, marker="o", label=f"{label}: to L={r['depths'][-1]}")
        ax.loglog(r["depths"][1:], r["changes"], marker="x", linestyle=":",
                  label=f"{label}: to the previous L")
        ax.loglog(depths, distances[0] / depths, color="grey", linewidth=0.8)
    ax.plot([], [], color="grey", linewidth=0.8, label="slope 1/L (Euler's method)")
    _decorate(ax, "units L (step h = 1/L)", "relative output distance")
    return fig


def _labelled(results):
    if isinstance(results, dict) and "units" not in results and "depths" not in results:
        return results
    return {results["model"]: results}


def _figure(panels, title):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * panels, 4), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    fig.suptitle(title)
    return fig, axes


def _decorate(ax, xlabel, ylabel):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
