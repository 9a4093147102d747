"""Tests for mixscale.design: exact feasible sampling, maximin designs, design quality."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mixscale.design import (
    DesignQuality,
    FeasibleSampler,
    check_bounds,
    design_quality,
    maximin_design,
)
from mixscale.design import maximin as design
from mixscale.errors import DesignError, MixscaleError


def brute_force(subset_size: int, lower, upper) -> np.ndarray:
    """Every feasible point by filtering the full box (independent of the DP)."""
    grids = np.meshgrid(
        *[np.arange(a, b + 1) for a, b in zip(lower, upper, strict=True)], indexing="ij"
    )
    box = np.stack([g.ravel() for g in grids], axis=1)
    return box[box.sum(axis=1) == subset_size]


def assert_feasible(rows: np.ndarray, subset_size: int, lower, upper) -> None:
    assert rows.dtype == np.int64
    np.testing.assert_array_equal(rows.sum(axis=1), subset_size)
    assert np.all(rows >= np.asarray(lower)) and np.all(rows <= np.asarray(upper))


# --------------------------------------------------------------------------- contract tests
class DesignContractTests:
    """Invariants every design method must meet (subclassed once per method)."""

    method: str
    s, lower, upper = 100, [0, 5, 0, 10], [60, 60, 40, 50]

    def make(self, n_rows: int = 12, seed=7, **kwargs) -> np.ndarray:
        kwargs.setdefault("iterations", 60)
        return maximin_design(
            n_rows, self.s, self.lower, self.upper, method=self.method, seed=seed, **kwargs
        )

    def test_shape_and_dtype(self):
        rows = self.make()
        assert rows.shape == (12, 4) and rows.dtype == np.int64

    def test_rows_sum_to_subset_size_and_respect_bounds(self):
        assert_feasible(self.make(), self.s, self.lower, self.upper)

    def test_rows_distinct(self):
        rows = self.make(n_rows=30)
        assert np.unique(rows, axis=0).shape[0] == 30

    def test_deterministic_for_a_seed(self):
        np.testing.assert_array_equal(self.make(seed=3), self.make(seed=3))
        a = self.make(seed=np.random.default_rng(5))
        np.testing.assert_array_equal(a, self.make(seed=np.random.default_rng(5)))

    def test_differs_across_seeds(self):
        assert not np.array_equal(self.make(seed=1), self.make(seed=2))

    def test_zero_iterations_and_single_row(self):
        assert_feasible(self.make(iterations=0), self.s, self.lower, self.upper)
        one = self.make(n_rows=1)
        assert one.shape == (1, 4)
        assert_feasible(one, self.s, self.lower, self.upper)

    def test_restarts_keep_feasibility(self):
        assert_feasible(self.make(restarts=3), self.s, self.lower, self.upper)

    def test_all_feasible_points_when_rows_equal_count(self):
        lower, upper, s = [0, 0, 0], [2, 2, 2], 4  # exactly 6 feasible points
        rows = maximin_design(6, s, lower, upper, method=self.method, iterations=5, seed=0)
        expected = brute_force(s, lower, upper)
        assert sorted(map(tuple, rows)) == sorted(map(tuple, expected))

    def test_criterion_never_worse_than_the_start(self):
        start = design_quality(self.make(iterations=0, seed=4), self.s)
        end = design_quality(self.make(iterations=100, seed=4), self.s)
        assert end.min_distance >= start.min_distance


class TestMaximinMethod(DesignContractTests):
    method = "maximin"


class TestPaperMethod(DesignContractTests):
    method = "paper"


# --------------------------------------------------------------------------- exact sampler
def test_sampler_uniform_chi_square_small_case():
    lower, upper, s = [0, 0, 0], [4, 4, 4], 6
    points = brute_force(s, lower, upper)
    sampler = FeasibleSampler(s, lower, upper)
    assert sampler.count() == len(points) == 19
    draws = sampler.sample(20_000, np.random.default_rng(20240601))
    assert_feasible(draws, s, lower, upper)
    index = {tuple(p): j for j, p in enumerate(points)}
    observed = np.bincount([index[tuple(d)] for d in draws], minlength=len(points))
    assert stats.chisquare(observed).pvalue > 0.001


def test_sampler_uniform_chi_square_uneven_bounds():
    lower, upper, s = [1, 0, 2, 0], [5, 3, 6, 2], 9
    points = brute_force(s, lower, upper)
    draws = FeasibleSampler(s, lower, upper).sample(20_000, np.random.default_rng(11))
    index = {tuple(p): j for j, p in enumerate(points)}
    observed = np.bincount([index[tuple(d)] for d in draws], minlength=len(points))
    assert stats.chisquare(observed).pvalue > 0.001


def test_sampler_marginal_matches_exact_on_a_larger_case():
    # Wide, capped classes exercise both the prefix- and the suffix-sum branches of the sampler.
    lower, upper, s = [0, 10, 0], [150, 120, 100], 200
    points = FeasibleSampler(s, lower, upper).enumerate()
    assert len(points) == len(brute_force(s, lower, upper))
    exact = np.bincount(points[:, 0], minlength=151) / len(points)
    draws = FeasibleSampler(s, lower, upper).sample(40_000, np.random.default_rng(3))
    # Pool the class-0 marginal into 15 bins of 10 values for a well-powered chi-square.
    starts = np.arange(0, 150, 10)
    observed = np.add.reduceat(np.bincount(draws[:, 0], minlength=151)[:150], starts)
    expected = np.add.reduceat(exact[:150], starts) * len(draws)
    observed = np.append(observed, len(draws) - observed.sum())
    expected = np.append(expected, len(draws) - expected.sum())
    assert stats.chisquare(observed, expected).pvalue > 0.001


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 6).flatmap(
        lambda k: st.tuples(
            st.lists(st.integers(0, 4), min_size=k, max_size=k),
            st.lists(st.integers(0, 4), min_size=k, max_size=k),
            st.floats(0.0, 1.0),
            st.integers(0, 2**32 - 1),
        )
    )
)
def test_sampler_draws_feasible_and_count_exact(case):
    lower, width, where, seed = case
    lower = np.array(lower)
    upper = lower + np.array(width)
    s = max(1, int(round(lower.sum() + where * (upper.sum() - lower.sum()))))
    if s > upper.sum():
        return
    sampler = FeasibleSampler(s, lower, upper)
    assert sampler.count() == len(brute_force(s, lower, upper))
    rng = np.random.default_rng(seed)
    assert_feasible(sampler.sample(300, rng), s, lower, upper)
    n_rows = int(min(sampler.count(), 5))
    rows = maximin_design(n_rows, s, lower, upper, iterations=10, n_candidates=8, seed=rng)
    assert_feasible(rows, s, lower, upper)
    assert np.unique(rows, axis=0).shape[0] == n_rows


def test_count_large_uncapped_matches_binomial():
    k, s = 100, 45_000
    sampler = FeasibleSampler(s, np.zeros(k, int), np.full(k, s))
    exact = math.comb(s + k - 1, k - 1)
    assert math.isfinite(sampler.count())
    assert sampler.count() == pytest.approx(float(exact), rel=1e-9)
    assert_feasible(sampler.sample(50, np.random.default_rng(0)), s, np.zeros(k), np.full(k, s))


def test_count_overflows_to_inf_only_beyond_float_range():
    sampler = FeasibleSampler(45_000, np.zeros(200, int), np.full(200, 45_000))
    assert sampler.count() == math.inf
    assert_feasible(sampler.sample(5, np.random.default_rng(0)), 45_000, [0] * 200, [45_000] * 200)


@pytest.mark.parametrize("s", [100 * 200, 100 * 450])
def test_single_feasible_point_at_the_extremes(s):
    lower, upper = np.full(100, 200), np.full(100, 450)
    sampler = FeasibleSampler(s, lower, upper)
    assert sampler.count() == 1.0
    expected = lower if s == lower.sum() else upper
    np.testing.assert_array_equal(sampler.sample(4, np.random.default_rng(0)), [expected] * 4)


def test_sample_zero_rows_and_bad_rng():
    sampler = FeasibleSampler(10, [0, 0], [10, 10])
    assert sampler.sample(0, np.random.default_rng(0)).shape == (0, 2)
    with pytest.raises(DesignError, match="rng must be a numpy.random.Generator"):
        sampler.sample(3, 0)
    with pytest.raises(DesignError, match="n must be >= 0"):
        sampler.sample(-1, np.random.default_rng(0))


# --------------------------------------------------------------------------- check_bounds
def test_check_bounds_returns_int64_and_accepts_whole_floats():
    lower, upper = check_bounds(10, [0.0, 2], np.array([5, 8], dtype=np.int32))
    assert lower.dtype == upper.dtype == np.int64
    np.testing.assert_array_equal(lower, [0, 2])


@pytest.mark.parametrize(
    ("s", "lower", "upper", "match"),
    [
        (10, [6, 5], [10, 10], r"sum\(lower\)=11 > subset_size=10"),
        (30, [0, 0], [10, 10], r"subset_size=30 > sum\(upper\)=20"),
        (10, [0, 5], [10, 3], r"lower\[1\]=5 > upper\[1\]=3"),
        (10, [-1, 0], [10, 10], r"lower\[0\] must be >= 0, but got -1"),
        (10, [0, 0], [10, -2], r"upper\[1\] must be >= 0"),
        (10, [0, 0], [10, 2.5], r"upper\[1\] must be a whole number, but got 2.5"),
        (10, [0, np.nan], [10, 10], r"lower\[1\] must be a whole number"),
        (10, [0, True], [10, 10], r"lower\[1\] must be an integer, but got the bool"),
        (10, np.array([False, True]), [10, 10], "lower must hold integers"),
        (10, ["a", "b"], [10, 10], "lower must hold integers"),
        (10, [[0, 0]], [[10, 10]], r"lower must be a 1-D sequence"),
        (10, [0, 0, 0], [10, 10], r"len\(lower\)=3 and len\(upper\)=2"),
        (10, [0], [10], r"at least 2 classes, but got k=1"),
        (0, [0, 0], [10, 10], "subset_size must be a positive integer, but got 0"),
        (2.5, [0, 0], [10, 10], "subset_size must be an integer, but got 2.5"),
        (True, [0, 0], [10, 10], "subset_size must be an integer, but got the bool"),
    ],
)
def test_bad_bounds_raise_design_error(s, lower, upper, match):
    with pytest.raises(DesignError, match=match):
        check_bounds(s, lower, upper)
    with pytest.raises(DesignError, match=match):
        FeasibleSampler(s, lower, upper)
    with pytest.raises(DesignError, match=match):
        maximin_design(3, s, lower, upper, seed=0)


def test_design_error_is_a_value_error():
    assert issubclass(DesignError, MixscaleError) and issubclass(DesignError, ValueError)


# --------------------------------------------------------------------------- maximin_design errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_rows": 0}, "n_rows must be >= 1, but got 0"),
        ({"n_rows": 2.5}, "n_rows must be an integer"),
        ({"iterations": -1}, "iterations must be >= 0, but got -1"),
        ({"n_candidates": 0}, "n_candidates must be >= 1, but got 0"),
        ({"restarts": 0}, "restarts must be >= 1, but got 0"),
        ({"method": "lhs"}, r"method must be one of \('maximin', 'paper'\), but got 'lhs'"),
        ({"seed": "abc"}, "seed must be None, an int or a numpy Generator"),
    ],
)
def test_bad_options_raise_before_any_work(monkeypatch, kwargs, match):
    def no_work(*args, **kw):
        raise AssertionError("the feasible set was built before the options were checked")

    monkeypatch.setattr(design, "FeasibleSampler", no_work)
    options = dict(kwargs)
    n_rows = options.pop("n_rows", 3)
    with pytest.raises(DesignError, match=match):
        maximin_design(n_rows, 10, [0, 0], [10, 10], **options)


@pytest.mark.parametrize("method", ["maximin", "paper"])
def test_more_rows_than_feasible_points(method):
    with pytest.raises(DesignError, match=r"n_rows=7 > 6 feasible points"):
        maximin_design(7, 4, [0, 0, 0], [2, 2, 2], method=method, seed=0)


# --------------------------------------------------------------------------- quality measures
def test_design_quality_known_values():
    quality = design_quality(np.array([[2, 0], [0, 2], [1, 1]]), 2)
    assert isinstance(quality, DesignQuality)
    assert quality.min_distance == pytest.approx(math.sqrt(2) / 2)
    assert quality.pairs_at_min == 2
    assert quality.mean_nn_distance == pytest.approx(math.sqrt(2) / 2)


def test_design_quality_is_scale_free_and_handles_one_row():
    pts = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [1, 1, 1]])
    small, large = design_quality(pts, 3), design_quality(pts * 100, 300)
    assert small.min_distance == pytest.approx(large.min_distance, rel=1e-12)
    assert small.mean_nn_distance == pytest.approx(large.mean_nn_distance, rel=1e-12)
    assert small.pairs_at_min == large.pairs_at_min == 3
    single = design_quality(pts[:1], 3)
    assert single.min_distance == math.inf and single.pairs_at_min == 0
    with pytest.raises(DesignError, match="points must be a 2-D array"):
        design_quality(np.arange(3), 3)


def test_without_row_bookkeeping_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = rng.integers(0, 3, size=(9, 3))  # small coordinates: many ties
        pts = np.unique(pts, axis=0)
        d2 = design._sq_dist(pts, pts)
        np.fill_diagonal(d2, np.inf)
        nn_d, nn_i = d2.min(axis=1), d2.argmin(axis=1)
        for i in range(pts.shape[0]):
            expected = design._criterion(np.delete(pts, i, axis=0))
            assert design._without_row(d2, nn_d, nn_i, i) == expected


# --------------------------------------------------------------------------- optimisation strength
def test_maximin_beats_paper_at_equal_budget():
    lower, upper, s = np.zeros(5, int), np.full(5, 400), 1000
    runs = {
        m: maximin_design(15, s, lower, upper, method=m, iterations=300, seed=0)
        for m in ("maximin", "paper")
    }
    best = design_quality(runs["maximin"], s).min_distance
    assert best > design_quality(runs["paper"], s).min_distance


def test_maximin_near_triangular_lattice_optimum():
    # Ten points in the uncapped 3-class simplex: the optimum is the triangular lattice with
    # min distance sqrt(2) / 3 = 0.4714 (in proportions).
    s = 3000
    rows = maximin_design(10, s, [0, 0, 0], [s, s, s], iterations=500, seed=0)
    assert design_quality(rows, s).min_distance >= 0.95 * math.sqrt(2) / 3  # within 5 %
    assert design_quality(rows, s).min_distance <= math.sqrt(2) / 3 + 1e-12


def best_min_distance(points: np.ndarray, subset_size: int, n_rows: int):
    """Brute force over every ``n_rows``-subset of ``points``: the largest minimum pairwise
    distance (in proportions) and the subsets that reach it (independent of the design code)."""
    p = points / subset_size
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(axis=-1))
    subsets = np.array(list(itertools.combinations(range(len(p)), n_rows)))
    i, j = np.triu_indices(n_rows, 1)
    mins = d[subsets[:, i], subsets[:, j]].min(axis=1)
    return mins.max(), subsets[np.isclose(mins, mins.max(), rtol=1e-12, atol=0.0)]


@pytest.mark.parametrize(
    ("s", "lower", "upper", "n_rows"),
    [
        (10, [0, 0, 0], [10, 10, 10], 4),  # 66 feasible points, 720,720 subsets, 15 optimal
        (10, [0, 0, 0], [10, 6, 3], 4),  # uneven caps: 28 points, one optimal subset
        (20, [0, 0, 0], [20, 12, 8], 3),  # 117 points, 8 optimal subsets
    ],
)
def test_maximin_reaches_the_brute_force_optimum(s, lower, upper, n_rows):
    # a random feasible start misses these optima for some seeds: the exchange steps must work
    best, _ = best_min_distance(brute_force(s, lower, upper), s, n_rows)
    for seed in range(3):
        rows = maximin_design(n_rows, s, lower, upper, iterations=100, seed=seed)
        assert design_quality(rows, s).min_distance == pytest.approx(best, rel=1e-12), seed


def test_known_vertex_design_is_found():
    # Caps of s/2 with k=4: the feasible set is an octahedron. On its coarsest grid (s=4) brute
    # force finds its six vertices (two classes at s/2) to be the one optimal 6-point design,
    # min distance sqrt(1/2); at s=1000 (a 1001^3-point grid) the design must find them too.
    def vertices(s: int) -> set[tuple[int, ...]]:
        return set(itertools.permutations((s // 2, s // 2, 0, 0)))

    points = brute_force(4, [0] * 4, [2] * 4)
    best, optimal = best_min_distance(points, 4, 6)
    assert len(optimal) == 1 and set(map(tuple, points[optimal[0]])) == vertices(4)
    assert best == pytest.approx(math.sqrt(0.5), rel=1e-12)
    s = 1000
    rows = maximin_design(6, s, [0] * 4, [500] * 4, iterations=200, seed=1)
    assert set(map(tuple, rows.tolist())) == vertices(s)
    assert design_quality(rows, s).min_distance == pytest.approx(best, rel=1e-12)
