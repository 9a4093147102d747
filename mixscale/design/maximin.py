"""Maximin mixture designs of integer class counts (pure numpy).

A design for subset size ``s`` is a set of distinct rows ``x in Z^k`` with ``sum(x) = s`` and
``lower <= x <= upper``. Its quality is the maximin criterion: the smallest pairwise Euclidean
distance between rows. All distances here are measured on the proportions ``x / s`` (counts
divided by the subset size), so designs of different subset sizes are comparable.

Two optimisers share one entry point, :func:`maximin_design`:

* ``method="paper"`` is Algorithm 1 of Mühlenstädt's paper: random feasible rows, then replace
  one row of the closest pair by one fresh random candidate when that strictly grows the minimum.
* ``method="maximin"`` (default) starts from a farthest-point selection over a large pool
  (uniform draws, simplex-lattice points, polytope vertices) and then exchanges rows with a batch
  of candidates per step (fresh draws, pool points and local transfers between classes),
  evaluated with incremental nearest-neighbour bookkeeping and accepted lexicographically: a
  larger minimum distance, else fewer pairs at it, else a lower design-wide crowding potential
  ``sum over pairs of (d_min / d)^16`` (so rows off the critical pairs can make room).

Squared distances are computed exactly on the integer counts, so ties are exact; dividing by
``s`` does not change any comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mixscale.design.sampling import (
    _ENUMERATE_LIMIT,
    FeasibleSampler,
    _as_int,
    check_bounds,
    distinct_draws,
    lattice_points,
    unique_rows,
    vertex_points,
)
from mixscale.errors import DesignError

__all__ = ["maximin_design", "DesignQuality", "design_quality", "METHODS"]

METHODS = ("maximin", "paper")
_POOL_MIN, _POOL_PER_ROW, _POOL_MAX = 2_000, 50, 20_000  # uniform draws for the start pool
_FPS_STARTS = 8  # farthest-point selections from random first rows; the best starts
_DRAW_CHUNK = 256  # exchange steps whose fresh candidates are drawn in one sampler call
_CROWD_P = 0.3  # geometric rank distribution for picking a crowded row that is not at the minimum
_POTENTIAL_POWER = 8  # third sort key: sum((d_min^2 / d^2)^power) over the moved row's pairs
_POTENTIAL_TOL = 1e-9  # smallest decrease of that potential that counts as progress


@dataclass(frozen=True)
class DesignQuality:
    """Space-filling measures of a design, on proportions ``x / subset_size``."""

    min_distance: float  # smallest pairwise Euclidean distance (the maximin criterion)
    pairs_at_min: int  # number of row pairs at that distance (within 1e-12)
    mean_nn_distance: float  # mean over rows of the distance to the nearest other row


def _as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Normalise a seed (None, int or Generator) into the one Generator used throughout."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise DesignError(f"seed must be None, an int or a numpy Generator, but got {seed!r}")
    return np.random.default_rng(int(seed))


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the integer rows of ``a`` and ``b`` (exact)."""
    diff = a[:, None, :].astype(np.float64) - b[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def design_quality(points: np.ndarray, subset_size: int) -> DesignQuality:
    """Maximin measures of a design, with distances on ``points / subset_size``.

    Parameters
    ----------
    points : array_like, shape (n, k)
        Design rows (class counts).
    subset_size : int
        The row total the counts are divided by before measuring distances.

    Returns
    -------
    DesignQuality
        For fewer than two rows the distances are ``inf`` and ``pairs_at_min`` is 0.
    """
    s = _as_int(subset_size, "subset_size")
    if s < 1:
        raise DesignError(f"subset_size must be a positive integer, but got {s}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise DesignError(
            f"points must be a 2-D array (rows x classes), but got shape {pts.shape}"
        )
    if pts.shape[0] < 2:
        return DesignQuality(min_distance=math.inf, pairs_at_min=0, mean_nn_distance=math.inf)
    dist = np.sqrt(_sq_dist(pts, pts)) / s
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(axis=1)
    d_min = float(nearest.min())
    pairs = int(np.count_nonzero(np.triu(dist <= d_min + 1e-12, k=1)))
    return DesignQuality(
        min_distance=d_min, pairs_at_min=pairs, mean_nn_distance=float(nearest.mean())
    )


def _criterion(points: np.ndarray) -> tuple[float, int]:
    """(min squared distance, pairs at it) in counts; exact because the counts are integers."""
    if points.shape[0] < 2:
        return math.inf, 0
    d2 = _sq_dist(points, points)
    d2[np.diag_indices_from(d2)] = np.inf
    d_min = float(d2.min())
    return d_min, int(np.count_nonzero(d2 == d_min)) // 2


def _rank(points: np.ndarray) -> tuple[float, int]:
    """Sort key for designs: larger minimum distance first, then fewer pairs at it."""
    d_min, pairs = _criterion(points)
    return d_min, -pairs


def _fresh_draws(
    sampler: FeasibleSampler, per_step: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Yield ``per_step`` uniform draws per exchange step, sampling many steps at once."""
    while True:
        block = sampler.sample(per_step * _DRAW_CHUNK, rng)
        yield from block.reshape(_DRAW_CHUNK, per_step, -1)


def _paper_run(
    sampler: FeasibleSampler, n_rows: int, iterations: int, rng: np.random.Generator
) -> np.ndarray:
    """Algorithm 1: replace one row of the closest pair by one random candidate if it helps."""
    design = distinct_draws(sampler, n_rows, rng)
    if n_rows < 2:
        return design
    best, _ = _criterion(design)
    draws = _fresh_draws(sampler, 1, rng)
    for _ in range(iterations):
        d2 = _sq_dist(design, design)
        d2[np.diag_indices_from(d2)] = np.inf
        pair = np.unravel_index(int(np.argmin(d2)), d2.shape)
        trial = design.copy()
        trial[pair[int(rng.integers(2))]] = next(draws)[0]
        d_min, _ = _criterion(trial)
        if d_min > best:
            design, best = trial, d_min
    return design


def _farthest_points(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy farthest-point selection of ``n`` distinct rows from a pool, random first row."""
    pool = pool[rng.permutation(pool.shape[0])]
    pts = pool.astype(np.float64)
    chosen = [0]
    gap = np.einsum("ij,ij->i", pts - pts[0], pts - pts[0])
    for _ in range(n - 1):
        j = int(np.argmax(gap))
        chosen.append(j)
        diff = pts - pts[j]
        gap = np.minimum(gap, np.einsum("ij,ij->i", diff, diff))
    return pool[chosen]


def _start_pool(sampler: FeasibleSampler, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Candidate rows for the initial design: uniform draws, lattice points and vertices."""
    if sampler.count() <= _ENUMERATE_LIMIT:
        return sampler.enumerate()
    n_uniform = min(max(_POOL_MIN, _POOL_PER_ROW * n_rows), _POOL_MAX)
    parts = [sampler.sample(n_uniform, rng), lattice_points(sampler), vertex_points(sampler, rng)]
    pool = unique_rows(np.concatenate(parts))
    if pool.shape[0] < n_rows:
        pool = unique_rows(np.concatenate((pool, distinct_draws(sampler, n_rows, rng))))
    return pool


def _local_moves(
    x: np.ndarray,
    away: np.ndarray,
    m: int,
    sampler: FeasibleSampler,
    rng: np.random.Generator,
) -> np.ndarray:
    """``m`` moves of ``x`` that transfer images from one class to another within the bounds.

    Half the moves pick classes at random; the other half prefer taking from classes where ``x``
    has fewer images than its nearest neighbour ``away`` and giving to classes where it has more
    (moving away from it). Step sizes are log-uniform between 1 image and ``s``, cut to what the
    bounds allow.
    """
    k, s = x.size, sampler.subset_size
    src = rng.integers(k, size=m)
    dst = (src + rng.integers(1, k, size=m)) % k
    half = m // 2
    if half:
        diff = (x - away) / (np.abs(x - away).max() / 2.0 + 1.0)
        src[:half] = np.argmax(rng.gumbel(size=(half, k)) - diff, axis=1)
        dst[:half] = np.argmax(rng.gumbel(size=(half, k)) + diff, axis=1)
        clash = src[:half] == dst[:half]
        dst[:half][clash] = (src[:half][clash] + rng.integers(1, k, size=int(clash.sum()))) % k
    room = np.minimum(x[src] - sampler.lower[src], sampler.upper[dst] - x[dst])
    step = np.rint(np.exp(rng.uniform(0.0, math.log(s), size=m))).astype(np.int64)
    step = np.minimum(step, room)
    moves = np.repeat(x[None, :], m, axis=0)
    rows = np.arange(m)
    moves[rows, src] -= step
    moves[rows, dst] += step
    return moves


def _without_row(d2: np.ndarray, nn_d: np.ndarray, nn_i: np.ndarray, i: int) -> tuple[float, int]:
    """Minimum squared distance and pairs at it of the design with row ``i`` left out, O(n * r).

    Only the ``r`` rows whose nearest neighbour is ``i`` need their row of ``d2`` rescanned.
    """
    rest = nn_d.copy()
    rest[i] = np.inf
    stale = np.flatnonzero(nn_i == i)
    stale = stale[stale != i]
    if stale.size:
        rows = d2[stale]
        rows[:, i] = np.inf
        rest[stale] = rows.min(axis=1)
    base_min = float(rest.min())
    tied = np.flatnonzero(rest == base_min)
    return base_min, int(np.count_nonzero(np.delete(d2[tied], i, axis=1) == base_min)) // 2


def _maximin_run(
    sampler: FeasibleSampler,
    n_rows: int,
    iterations: int,
    n_candidates: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Farthest-point start, then lexicographic best-of-batch exchange with NN bookkeeping."""
    pool = _start_pool(sampler, n_rows, rng)
    design = max((_farthest_points(pool, n_rows, rng) for _ in range(_FPS_STARTS)), key=_rank)
    n = n_rows
    if n < 2 or iterations == 0:
        return design
    d2 = _sq_dist(design, design)
    d2[np.diag_indices(n)] = np.inf
    nn_d, nn_i = d2.min(axis=1), d2.argmin(axis=1)
    cur_min, cur_pairs = _criterion(design)
    n_fresh = max(1, n_candidates // 4)
    n_pool = n_candidates // 4
    n_local = max(0, n_candidates - n_fresh - n_pool)
    draws = _fresh_draws(sampler, n_fresh, rng)
    for _ in range(iterations):
        if rng.random() < 0.5:
            i = int(rng.choice(np.flatnonzero(nn_d == cur_min)))
        else:  # a crowded row, not necessarily at the minimum, to make room by spreading
            rank = min(int(rng.geometric(_CROWD_P)) - 1, n - 1)
            i = int(np.argsort(nn_d, kind="stable")[rank])
        base_min, base_pairs = _without_row(d2, nn_d, nn_i, i)
        # Candidates for row i and their distances to the other rows: O(m * n * k).
        cands = np.concatenate(
            (
                next(draws),
                pool[rng.integers(pool.shape[0], size=n_pool)],
                _local_moves(design[i], design[nn_i[i]], n_local, sampler, rng),
            )
        )
        cd2 = _sq_dist(cands, design)
        cd2[:, i] = np.inf
        c_min = cd2.min(axis=1)
        c_pairs = np.count_nonzero(cd2 == c_min[:, None], axis=1)
        new_min = np.minimum(c_min, base_min)
        new_pairs = np.where(c_min < base_min, c_pairs, base_pairs)
        new_pairs = np.where(c_min == base_min, c_pairs + base_pairs, new_pairs)
        # Third key: change of the design-wide potential sum((d_min^2 / d^2)^power) over pairs;
        # only row i's pairs change, and a strict decrease at equal (min, ties) cannot cycle.
        crowding = ((cur_min / np.maximum(cd2, 0.25)) ** _POTENTIAL_POWER).sum(axis=1)
        crowding -= ((cur_min / d2[i]) ** _POTENTIAL_POWER).sum()
        b = int(np.lexsort((crowding, new_pairs, -new_min))[0])
        gain = (new_min[b] - cur_min, cur_pairs - new_pairs[b], -crowding[b])
        if not gain > (0.0, 0, _POTENTIAL_TOL):
            continue
        row = cd2[b]
        design[i] = cands[b]
        stale = np.flatnonzero((nn_i == i) & (row > nn_d))
        d2[i, :], d2[:, i] = row, row
        closer = row < nn_d
        nn_d[closer], nn_i[closer] = row[closer], i
        if stale.size:
            nn_d[stale], nn_i[stale] = d2[stale].min(axis=1), d2[stale].argmin(axis=1)
        nn_d[i], nn_i[i] = row.min(), row.argmin()
        cur_min, cur_pairs = float(new_min[b]), int(new_pairs[b])
    return design


def maximin_design(
    n_rows: int,
    subset_size: int,
    lower: Sequence[int] | np.ndarray,
    upper: Sequence[int] | np.ndarray,
    *,
    method: Literal["maximin", "paper"] = "maximin",
    iterations: int = 2000,
    n_candidates: int = 64,
    restarts: int = 1,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """A space-filling design of distinct integer class-count rows summing to ``subset_size``.

    Parameters
    ----------
    n_rows : int
        Number of rows (>= 1, at most the number of distinct feasible points).
    subset_size : int
        Total images per row, ``s``.
    lower, upper : array_like of int, shape (k,)
        Inclusive per-class bounds (see :func:`check_bounds`).
    method : {"maximin", "paper"}
        ``"maximin"``: farthest-point start and batch exchange (default). ``"paper"``: the
        paper's Algorithm 1 (random start, one random candidate per step).
    iterations : int
        Exchange steps per run (>= 0); the same budget meaning for both methods.
    n_candidates : int
        Candidates evaluated per exchange step by ``"maximin"`` (>= 1); ``"paper"`` uses one.
    restarts : int
        Independent runs (>= 1); the best by (larger minimum distance, fewer pairs at it) wins.
    seed : int, numpy.random.Generator or None
        Source of randomness; the same int gives the same design.

    Returns
    -------
    numpy.ndarray of int64, shape (n_rows, k)
        Distinct rows; each sums to ``subset_size`` and respects the bounds. The criterion is
        the minimum pairwise Euclidean distance of ``rows / subset_size``.

    Raises
    ------
    DesignError
        On bad options, infeasible bounds, or more rows than distinct feasible points.
    """
    n_rows = _as_int(n_rows, "n_rows")
    if n_rows < 1:
        raise DesignError(f"n_rows must be >= 1, but got {n_rows}")
    iterations = _as_int(iterations, "iterations")
    if iterations < 0:
        raise DesignError(f"iterations must be >= 0, but got {iterations}")
    n_candidates = _as_int(n_candidates, "n_candidates")
    if n_candidates < 1:
        raise DesignError(f"n_candidates must be >= 1, but got {n_candidates}")
    restarts = _as_int(restarts, "restarts")
    if restarts < 1:
        raise DesignError(f"restarts must be >= 1, but got {restarts}")
    if method not in METHODS:
        raise DesignError(f"method must be one of {METHODS}, but got {method!r}")
    rng = _as_generator(seed)
    check_bounds(subset_size, lower, upper)
    sampler = FeasibleSampler(subset_size, lower, upper)
    available = sampler.count()
    if n_rows > available:
        raise DesignError(
            f"n_rows must be <= the number of distinct feasible points, but got n_rows={n_rows} "
            f"> {available:.0f} feasible points"
        )
    best, best_key = None, (-math.inf, 0)
    for _ in range(restarts):
        if method == "paper":
            design = _paper_run(sampler, n_rows, iterations, rng)
        else:
            design = _maximin_run(sampler, n_rows, iterations, n_candidates, rng)
        d_min, pairs = _criterion(design)
        if best is None or (d_min, -pairs) > best_key:
            best, best_key = design, (d_min, -pairs)
    return np.ascontiguousarray(best, dtype=np.int64)
