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


def plot_lesion(results, title="Deleting units of a trained network"):
    """Left: test error with each unit deleted alone, against unit index, the intact network's
    error dotted. Right: error against the number of units deleted at random (mean and spread).

    >>> plot_lesion({"plain56": lesion(plain, x, y), "resnet56": lesion(resnet, x, y)})
    """
    fig, axes = _figure(2, title)
    for i, (label, r) in enumerate(_labelled(results).items()):
        color = f"C{i}"
        axes[0].plot(np.arange(1, len(r["units"]) + 1), r["unit_errors"], marker=".",
                     color=color, label=label)
        axes[0].axhline(r["error"], color=color, linestyle=":", linewidth=0.8)
        axes[1].errorbar(r["counts"], r["count_errors"], yerr=r["count_spread"], marker="o",
                         color=color, capsize=3, label=label)
    _decorate(axes[0], "unit deleted", "error")
    _decorate(axes[1], "units deleted at random", "error")
    return fig


def plot_refinement(results, title="Cosine between each unit's F(x) and -dL/dx"):
    """Per measured unit, the median cosine over the images with its inter-quartile range; above
    zero the unit moves its input downhill on the loss."""
    fig, (ax,) = _figure(1, title)
    for i, (label, r) in enumerate(_labelled(results).items()):
        index = np.arange(1, len(r["units"]) + 1)
        measured = np.isfinite(r["medians"])
        low, high = (np.array([np.nanpercentile(c, q) if np.isfinite(c).any() else np.nan
                               for c in r["cosines"]]) for q in (25, 75))
        ax.plot(index[measured], r["medians"][measured], marker=".", color=f"C{i}", label=label)
        ax.fill_between(index[measured], low[measured], high[measured], color=f"C{i}", alpha=0.2)
    ax.axhline(0, color="grey", linewidth=0.8)
    _decorate(ax, "unit", "cos(h F(x), -dL/dx)")
    return fig


def plot_feature_rank(results, title="Effective rank of each unit's outputs over the batch"):
    """Effective rank against unit index, the batch size (the largest rank possible) dashed."""
    fig, (ax,) = _figure(1, title)
    labelled = _labelled(results)
    for label, r in labelled.items():
        ax.plot(np.arange(1, len(r["units"]) + 1), r["ranks"], marker=".", label=label)
    batch = max(r["batch"] for r in labelled.values())
    ax.axhline(batch, color="grey", linestyle="--", linewidth=0.8, label=f"batch ({batch})")
    _decorate(ax, "unit", "effective rank")
    return fig


def plot_robustness(results, title="Accuracy under attack"):
    """Accuracy against epsilon: FGSM solid, PGD dashed, one colour per model."""
    fig, (ax,) = _figure(1, title)
    for i, (label, r) in enumerate(_labelled(results).items()):
        ax.plot(r["epsilons"], r["fgsm"], marker="o", color=f"C{i}", label=f"{label}: FGSM")
        ax.plot(r["epsilons"], r["pgd"], marker="x", linestyle="--", color=f"C{i}",
                label=f"{label}: PGD-{r['steps']}")
    _decorate(ax, "epsilon (pixels, L-infinity)", "accuracy")
    return fig


def _labelled(results):
    """One result (it names its model) or a dict of them by label."""
    if isinstance(results, dict) and isinstance(results.get("model"), str):
        return {results["model"]: results}
    return results


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
