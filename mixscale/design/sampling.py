"""Exact uniform sampling and enumeration of bounded integer class counts.

The feasible set of a mixture design row is ``{x in Z^k : sum(x) = s, lower <= x <= upper}``.
:class:`FeasibleSampler` counts it with a dynamic programme over the classes and draws from it
exactly uniformly; the helpers below build the candidate pools that :mod:`mixscale.design`
optimises over. Pure numpy; :mod:`mixscale.design` re-exports the public names.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from mixscale.errors import DesignError

__all__ = ["check_bounds", "FeasibleSampler"]

_ENUMERATE_LIMIT = 20_000  # feasible sets up to this size are listed in full instead of sampled
_LATTICE_POINTS = 4_000  # cap on the simplex-lattice points (summed over resolutions)
_VERTEX_ORDERS = 2_000  # random class orders for the greedy vertex fills (k > 6)


def _as_int(value: object, name: str) -> int:
    """Return ``value`` as a Python int, refusing bools, fractions and non-numbers."""
    if isinstance(value, (bool, np.bool_)):
        raise DesignError(f"{name} must be an integer, but got the bool {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    raise DesignError(f"{name} must be an integer, but got {value!r}")


def _as_counts(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    """Validate a 1-D vector of non-negative whole numbers and return it as int64."""
    if not isinstance(values, np.ndarray) and isinstance(values, Sequence):
        for j, v in enumerate(values):
            if isinstance(v, (bool, np.bool_)):
                raise DesignError(f"{name}[{j}] must be an integer, but got the bool {v!r}")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DesignError(
            f"{name} must be a 1-D sequence of class counts, but got shape {arr.shape}"
        )
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise DesignError(f"{name} must hold integers, but got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) > 2**53))
        if bad.size:
            j = int(bad[0])
            raise DesignError(f"{name}[{j}] must be a whole number, but got {arr[j].item()!r}")
    negative = np.flatnonzero(arr < 0)
    if negative.size:
        j = int(negative[0])
        raise DesignError(f"{name}[{j}] must be >= 0, but got {arr[j].item()!r}")
    return arr.astype(np.int64)


def check_bounds(
    subset_size: int, lower: Sequence[int] | np.ndarray, upper: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-class bounds for rows that sum to ``subset_size``.

    Parameters
    ----------
    subset_size : int
        Total number of images in every row; a positive integer.
    lower, upper : array_like of int, shape (k,)
        Inclusive minimum and maximum count per class (non-negative whole numbers, k >= 2).

    Returns
    -------
    lower, upper : numpy.ndarray of int64, shape (k,)

    Raises
    ------
    DesignError
        If any rule is broken; the message names the rule and the offending value.
    """
    s = _as_int(subset_size, "subset_size")
    if s < 1:
        raise DesignError(f"subset_size must be a positive integer, but got {s}")
    lo = _as_counts(lower, "lower")
    hi = _as_counts(upper, "upper")
    if lo.size != hi.size:
        raise DesignError(
            f"lower and upper must have the same length, but got len(lower)={lo.size} "
            f"and len(upper)={hi.size}"
        )
    if lo.size < 2:
        raise DesignError(f"a mixture design needs at least 2 classes, but got k={lo.size}")
    crossed = np.flatnonzero(lo > hi)
    if crossed.size:
        j = int(crossed[0])
        raise DesignError(
            f"lower <= upper must hold for every class, but got lower[{j}]={lo[j]} > "
            f"upper[{j}]={hi[j]}"
        )
    sl, su = int(lo.sum()), int(hi.sum())
    if sl > s:
        raise DesignError(
            f"sum of lower bounds must be <= subset_size, but got sum(lower)={sl} > "
            f"subset_size={s}"
        )
    if su < s:
        raise DesignError(
            f"subset_size must be <= sum of upper bounds, but got subset_size={s} > "
            f"sum(upper)={su}"
        )
    return lo, hi


