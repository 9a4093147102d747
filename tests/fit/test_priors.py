"""Tests of mixscale.fit.priors: the extrapolation fitting rule for one learning curve."""

from __future__ import annotations

import numpy as np
import pytest

from mixscale.errors import MixscaleError
from mixscale.fit.laws import m4_law
from mixscale.fit.priors import M4_PRIOR, CurveFit, ShapePrior, fit_curve

TRUE_M4 = (0.2, 0.75, 0.3, 0.08, 0.7)  # eps_inf, delta, alpha, beta, c


def _curve(z: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Error of a known M4 curve at ``z``, with multiplicative noise."""
    err = 1.0 - m4_law(z, *TRUE_M4)
    return err * np.exp(noise * np.random.default_rng(seed).standard_normal(z.size))


def test_fit_is_bounded_and_monotone_far_outside_the_data():
    z = np.geomspace(0.01, 1.0, 12)
    fit = fit_curve("m4", z, _curve(z, noise=0.02), random_starts=1)
    grid = np.geomspace(1e-6, 1e6, 200)
    acc = fit.accuracy(grid)
    assert np.all((acc >= 0.0) & (acc <= 1.0))
    assert np.all(np.diff(acc) >= -1e-12)  # more data never lowers accuracy
    err = fit.error(grid)
    assert np.all((err > 0.0) & (err <= 1.0))


def test_log_rule_recovers_a_known_curve_and_its_extrapolation():
    z = np.geomspace(0.01, 1.0, 15)
    fit = fit_curve("m4", z, _curve(z), random_starts=2)
    z_far = np.array([1.5, 2.0])
    rel = np.abs(np.log(fit.error(z_far)) - np.log(_curve(z_far)))
    assert np.all(rel < 0.01)


def test_size_weights_follow_the_large_sizes():
    # a curve whose small sizes follow another law: the weighted fit tracks the large end
    z = np.geomspace(0.01, 1.0, 20)
    err = _curve(z)
    err[:8] = np.minimum(0.99, err[:8] * 1.3)
    plain = fit_curve("m4", z, err, size_power=0.0, random_starts=1)
    weighted = fit_curve("m4", z, err, size_power=3.0, random_starts=1)
    top = z > 0.5
    miss = [float(np.sqrt(np.mean((np.log(f.error(z[top])) - np.log(err[top])) ** 2)))
            for f in (plain, weighted)]
    assert miss[1] < miss[0]


def test_prior_pulls_a_three_point_fit_toward_the_population_shape():
    z = np.array([0.25, 0.5, 1.0])
    err = _curve(z, noise=0.03, seed=3)
    center = tuple(ShapePrior("m4", (0.0,) * 5, (1.0,) * 5).transform(np.array(TRUE_M4)))
    prior = ShapePrior("m4", center, (0.1, 0.2, 0.5, 0.5, 0.3))
    strong = ShapePrior(prior.family, prior.center, prior.scale, strength=100.0)
    plain = fit_curve("m4", z, err, random_starts=2)
    pulled = fit_curve("m4", z, err, prior=strong, random_starts=2)
    off = [np.linalg.norm((prior.transform(np.array(f.params)) - np.array(prior.center))
                          / np.array(prior.scale)) for f in (plain, pulled)]
    assert off[1] < 0.5 * off[0]
    off_zero = fit_curve("m4", z, err, prior=ShapePrior(prior.family, prior.center,
                                                        prior.scale, 0.0), random_starts=2)
    assert off_zero.params == plain.params  # strength 0 is the plain fit


def test_from_fits_centre_is_the_median_and_the_shipped_prior_is_valid():
    shapes = np.array([TRUE_M4, (0.1, 0.8, 0.1, 0.05, 0.5), (0.3, 0.6, 1.0, 0.2, 1.0)])
    prior = ShapePrior.from_fits("m4", shapes)
    assert prior.center[0] == pytest.approx(0.2)
    assert np.all(np.array(prior.scale) > 0)
    assert M4_PRIOR.family == "m4"
    assert M4_PRIOR.residuals(np.array(TRUE_M4), 1.0).shape == (5,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"space": "probit"}, "space"),
        ({"size_power": -1.0}, "size_power"),
        ({"prior": ShapePrior("m4", (0.0,) * 5, (1.0,) * 5), "family": "power"}, "prior"),
    ],
)
def test_bad_options_are_refused_by_name(kwargs, match):
    z = np.geomspace(0.1, 1.0, 5)
    args = {"family": "m4", **kwargs}
    with pytest.raises(MixscaleError, match=match):
        fit_curve(args.pop("family"), z, _curve(z), **args)


def test_bad_data_is_refused():
    with pytest.raises(MixscaleError, match="error"):
        fit_curve("m4", np.array([0.5, 1.0]), np.array([0.5, 1.5]))
    with pytest.raises(MixscaleError, match="prior exists only"):
        ShapePrior("power", (0.0,) * 3, (1.0,) * 3)
    assert isinstance(CurveFit("m4", TRUE_M4, 0.0).error(np.array([1.0]))[0], float)


def test_jacobian_matches_finite_differences_and_free_coordinates_do_not_pull():
    theta = np.array(TRUE_M4)
    jac = M4_PRIOR.jacobian(theta, 0.02)
    step = 1e-7
    numeric = np.column_stack([
        (M4_PRIOR.residuals(theta + step * np.eye(5)[j], 0.02)
         - M4_PRIOR.residuals(theta, 0.02)) / step for j in range(5)])
    np.testing.assert_allclose(jac, numeric, atol=1e-5)
    free = np.isinf(np.array(M4_PRIOR.scale))
    assert free.tolist() == [True, False, False, True, False]  # eps_inf and beta are free
    assert np.all(M4_PRIOR.residuals(theta, 0.02)[free] == 0.0)
    moved = M4_PRIOR.center_shape(theta)
    assert moved[0] == theta[0] and moved[3] == theta[3]  # free coordinates are kept
    np.testing.assert_allclose(M4_PRIOR.transform(moved)[~free],
                               np.array(M4_PRIOR.center)[~free])
