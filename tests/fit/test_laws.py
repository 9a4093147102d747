"""Tests of mixscale.fit.laws: every family x predictor gives sane output, formulas, the paper."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixscale.errors import MixscaleError
from mixscale.fit import lsq as _lsq
from mixscale.fit.laws import (
    FAMILIES,
    PREDICTORS,
    Z_MIN,
    algebraic_root,
    arctan_law,
    epoch_saturation,
    epoch_saturation_gradient,
    get_family,
    get_predictor,
    length_saturation,
    length_saturation_gradient,
    log_law,
    logistic_law,
    m4_law,
    power_law,
    training_length,
)

N_CLASSES = 4


def _random_shapes(family, rng, n=12):
    """Grid starts plus random shape parameters inside the family's bounds."""
    lower, upper = np.array(family.lower), np.array(family.upper)
    upper = np.minimum(upper, np.maximum(lower + 1.0, 20.0))  # keep scales to a sane range
    draws = [rng.uniform(lower, upper) for _ in range(n)]
    return [np.array(s, dtype=float) for s in family.starts] + draws


def _linear_predictor(predictor, rng, n_rows=200):
    counts = rng.uniform(0.0, 1.0, (n_rows, N_CLASSES))
    total = counts.sum(axis=1) / N_CLASSES
    epoch = rng.uniform(0.0, 1.0, n_rows)
    count_block = predictor.count_block(counts, total)
    weights = rng.dirichlet(np.ones(count_block.shape[1]))
    if predictor.saturating:  # epochs stay out of z
        return count_block @ weights
    epoch_weights = np.array([0.4, -0.2][: len(predictor.epoch_powers)])
    return count_block @ weights + predictor.epoch_block(epoch) @ epoch_weights


@pytest.mark.parametrize("predictor_name", sorted(PREDICTORS))
@pytest.mark.parametrize("family_name", sorted(FAMILIES))
def test_every_law_is_finite_bounded_and_monotone(family_name, predictor_name):
    family, predictor = FAMILIES[family_name], PREDICTORS[predictor_name]
    rng = np.random.default_rng(7)
    z = _linear_predictor(predictor, rng)
    z_sorted = np.sort(np.concatenate([z, np.linspace(-0.5, 3.0, 50)]))
    for shape in _random_shapes(family, rng):
        y = family(z, shape)
        assert y.shape == z.shape
        assert np.all(np.isfinite(y)), (family_name, shape)
        assert np.all(np.abs(y) < 1e3), (family_name, shape)
        y_sorted = family(z_sorted, shape)
        assert np.all(np.isfinite(y_sorted))
        assert np.all(np.diff(y_sorted) >= -1e-9), (family_name, shape)


@pytest.mark.parametrize("family_name", sorted(FAMILIES))
def test_grid_starts_give_accuracies_for_normalised_predictors(family_name):
    family = FAMILIES[family_name]
    z = np.linspace(0.0, 1.5, 31)  # count weights sum to 1, so z is O(1) on scaled inputs
    for shape in family.starts:
        y = family(z, shape)
        assert np.all((y > -1.0) & (y < 2.0)), (family_name, shape)
        assert y[-1] > y[0]