def _cumulate(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums ``P[j] = sum(counts[:j])`` and negated suffix sums ``-sum(counts[j:])``."""
    prefix = np.concatenate(([0.0], np.cumsum(counts)))
    suffix = np.concatenate((np.cumsum(counts[::-1])[::-1], [0.0]))
    return prefix, -suffix


def _window_mass(
    prefix: np.ndarray, neg_suffix: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mass of ``counts[a..b]`` from whichever cumulative sum cancels less, and that choice.

    Subtracting prefix sums loses precision on the decaying tail of a layer; there the suffix
    sums outside the window are the small side. Using the smaller outside sum keeps the relative
    rounding error at ``O(eps * s)`` because every layer is log-concave.
    """
    left, right = prefix[a], -neg_suffix[b + 1]
    use_prefix = left <= right
    mass = np.where(use_prefix, prefix[b + 1] - left, -neg_suffix[a] - right)
    return mass, use_prefix


class FeasibleSampler:
    """Exactly uniform draws from ``{x in Z^k : sum(x) = s, lower <= x <= upper}``.

    With ``y = x - lower`` and ``r = s - sum(lower)``, ``N_c(t)`` is the number of ways to fill
    classes ``c..k-1`` with ``t`` images. It is built backwards over the classes with prefix sums
    in ``O(k * r)`` time and memory (two float64 arrays of length ``r + 2`` per class). Each
    layer is rescaled by an exact power of two, so nothing overflows and the probabilities
    ``N_{c+1}(t - y) / N_c(t)`` keep float precision. A draw picks class by class by inverse CDF
    (``np.searchsorted``), vectorised over the draws.

    Parameters
    ----------
    subset_size : int
        Row total ``s``.
    lower, upper : array_like of int, shape (k,)
        Inclusive per-class bounds, checked with :func:`check_bounds`.
    """

    def __init__(
        self,
        subset_size: int,
        lower: Sequence[int] | np.ndarray,
        upper: Sequence[int] | np.ndarray,
    ) -> None:
        self.lower, self.upper = check_bounds(subset_size, lower, upper)
        self.subset_size = _as_int(subset_size, "subset_size")
        self.k = int(self.lower.size)
        self._width = self.upper - self.lower
        self._rest = self.subset_size - int(self.lower.sum())
        r, w, k = self._rest, self._width, self.k
        head = np.concatenate(([0], np.cumsum(w)))  # head[c] = sum(w[:c])
        tail = head[-1] - head  # tail[c] = sum(w[c:])
        self._tail = tail
        # _layers[c] = (prefix, -suffix) of N_c for c = 1..k-1 (index 0 unused).
        self._layers: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * k
        layer = np.zeros(r + 1)
        layer[max(0, r - head[k - 1]) : min(r, w[k - 1]) + 1] = 1.0
        exponent = 0
        for c in range(k - 2, -1, -1):
            self._layers[c + 1] = _cumulate(layer)
            lo_t, hi_t = max(0, r - int(head[c])), min(r, int(tail[c]))
            t = np.arange(lo_t, hi_t + 1)
            mass, _ = _window_mass(*self._layers[c + 1], np.maximum(t - w[c], 0), t)
            layer = np.zeros(r + 1)
            layer[lo_t : hi_t + 1] = mass
            _, e = np.frexp(layer.max())
            layer = np.ldexp(layer, -int(e))
            exponent += int(e)
        self._top, self._exponent = float(layer[r]), exponent

    def count(self) -> float:
        """Number of feasible integer points, as a float.

        Exact while below ``2**53``; ``math.inf`` only if it exceeds the float range.
        """
        try:
            value = math.ldexp(self._top, self._exponent)
        except OverflowError:
            return math.inf
        return float(round(value)) if value < 2.0**53 else value

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` rows exactly uniformly from the feasible set.

        Parameters
        ----------
        n : int
            Number of draws (>= 0).
        rng : numpy.random.Generator
            Source of randomness.

        Returns
        -------
        numpy.ndarray of int64, shape (n, k)
            Every row sums to ``subset_size`` and respects the bounds.
        """
        n = _as_int(n, "n")
        if n < 0:
            raise DesignError(f"n must be >= 0, but got {n}")
        if not isinstance(rng, np.random.Generator):
            raise DesignError(
                f"rng must be a numpy.random.Generator, but got {type(rng).__name__}"
            )
        out = np.empty((n, self.k), dtype=np.int64)
        t = np.full(n, self._rest, dtype=np.int64)
        for c in range(self.k - 1):
            prefix, neg_suffix = self._layers[c + 1]
            a, b = np.maximum(t - self._width[c], 0), t
            _, use_prefix = _window_mass(prefix, neg_suffix, a, b)
            u = rng.random(n)
            nxt = np.empty_like(t)
            p = use_prefix
            lo, hi = prefix[a[p]], prefix[b[p] + 1]
            target = np.minimum(lo + u[p] * (hi - lo), np.nextafter(hi, -np.inf))
            nxt[p] = np.searchsorted(prefix, target, side="right") - 1
            q = ~use_prefix
            lo, hi = -neg_suffix[b[q] + 1], -neg_suffix[a[q]]
            target = np.minimum(lo + u[q] * (hi - lo), np.nextafter(hi, -np.inf))
            nxt[q] = np.searchsorted(neg_suffix, -target, side="left") - 1
            out[:, c] = self.lower[c] + t - nxt
            t = nxt
        out[:, -1] = self.lower[-1] + t
        return out

    def enumerate(self) -> np.ndarray:
        """Every feasible point, shape (count, k), in lexicographic order (small sets only)."""
        if self.count() > _ENUMERATE_LIMIT:
            raise DesignError(
                f"enumeration is limited to {_ENUMERATE_LIMIT} points, but the feasible set has "
                f"{self.count():.0f}"
            )
        return self.lower + _compositions(self._rest, self._width)


def _compositions(total: int, width: np.ndarray) -> np.ndarray:
    """All ``y`` with ``0 <= y <= width`` and ``sum(y) = total`` (lexicographic, int64)."""
    tail = np.concatenate((np.cumsum(width[::-1])[::-1], [0]))
    rows = np.zeros((1, 0), dtype=np.int64)
    rest = np.array([total], dtype=np.int64)
    for c in range(width.size):
        lo = np.maximum(rest - tail[c + 1], 0)
        n_opts = np.maximum(np.minimum(rest, width[c]) - lo + 1, 0)
        parent = np.repeat(np.arange(rest.size), n_opts)
        offset = np.arange(parent.size) - np.repeat(np.cumsum(n_opts) - n_opts, n_opts)
        y = lo[parent] + offset
        rows = np.column_stack((rows[parent], y))
        rest = rest[parent] - y
    return rows


def _round_rows(values: np.ndarray, total: int) -> np.ndarray:
    """Round non-negative rows summing to ``total`` to integers with the same sum."""
    base = np.floor(values).astype(np.int64)
    short = total - base.sum(axis=1)
    order = np.argsort(-(values - base), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(values.shape[1])[None, :], axis=1)
    return base + (rank < short[:, None])


def lattice_points(sampler: FeasibleSampler) -> np.ndarray:
    """Feasible points of simplex lattices anchored at the lower and at the upper bounds.

    For resolutions ``q = 1, 2, ...`` (while the points stay under a cap) the compositions
    ``m`` of ``q`` give ``lower + r * m / q`` and ``upper - (sum(upper) - s) * m / q``, rounded to
    integers with the right sum; points outside the bounds are dropped.
    """
    k, w, r = sampler.k, sampler._width, sampler._rest
    spare = int(w.sum()) - r
    parts, used, q = [], 0, 1
    while (size := math.comb(q + k - 1, k - 1)) + used <= _LATTICE_POINTS:
        m = _compositions(q, np.full(k, q, dtype=np.int64)) / q
        parts.append(sampler.lower + _round_rows(r * m, r))
        parts.append(sampler.upper - _round_rows(spare * m, spare))
        used, q = used + size, q + 1
    if not parts:
        return np.empty((0, k), dtype=np.int64)
    pts = np.concatenate(parts)
    keep = np.all((pts >= sampler.lower) & (pts <= sampler.upper), axis=1)
    return pts[keep]


def vertex_points(sampler: FeasibleSampler, rng: np.random.Generator) -> np.ndarray:
    """Greedy fills: from ``lower``, give each class in turn as much as its cap allows.

    All class orders are used for ``k <= 6``, otherwise ``_VERTEX_ORDERS`` random ones. The fills
    are vertices of the feasible polytope.
    """
    k, w, r = sampler.k, sampler._width, sampler._rest
    if k <= 6:
        grids = np.indices((k,) * k).reshape(k, -1).T
        orders = grids[np.all(np.sort(grids, axis=1) == np.arange(k), axis=1)]
    else:
        orders = np.argsort(rng.random((_VERTEX_ORDERS, k)), axis=1)
    widths = w[orders]
    before = np.cumsum(widths, axis=1) - widths
    fill = np.clip(r - before, 0, widths)
    pts = np.empty_like(fill)
    np.put_along_axis(pts, orders, fill, axis=1)
    return sampler.lower + pts


def distinct_draws(sampler: FeasibleSampler, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct feasible points, a uniformly random ``n``-subset of the feasible set.

    Small sets are listed and subsampled without replacement; otherwise uniform draws are
    deduplicated in draw order until ``n`` remain. Requires ``n <= sampler.count()``.
    """
    if sampler.count() <= _ENUMERATE_LIMIT:
        pts = sampler.enumerate()
        return pts[rng.choice(pts.shape[0], size=n, replace=False)]
    rows = sampler.sample(n, rng)
    while True:
        _, first = np.unique(rows, axis=0, return_index=True)
        if first.size >= n:
            return rows[np.sort(first)[:n]]
        rows = np.concatenate((rows, sampler.sample(max(2 * (n - first.size), 256), rng)))


def unique_rows(points: np.ndarray) -> np.ndarray:
    """Distinct rows of ``points`` in order of first appearance."""
    _, first = np.unique(points, axis=0, return_index=True)
    return points[np.sort(first)]
