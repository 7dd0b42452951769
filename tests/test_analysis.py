"""kres.analysis: gradient flow, residual ratios, Lipschitz bounds, the ODE view, lesions,
refinement, feature rank and robustness, on real digits and on cases small enough to check by
hand."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

import kres
import kres.data
from kres.analysis import (conv_gain, effective_rank, feature_rank, find_units, gradient_flow,
                           lesion, lipschitz, ode_convergence, plot_feature_rank,
                           plot_gradient_flow, plot_lesion, plot_lipschitz, plot_ode_convergence,
                           plot_refinement, plot_residual_ratios, plot_robustness, refinement,
                           residual_ratios, robustness)
from kres.analysis.chain import Chain
from kres.analysis.dynamics import classification_loss

GOLDEN = (1 + 5 ** 0.5) / 2  # the largest singular value of [[1, 1], [0, 1]]


def digits_model(name, seed=0, **overrides):
    """``name`` for the digits (32x32x1 raw pixels), with weights drawn from ``seed``."""
    keras.utils.set_random_seed(seed)
    return kres.build(name, input_shape=(32, 32, 1), include_preprocessing=True, **overrides)


@pytest.fixture(scope="module")
def digits():
    return kres.data.arrays("digits", "train", limit=64)


@pytest.fixture(scope="module")
def flows(digits):
    """Gradient flow at initialisation of plain56 and resnet56, on the same 64 digits."""
    return {name: gradient_flow(digits_model(name), *digits) for name in ("plain56", "resnet56")}


@pytest.fixture(scope="module")
def identity_unit(digits):
    """A small pre-activation ResNet (its units add without a ReLU after) whose second unit's
    residual branch is zeroed, so that unit computes y = x exactly."""
    model = digits_model("preact_resnet110", depths=(2, 2, 2))
    conv = model.get_layer("conv2_block2_2_conv")
    conv.kernel.assign(np.zeros(conv.kernel.shape, "float32"))
    return model, lipschitz(model, digits[0][:16])


@pytest.fixture(scope="module")
def linear_network():
    """f(x) = x @ [[1, 1], [0, 1]]: one Dense layer, singular values the golden ratio and its
    inverse."""
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(2, use_bias=False, name="predictions")(inputs)
    model = keras.Model(inputs, outputs, name="linear")
    model.get_layer("predictions").kernel.assign(np.array([[1.0, 1.0], [0.0, 1.0]], "float32"))
    return model


# --- Units, found from the model's own names -----------------------------------------------


def test_units_of_a_resnet_run_stem_to_head():
    units = find_units(kres.build("resnet20"))
    assert [u.name for u in units] == [f"conv{s}_block{b}" for s in (2, 3, 4) for b in (1, 2, 3)]
    assert all(u.residual for u in units)


def test_units_of_a_plain_twin_have_no_shortcut():
    units = find_units(kres.build("plain20"))
    assert len(units) == 9 and not any(u.residual for u in units)


def test_units_of_a_keras_applications_layout_are_found():
    units = find_units(kres.build("keras_resnet50", input_shape=(64, 64, 3)))
    assert len(units) == 16 and all(u.residual for u in units)
    assert (units[0].name, units[-1].name) == ("conv2_block1", "conv5_block3")


def test_a_model_without_units_is_rejected(linear_network, digits):
    with pytest.raises(kres.KresError, match="model 'linear' has no residual units"):
        gradient_flow(linear_network, np.zeros((1, 2)), [0])


# --- Gradient flow at initialisation --------------------------------------------------------


def test_plain56_gradients_spread_far_more_than_resnet56s(flows):
    # Measured (seed 0, 64 digits, BatchNorm on batch statistics): first-unit / last-unit norm
    # of dL/d(unit output) is 6.3e3 for plain56 and 28 for resnet56. With BatchNorm the plain
    # network's gradients grow towards the input rather than vanish.
    assert flows["plain56"]["output_ratio"] > 1e3
    assert flows["resnet56"]["output_ratio"] < 1e2


def test_plain56_kernel_gradients_spread_far_more_than_resnet56s(flows):
    # Measured: 1.7e3 (plain56) and 12 (resnet56) for the unit kernels' gradients.
    assert flows["plain56"]["kernel_ratio"] > 3e2
    assert flows["resnet56"]["kernel_ratio"] < 50


def test_gradient_norms_are_finite_and_positive(flows):
    for flow in flows.values():
        assert len(flow["output_norms"]) == len(flow["kernel_norms"]) == 27
        assert np.all(np.isfinite(flow["output_norms"])) and np.all(flow["output_norms"] > 0)
        assert np.all(np.isfinite(flow["kernel_norms"])) and np.all(flow["kernel_norms"] > 0)


def test_gradient_flow_leaves_the_moving_statistics_alone(digits):
    model = digits_model("resnet20")
    before = [v.numpy() for v in model.non_trainable_variables]
    gradient_flow(model, *digits)
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, model.non_trainable_variables))


def test_images_of_the_wrong_shape_are_rejected(digits):
    model = digits_model("resnet20")
    with pytest.raises(kres.KresError, match=r"images have shape \(64, 32, 32, 3\); model "
                                             r"'resnet20' takes .*\(batch, 32, 32, 1\)"):
        gradient_flow(model, np.zeros((64, 32, 32, 3)), digits[1])


def test_labels_outside_the_classes_are_rejected(digits):
    with pytest.raises(kres.KresError, match=r"integer class indices in \[0, 9\]"):
        gradient_flow(digits_model("resnet20"), digits[0], digits[1] + 10)


# --- Residual ratios ------------------------------------------------------------------------


def test_a_zeroed_branch_has_residual_ratio_zero(identity_unit, digits):
    model, _ = identity_unit
    ratios = residual_ratios(model, digits[0][:16])
    assert ratios["units"][1] == "conv2_block2"
    assert ratios["ratios"][1] == 0.0
    assert np.all(np.delete(ratios["ratios"], 1) > 0)


def test_the_step_size_scales_the_first_units_ratio(digits):
    # y = x + h F(x): the first unit sees the same x at every h, so its ratio is h times.
    full = digits_model("resnet20")
    half = digits_model("resnet20", step_size=0.5)
    half.set_weights(full.get_weights())
    ratio = residual_ratios(full, digits[0])["ratios"][0]
    assert residual_ratios(half, digits[0])["ratios"][0] == pytest.approx(ratio / 2, rel=1e-6)


def test_a_plain_network_has_no_residual_ratio(digits):
    with pytest.raises(kres.KresError, match="model 'plain20' has no residual units"):
        residual_ratios(digits_model("plain20"), digits[0])


# --- Lipschitz bounds and measured sensitivity ----------------------------------------------


def test_an_identity_unit_has_measured_sensitivity_one(identity_unit):
    _, report = identity_unit
    assert report["unit_sensitivity"][1] == pytest.approx(1.0, abs=1e-4)


def test_an_identity_unit_has_jacobian_norm_and_bound_one(identity_unit):
    _, report = identity_unit
    assert report["unit_jacobian_norms"][1] == pytest.approx(1.0, abs=1e-4)
    assert report["unit_bounds"][1] == 1.0


def test_bounds_hold_above_what_is_measured(identity_unit):
    _, r = identity_unit
    assert np.all(r["unit_jacobian_norms"] <= r["unit_bounds"] * (1 + 1e-5))
    assert np.all(r["unit_sensitivity"] <= r["unit_bounds"])
    assert r["jacobian_norm"] <= r["bound"]
    assert np.all(r["sensitivity_gradient"] <= r["bound"])
    assert r["unbounded_layers"] == []


def test_the_network_bound_is_the_product_over_stem_units_and_head(identity_unit):
    _, r = identity_unit
    stem_and_head = r["bound"] / np.prod(r["unit_bounds"])
    assert np.isfinite(stem_and_head) and stem_and_head > 0
    assert r["bound"] == pytest.approx(stem_and_head * np.prod(r["unit_bounds"]), rel=1e-12)


def test_a_linear_layers_bound_is_its_largest_singular_value(linear_network):
    report = lipschitz(linear_network, np.array([[1.0, 2.0], [-3.0, 0.5]]))
    assert report["bound"] == pytest.approx(GOLDEN, rel=1e-6)


def test_power_iteration_finds_a_linear_layers_largest_singular_value(linear_network):
    report = lipschitz(linear_network, np.array([[1.0, 2.0], [-3.0, 0.5]]))
    assert report["jacobian_norm"] == pytest.approx(GOLDEN, rel=1e-5)


def test_a_centre_tap_convolution_has_gain_one():
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)
    conv.build((None, 8, 8, 3))
    kernel = np.zeros((3, 3, 3, 3), "float32")
    kernel[1, 1] = np.eye(3)
    conv.kernel.assign(kernel)
    assert conv_gain(conv, (8, 8)) == pytest.approx(1.0, rel=1e-12)


def test_a_convolutions_bound_is_at_least_its_power_iteration_norm():
    # Measured: 1.849 by power iteration, bound 1.928. The 8x8 zero-padded convolution is a
    # piece of the 10x10 circular one the bound is exact for (at 32x32 the two differ by 0.3%).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, keras.layers.Conv2D(5, 3, padding="same", use_bias=False)(inputs))
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 4))
    measured = lipschitz(model, x, iterations=100)["jacobian_norm"]
    assert measured <= conv_gain(model.layers[1]) <= 1.1 * measured


# --- The ODE view -----------------------------------------------------------------------------


def test_outputs_converge_as_depth_grows_with_step_one_over_depth(digits):
    result = ode_convergence("resnet20", digits[0][:8], depths=(1, 2, 4, 8, 16),
                             include_preprocessing=True)
    assert list(result["step_sizes"]) == [1, 0.5, 0.25, 0.125, 0.0625]
    assert np.all(np.diff(result["changes"]) < 0)
    assert result["distances"][-1] == 0.0


def test_ode_depths_must_increase():
    with pytest.raises(kres.KresError, match=r"invalid depths \[4, 2\]: accepted are at least "
                                             "two increasing positive integers"):
        ode_convergence("resnet20", np.zeros((2, 32, 32, 3)), depths=(4, 2))


def test_a_first_stage_that_changes_width_is_not_an_ode(digits):
    with pytest.raises(kres.KresError, match="model 'resnet50' cannot be built as an ODE stage"):
        ode_convergence("resnet50", np.zeros((2, 32, 32, 3)), depths=(1, 2))


# --- Figures ----------------------------------------------------------------------------------


def test_plot_gradient_flow_draws_one_line_per_model_and_panel(flows):
    fig = plot_gradient_flow(flows)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    outputs, kernels = fig.axes
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]
    np.testing.assert_array_equal(outputs.get_lines()[0].get_ydata(), flows["plain56"]["output_norms"])
    np.testing.assert_array_equal(kernels.get_lines()[1].get_ydata(), flows["resnet56"]["kernel_norms"])


def test_plot_residual_ratios_draws_the_ratios(identity_unit, digits):
    ratios = residual_ratios(identity_unit[0], digits[0][:16])
    line, = plot_residual_ratios(ratios).axes[0].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), ratios["ratios"])


def test_plot_lipschitz_draws_units_and_network(identity_unit):
    fig = plot_lipschitz(identity_unit[1])
    assert len(fig.axes[0].get_lines()) == 3 and len(fig.axes[1].patches) == 4


def test_plot_ode_convergence_draws_distances_on_log_axes(digits):
    result = ode_convergence("resnet20", digits[0][:4], depths=(1, 2, 4),
                             include_preprocessing=True)
    ax = plot_ode_convergence(result).axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), result["distances"][:-1])


# --- Lesions --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lesions(identity_unit, digits):
    return lesion(identity_unit[0], *digits, counts=(0, 1, 6), samples=2)


def test_deleting_a_unit_whose_branch_is_zero_costs_nothing(lesions):
    assert lesions["units"][1] == "conv2_block2"
    assert lesions["unit_errors"][1] == lesions["error"]


def test_routing_the_shortcut_of_a_zero_branch_unit_leaves_the_outputs_alone(identity_unit,
                                                                             digits):
    model, _ = identity_unit
    chain = Chain(model)
    intact = keras.ops.convert_to_numpy(model(digits[0], training=False))
    deleted = keras.ops.convert_to_numpy(chain.run(digits[0], replace={1: "shortcut"}))
    np.testing.assert_array_equal(deleted, intact)
    other = keras.ops.convert_to_numpy(chain.run(digits[0], replace={0: "shortcut"}))
    assert np.abs(other - intact).max() > 1e-3


def test_lesion_counts_run_from_none_to_every_unit(lesions):
    assert list(lesions["counts"]) == [0, 1, 6]
    assert lesions["count_errors"][0] == lesions["error"]
    assert lesions["count_spread"][0] == lesions["count_spread"][-1] == 0.0  # one way each
    assert lesions["deleted_by"] == ["shortcut"] * 6


def test_a_plain_unit_is_skipped_unless_it_changes_the_shape(digits):
    result = lesion(digits_model("plain20"), *digits, counts=(0, 1))
    assert result["deleted_by"] == ["skip"] * 3 + [None, "skip", "skip", None, "skip", "skip"]
    assert np.isnan(result["unit_errors"][[3, 6]]).all()
    assert np.isfinite(np.delete(result["unit_errors"], [3, 6])).all()


def test_lesion_counts_beyond_the_deletable_units_are_rejected(identity_unit, digits):
    with pytest.raises(kres.KresError, match=r"invalid counts \[7\]: .* integers from 0 to 6"):
        lesion(identity_unit[0], *digits, counts=[7])


# --- Iterative refinement -------------------------------------------------------------------


@pytest.fixture(scope="module")
def refined(identity_unit, digits):
    return refinement(identity_unit[0], digits[0][:16], digits[1][:16])


def test_a_zero_branch_has_no_refinement_cosine(refined):
    assert refined["units"][1] == "conv2_block2"
    assert np.isnan(refined["cosines"][1]).all() and np.isnan(refined["medians"][1])


def test_refinement_measures_identity_shortcut_units_only(identity_unit, refined):
    identity = [u.shortcut is u.input for u in find_units(identity_unit[0])]
    measured = np.isfinite(refined["cosines"]).all(axis=1)
    assert list(measured) == [i and n != 1 for n, i in enumerate(identity)]
    assert refined["stages"] == [2, 2, 3, 3, 4, 4]
    assert np.all(np.abs(refined["cosines"][measured]) <= 1)


def test_the_refinement_cosine_has_the_sign_of_the_loss_change_along_the_branch(digits):
    # A finite difference: moving unit conv2_block2's input x along F(x) lowers the loss
    # exactly when cos(F(x), -dL/dx) > 0.
    model = digits_model("preact_resnet110", depths=(3, 1, 1))
    x, y = digits[0][:1], digits[1][:1]
    result = refinement(model, x, y)
    unit = find_units(model)[1]
    chain = Chain(model)
    inputs, branch = (keras.ops.convert_to_numpy(t) for t in
                      keras.Model(model.inputs[0], [unit.input, unit.branch])(x))
    loss = [float(classification_loss(model, y, chain.run(inputs + e * branch, start=1)))
            for e in (-1e-3, 1e-3)]
    assert result["cosines"][1, 0] != 0 and np.sign(result["cosines"][1, 0]) == np.sign(
        loss[0] - loss[1])


def test_refinement_needs_residual_units(digits):
    with pytest.raises(kres.KresError, match="model 'plain20' has no residual unit with an "
                                             "identity shortcut"):
        refinement(digits_model("plain20"), *digits)


# --- Feature rank ---------------------------------------------------------------------------


def test_effective_rank_of_k_equal_singular_values_is_k():
    assert effective_rank(np.diag([3.0, 3.0, 0.0])) == pytest.approx(2.0, rel=1e-12)
    rng = np.random.default_rng(0)
    (left, _), (right, _) = (np.linalg.qr(rng.standard_normal((n, 5))) for n in (50, 7))
    assert effective_rank(left @ np.diag([2.0] * 5) @ right.T) == pytest.approx(5.0, rel=1e-9)
    assert effective_rank(np.outer(np.arange(1, 5), np.arange(1, 8))) == pytest.approx(1.0)
    assert effective_rank(np.zeros((3, 4))) == 0.0


def test_centring_removes_the_shared_mean():
    # Every row the same vector: rank 1 as it stands, nothing left once the mean is removed.
    rows = np.tile(np.arange(1.0, 6.0), (4, 1))
    assert effective_rank(rows) == pytest.approx(1.0) and effective_rank(rows, center=True) == 0


def test_an_identity_unit_keeps_the_rank_of_its_input(identity_unit, digits):
    result = feature_rank(identity_unit[0], digits[0])
    assert result["ranks"][1] == result["ranks"][0]
    assert result["batch"] == 64
    assert np.all(result["ranks"] > 1) and np.all(result["ranks"] <= 64)


# --- Robustness -----------------------------------------------------------------------------


def test_fgsm_accuracy_on_a_linear_classifier_is_the_share_of_margins_above_eps_l1():
    # Two classes, logits x @ W: FGSM moves x by eps * sign(w_other - w_true), which lowers
    # the margin (w_true - w_other) . x by exactly eps * ||w_true - w_other||_1. PGD can do no
    # better inside the same box: its sign never changes.
    rng = np.random.default_rng(0)
    kernel = rng.uniform(-0.01, 0.01, (4, 2)).astype("float32")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, use_bias=False, name="predictions")(inputs))
    model.get_layer("predictions").kernel.assign(kernel)
    x = rng.uniform(-100, 100, (200, 4)).astype("float32")
    y = rng.integers(0, 2, 200)
    d = kernel[:, y].T - kernel[:, 1 - y].T
    margins, l1 = np.sum(x * d, axis=1), np.abs(d).sum(axis=1)
    epsilons = (0, 5, 20, 80)
    result = robustness(model, x, y, epsilons, steps=4, pixel_range=(-1e9, 1e9))
    expected = [np.mean(margins > e * l1) for e in epsilons]
    np.testing.assert_allclose(result["fgsm"], expected, atol=1 / 200)
    np.testing.assert_allclose(result["pgd"], expected, atol=1 / 200)
    assert result["clean"] == expected[0] and np.all(np.diff(result["fgsm"]) <= 0)


def test_attacks_of_epsilon_zero_leave_the_clean_accuracy(digits):
    model = digits_model("resnet20")
    result = robustness(model, digits[0][:16], digits[1][:16], epsilons=(0,), steps=2)
    assert result["fgsm"][0] == result["pgd"][0] == result["clean"]


def test_negative_epsilons_are_rejected(linear_network):
    with pytest.raises(kres.KresError, match=r"invalid epsilons \[-1\]: accepted are "
                                             "non-negative numbers"):
        robustness(linear_network, np.zeros((1, 2)), [0], epsilons=[-1])


def test_plots_of_lesion_refinement_rank_and_robustness_draw_the_numbers(lesions, refined,
                                                                          identity_unit, digits):
    errors = plot_lesion(lesions).axes[0].get_lines()[0].get_ydata()
    np.testing.assert_array_equal(errors, lesions["unit_errors"])
    medians = plot_refinement(refined).axes[0].get_lines()[0].get_ydata()
    np.testing.assert_array_equal(medians, refined["medians"][np.isfinite(refined["medians"])])
    ranks = feature_rank(identity_unit[0], digits[0][:8])
    np.testing.assert_array_equal(plot_feature_rank(ranks).axes[0].get_lines()[0].get_ydata(),
                                  ranks["ranks"])
    attack = {"model": "m", "epsilons": np.array([0, 1]), "clean": 1.0, "fgsm": np.array([1, .5]),
              "pgd": np.array([1, .25]), "steps": 3}
    fgsm, pgd = plot_robustness(attack).axes[0].get_lines()
    assert list(pgd.get_ydata()) == [1, .25] and pgd.get_label() == "m: PGD-3"


# --- The same measurements on JAX -----------------------------------------------------------


@pytest.mark.slow
def test_refinement_robustness_and_lesion_agree_on_jax(tmp_path, digits):
    # Measured: the cosines agree to 8e-6, accuracies and errors exactly.
    model = digits_model("resnet20")
    x, y = digits[0][:16], digits[1][:16]
    model.save_weights(tmp_path / "model.weights.h5")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    helper = os.path.join(os.path.dirname(__file__), "helpers", "jax_analysis.py")
    done = subprocess.run([sys.executable, helper, str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jax = np.load(tmp_path / "jax.npz")
    attack = robustness(model, x, y, epsilons=(0, 4), steps=2)
    np.testing.assert_allclose(jax["cosines"], refinement(model, x, y)["cosines"], atol=1e-4)
    np.testing.assert_array_equal(jax["fgsm"], attack["fgsm"])
    np.testing.assert_array_equal(jax["pgd"], attack["pgd"])
    np.testing.assert_array_equal(jax["unit_errors"], lesion(model, x, y, counts=(0,))["unit_errors"])