@pytest.mark.parametrize("family_name", sorted(FAMILIES))
def test_families_are_consistent_registry_entries(family_name):
    family = FAMILIES[family_name]
    k = len(family.param_names)
    assert len(family.lower) == len(family.upper) == k
    assert all(lo < hi for lo, hi in zip(family.lower, family.upper, strict=True))
    assert family.scale_param in family.param_names
    for start in family.starts:
        assert len(start) == k
        assert all(
            lo <= v <= hi for lo, v, hi in zip(family.lower, start, family.upper, strict=True)
        )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (power_law(4.0, 0.1, 0.5, 0.5), 0.1 + 0.5 * 2.0),
        (arctan_law(0.0, 0.1, 1.0, 0.0), 0.1),
        (arctan_law(2.0 / np.pi, 0.0, 1.0, 0.0), 0.5),  # (2/pi) arctan(1) = 1/2
        (arctan_law(1e9, -0.1, 1.0, 0.0), 0.9),  # saturates at 1 + a
        (log_law(np.e - 1.0, 0.3, 0.2, 1.0), 0.5),
        (algebraic_root(1.0, 0.1, 0.8, 1.0, 1.0), 0.1 + 0.8 * 0.5),  # u / (1 + u)
        (algebraic_root(1.0, 0.0, 1.0, 1.0, 2.0), 1.0 / np.sqrt(2.0)),  # u / sqrt(1 + u^2)
        (algebraic_root(1e9, 0.1, 0.8, 3.0, 2.0), 0.9),  # saturates at a + p
        (logistic_law(0.5, 0.1, 0.8, 4.0, -2.0), 0.1 + 0.8 / 2.0),  # s z + k = 0
        (logistic_law(1e9, 0.1, 0.8, 4.0, -2.0), 0.9),
        # M4, alpha = 0: eps = eps_inf + beta z^-c = 0.1 + 0.1 * 4^-0.5
        (m4_law(4.0, 0.1, 0.8, 0.0, 0.1, 0.5), 1.0 - 0.15),
        # M4, alpha = 1: (eps - 0.1) / (0.9 - eps) = 1 at z = 1 -> eps = 0.5
        (m4_law(1.0, 0.1, 0.8, 1.0, 1.0, 1.0), 0.5),
        # M4, alpha = 1, z = 4, c = 1: R = 1/4 -> eps = (0.1 + 0.25 * 0.9) / 1.25 = 0.26
        (m4_law(4.0, 0.1, 0.8, 1.0, 1.0, 1.0), 0.74),
        (m4_law(1e12, 0.05, 0.8, 2.0, 1.0, 1.0), 0.95),  # saturates at 1 - eps_inf
    ],
)
def test_formulas_match_hand_computed_values(value, expected):
    np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-12)


def test_positive_families_clip_negative_z():
    assert power_law(-1.0, 0.2, 1.0, 0.5) == pytest.approx(0.2 + Z_MIN**0.5)
    assert np.isfinite(log_law(-5.0, 0.0, 1.0, 1e-6))
    assert np.isfinite(m4_law(-1.0, 0.1, 0.8, 1.0, 1.0, 1.0))


# The paper (shared/seed/paper-per-class-dataset-size.md), CIFAR-10 with 5000 images per class
# trained for 195 epochs: Table 3, model (0)'s estimates; Table 6, the first rows of its data
# table (one 5000-image training set at epochs 10-30); Table 1, model (0)'s training MSE.
PAPER_M0 = {"a": -0.05, "b": 0.40, "c": 0.55, "epoch": 0.59,
            "classes": [0.37, 0.31, 0.29, 0.17, 0.30, 0.27, 0.29, 0.37, 0.23, 0.25]}
PAPER_TABLE_6 = {"counts": [145, 31, 97, 496, 1096, 307, 2382, 10, 373, 63],
                 "epochs": [10, 15, 20, 25, 30], "accuracy": [0.18, 0.21, 0.20, 0.25, 0.24]}
PAPER_M0_TRAIN_MSE = 0.00252


def test_power_law_reproduces_paper_table_3():
    """Table 3's estimates, through this module's m0 predictor and power law, predict the
    paper's own observations (Table 6) about as well as Table 1 says the law fits its training
    rows; every number compared comes from the paper, none from this code."""
    counts = np.tile(PAPER_TABLE_6["counts"], (5, 1)) / 5000.0  # scaled by the class maximum
    total = counts.sum(axis=1) * 5000.0 / 45_000.0  # by the largest subset size (unused by m0)
    epoch = np.array(PAPER_TABLE_6["epochs"]) / 195.0  # by the last epoch
    m0 = get_predictor("m0")
    z = (m0.count_block(counts, total) @ PAPER_M0["classes"]
         + m0.epoch_block(epoch) @ [PAPER_M0["epoch"]])
    predicted = get_family("power")(z, (PAPER_M0["a"], PAPER_M0["b"], PAPER_M0["c"]))
    # the paper's model (0) written out: a + b * (sum_c beta_c n_c + beta_e epoch) ** c
    by_hand = [PAPER_M0["a"] + PAPER_M0["b"] * (
        sum(beta * n for beta, n in zip(PAPER_M0["classes"], row, strict=True))
        + PAPER_M0["epoch"] * e) ** PAPER_M0["c"] for row, e in zip(counts, epoch, strict=True)]
    np.testing.assert_allclose(predicted, by_hand, rtol=1e-12)
    residual = np.array(PAPER_TABLE_6["accuracy"]) - predicted
    # five rows' mean square scatters around the law's MSE (chi-square, 5 dof: 95 % < 2.2x)
    assert np.mean(residual**2) < 2.2 * PAPER_M0_TRAIN_MSE
    assert np.abs(residual).max() < 2.0 * np.sqrt(PAPER_M0_TRAIN_MSE)
    # the full data set at the last epoch: above these early rows, at most the paper's best 84 %
    full = power_law(np.sum(PAPER_M0["classes"]) + PAPER_M0["epoch"], PAPER_M0["a"],
                     PAPER_M0["b"], PAPER_M0["c"])
    assert predicted.max() < full <= 0.84


def test_normalised_convention_reproduces_paper_law_exactly():
    # Dividing the weights by their sum S and multiplying b by S**c changes nothing.
    classes = np.array([0.37, 0.31, 0.29, 0.17, 0.30, 0.27, 0.29, 0.37, 0.23, 0.25])
    s = classes.sum()
    rng = np.random.default_rng(3)
    counts, epoch = rng.uniform(0, 1, (50, 10)), rng.uniform(0, 1, 50)
    paper = power_law(counts @ classes + 0.59 * epoch, -0.05, 0.40, 0.55)
    normalised = power_law(
        counts @ (classes / s) + (0.59 / s) * epoch, -0.05, 0.40 * s**0.55, 0.55
    )
    np.testing.assert_allclose(normalised, paper, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    z=st.floats(1e-3, 1e3),
    eps_inf=st.floats(0.0, 0.5),
    delta=st.floats(0.05, 0.5),
    alpha=st.floats(0.05, 10.0),
    beta=st.floats(1e-3, 1e2),
    c=st.floats(0.05, 3.0),
)
def test_m4_solves_its_implicit_equation(z, eps_inf, delta, alpha, beta, c):
    eps = 1.0 - m4_law(np.array([z]), eps_inf, delta, alpha, beta, c)[0]
    assert eps_inf - 1e-12 <= eps <= eps_inf + delta + 1e-12
    t = (eps - eps_inf) / delta
    if 1e-6 < t < 1.0 - 1e-6:  # away from the float ends the equation holds closely
        lhs = np.log(t) - alpha * np.log1p(-t)
        rhs = np.log(beta) - c * np.log(z) + (alpha - 1.0) * np.log(delta)
        assert lhs == pytest.approx(rhs, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(lam=st.floats(0.1, 10.0), c=st.floats(0.05, 2.0), z=st.floats(1e-3, 10.0))
def test_scale_parameter_absorbs_predictor_scale(lam, c, z):
    # a * (lam z)^c trade-off behind the normalisation: b absorbs lam**c, q and s absorb lam
    np.testing.assert_allclose(
        power_law(lam * z, 0.1, 0.5, c), power_law(z, 0.1, 0.5 * lam**c, c), rtol=1e-10
    )
    np.testing.assert_allclose(
        algebraic_root(lam * z, 0.1, 0.8, 2.0, c + 0.5),
        algebraic_root(z, 0.1, 0.8, 2.0 * lam, c + 0.5),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        logistic_law(lam * z, 0.1, 0.8, 3.0, -1.0),
        logistic_law(z, 0.1, 0.8, 3.0 * lam, -1.0),
        rtol=1e-10,
    )


def test_predictors_build_the_paper_linear_combinations():
    counts = np.array([[0.2, 0.4], [1.0, 0.0]])
    total = np.array([0.3, 0.5])
    epoch = np.array([0.5, 1.0])
    m1, m3 = get_predictor("m1"), get_predictor("m3")
    np.testing.assert_array_equal(m1.count_block(counts, total), counts)
    np.testing.assert_array_equal(m3.count_block(counts, total), total[:, None])
    np.testing.assert_array_equal(m1.epoch_block(epoch), [[0.5, 0.25], [1.0, 1.0]])
    assert m1.count_names(["n_a", "n_b"]) == ["n_a", "n_b"]
    assert m3.count_names(["n_a", "n_b"]) == ["total_n"]
    assert m1.epoch_names() == ["epoch", "epoch2"]
    assert get_predictor("m0").epoch_names() == ["epoch"]


@pytest.mark.parametrize("family_name", [n for n, f in FAMILIES.items() if f.grad is not None])
def test_analytic_gradients_match_finite_differences(family_name):
    family = FAMILIES[family_name]
    rng = np.random.default_rng(11)
    z = rng.uniform(0.05, 3.0, 40)
    for shape in _random_shapes(family, rng, n=6):
        shape = np.maximum(shape, np.array(family.lower) + 1e-3)  # one-sided steps stay inside
        dydz, dyds = family.grad(z, *shape)
        h = 1e-6
        num_z = (family(z + h, shape) - family(z - h, shape)) / (2 * h)
        np.testing.assert_allclose(dydz, num_z, rtol=1e-4, atol=1e-6)
        for j in range(len(shape)):
            up, down = shape.copy(), shape.copy()
            up[j] += h
            down[j] -= h
            num = (family(z, up) - family(z, down)) / (2 * h)
            np.testing.assert_allclose(dyds[:, j], num, rtol=1e-4, atol=1e-6, err_msg=str(j))


def test_m4_clip_matches_the_laws_clip():
    from mixscale.fit import m4 as _m4

    assert _m4.Z_MIN == Z_MIN


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(MixscaleError, match=r"`family` must be one of .*'power'.*'nope'"):
        get_family("nope")
    with pytest.raises(MixscaleError, match=r"`predictor` must be one of .*'m0'"):
        get_predictor("m9")
    with pytest.raises(MixscaleError, match="takes 3 shape parameters"):
        FAMILIES["power"](np.ones(2), (1.0, 2.0))


# ---------------------------------------------------------------- bounded laws, epochs apart
BOUNDED = [n for n, f in FAMILIES.items() if f.bounded]
SATURATING = [n for n, p in PREDICTORS.items() if p.saturating]


def _box_draws(lower, upper, rng, n):
    """Uniform draws in a box, plus its corners' extremes on every axis (low and high)."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    draws = [rng.uniform(lower, upper) for _ in range(n)]
    return draws + [lower.copy(), upper.copy(), np.where(np.arange(lower.size) % 2, lower, upper)]


def test_bounded_flags_only_families_whose_asymptote_stays_at_or_below_one():
    """The flag is a fact of each family's box: a bounded family never passes 1 anywhere in
    its box, even at a huge linear predictor; every other family has a shape in its box that
    does (or grows without limit)."""
    rng = np.random.default_rng(3)
    z = np.array([0.0, 1e-3, 0.5, 1.0, 10.0, 1e6, 1e12])
    for name, family in FAMILIES.items():
        highest = max(float(family(z, shape).max())
                      for shape in _box_draws(family.lower, family.upper, rng, 200))
        assert family.bounded == (highest <= 1.0 + 1e-12), (name, highest)
    assert "m4" in BOUNDED and SATURATING == ["s0", "s2"]


@pytest.mark.parametrize("predictor_name", SATURATING)
@pytest.mark.parametrize("family_name", BOUNDED)
def test_bounded_laws_stay_in_unit_interval_for_huge_counts_and_epochs(family_name,
                                                                       predictor_name):
    """Any parameters in the box, counts and epochs up to 10^6 times the training maxima:
    every prediction of a bounded family with a saturating predictor is in [0, 1]."""
    family, predictor = FAMILIES[family_name], PREDICTORS[predictor_name]
    rng = np.random.default_rng(5)
    counts = np.vstack([rng.uniform(0, 1, (50, N_CLASSES)), np.zeros((1, N_CLASSES)),
                        10.0 ** rng.uniform(0, 6, (50, N_CLASSES))])
    epoch = np.concatenate([rng.uniform(0, 1, 51), 10.0 ** rng.uniform(0, 6, 50)])
    problem = _lsq.Problem(family, predictor.count_block(counts, counts.sum(axis=1) / 4),
                           predictor.epoch_block(epoch), saturating=True,
                           size=counts.sum(axis=1) / 4)
    lower, upper = _lsq.bounds(problem)
    for theta in _box_draws(lower, upper, rng, 200):
        y = problem.predict(theta)
        assert np.all(np.isfinite(y)) and y.min() >= 0.0 and y.max() <= 1.0, theta


def test_epoch_factor_starts_at_zero_rises_and_saturates_at_one():
    e = np.concatenate([[0.0], np.logspace(-4, 8, 200)])
    for tau, kappa in [(1e-3, 0.05), (0.2, 1.0), (20.0, 20.0), (0.5, 0.3)]:
        h = epoch_saturation(e, tau, kappa)
        assert h[0] == 0.0 and np.all(np.diff(h) >= 0) and np.all(h < 1.0 + 1e-15)
    assert epoch_saturation(np.array([1e12]), 0.2, 1.0)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(epoch_saturation(np.array([0.3]), 0.1, 1.0), 0.3 / 0.4)  # e/(e+tau)
    e3 = np.array([0.0, 0.3, 2.0])
    h, dh = epoch_saturation_gradient(e3, 0.2, 1.5)
    step = 1e-6
    num = [(epoch_saturation(e3, 0.2 + step * (j == 0), 1.5 + step * (j == 1)) - h) / step
           for j in range(2)]
    np.testing.assert_allclose(dh, np.stack(num, axis=-1), rtol=1e-4, atol=1e-9)


def test_training_length_counts_epochs_as_steps_by_a_fitted_share():
    """``steps = 0``: the epoch factor itself at every size; ``steps = 1``: an epoch over twice
    the images is worth two; in between, rising in size; always h -> 1 with epochs."""
    e, size = np.array([0.2, 0.2, 0.2, 0.0, 1e9]), np.array([0.5, 1.0, 2.0, 2.0, 0.1])
    np.testing.assert_array_equal(length_saturation(e, size, 0.3, 1.2, 0.0),
                                  epoch_saturation(e, 0.3, 1.2))
    np.testing.assert_allclose(training_length(e, size, 1.0), e * size)
    h = length_saturation(e, size, 0.3, 1.2, 0.6)
    assert h[0] < h[1] < h[2] and h[3] == 0.0 and h[4] == pytest.approx(1.0)
    assert training_length(np.array([5.0]), np.array([0.0]), 0.5)[0] == 0.0  # no images
    h, dh = length_saturation_gradient(e[:3], size[:3], 0.3, 1.2, 0.6)
    step, params = 1e-7, np.array([0.3, 1.2, 0.6])
    for j in range(3):
        up = params + step * (np.arange(3) == j)
        np.testing.assert_allclose(dh[:, j], (length_saturation(e[:3], size[:3], *up) - h)
                                   / step, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("predictor_name", SATURATING)
def test_saturating_jacobian_matches_finite_differences(predictor_name):
    predictor, rng = PREDICTORS[predictor_name], np.random.default_rng(2)
    counts, epoch = rng.uniform(0.05, 1, (30, N_CLASSES)), rng.uniform(0.1, 1, 30)
    problem = _lsq.Problem(FAMILIES["m4"], predictor.count_block(counts, counts.mean(axis=1)),
                           predictor.epoch_block(epoch), saturating=True,
                           size=counts.mean(axis=1))
    theta = np.concatenate([[0.05, 0.8, 1.0, 0.5, 0.7], np.full(problem.n_free_counts, 0.2),
                            [0.3, 1.2, 0.6]])
    jac, h = problem.jacobian(theta), 1e-7
    for j in range(theta.size):
        up = theta.copy()
        up[j] += h
        np.testing.assert_allclose(jac[:, j], (problem.predict(up) - problem.predict(theta)) / h,
                                   rtol=1e-4, atol=1e-6, err_msg=str(j))
