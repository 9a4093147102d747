"""Whether a trained row measured its data: the two checks every row logs.

A row's accuracy feeds every law fitted to it, so it must be what its subset allows, not how far
the optimiser got:

* **convergence**: the gain in test accuracy over the last third of training, in points, on
  the same test images (the intermediate evaluations' subset): the last evaluation against the
  best one up to two thirds of training. A row that still gains more than
  :data:`RISING_POINTS` there was stopped on the rise.
* **a classifier that needs no training**: 1-nearest-neighbour on the raw pixels of the same
  subset, scored on the same test images as the row's last evaluation. A network that loses to
  it learnt less from the images than a lookup table does.

This module is pure numpy and scikit-learn; :mod:`mixscale.stages.rows` logs what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RISING_POINTS", "SUBSET_ACCURACY", "RowCheck", "last_third_gain",
           "baseline_accuracy", "check_row"]

RISING_POINTS = 1.0  # a row gaining more than this (points) over its last third is still rising
# The last evaluation's accuracy on the intermediate evaluations' test subset (logged when the
# last evaluation scores the whole split and the others a subset), so the gain compares alike.
SUBSET_ACCURACY = "subset_test_accuracy"


@dataclass(frozen=True)
class RowCheck:
    """The two checks of one row, as logged on its run."""

    gain_points: float  # test accuracy gained over the last third of training (nan: unknown)
    baseline: float  # accuracy of 1-NN on the row's pixels, on the last evaluation's images
    accuracy: float  # the row's last test accuracy (same images as ``baseline``)

    @property
    def rising(self) -> bool:
        """The row gained more than :data:`RISING_POINTS` over its last third."""
        return bool(np.isfinite(self.gain_points) and self.gain_points > RISING_POINTS)

    @property
    def below_baseline(self) -> bool:
        """The row's network scored no better than 1-NN on the same images."""
        return bool(self.accuracy <= self.baseline)

    @property
    def verdict(self) -> str:
        """``ok``, or what is wrong in words (the row run's tag ``mixscale.row_check``)."""
        faults = []
        if self.rising:
            faults.append(f"still rising: +{self.gain_points:.1f} points over the last third "
                          f"of training (more than {RISING_POINTS:g})")
        if self.below_baseline:
            faults.append(f"below baseline: {self.accuracy:.3f} vs 1-NN on its pixels "
                          f"{self.baseline:.3f}")
        return "; ".join(faults) or "ok"

    def metrics(self) -> dict[str, float]:
        """``last_third_gain_points``, ``baseline_accuracy`` and ``baseline_margin_points``."""
        out = {"baseline_accuracy": self.baseline,
               "baseline_margin_points": 100.0 * (self.accuracy - self.baseline)}
        if np.isfinite(self.gain_points):
            out["last_third_gain_points"] = self.gain_points
        return out


def last_third_gain(history: Sequence[tuple[int, dict[str, float]]], epochs: int) -> float:
    """Points of test accuracy the last evaluation gained over the best evaluation up to two
    thirds of training (epoch ``2 * epochs // 3``), both on the same test images; nan with
    fewer than two evaluations.

    The best, not the last, evaluation before the cut is the reference: evaluations while the
    learning rate is still high swing by several points, and one low swing would read as a
    gain. With no evaluation up to the cut the first one is the reference. The last
    evaluation's :data:`SUBSET_ACCURACY` is used when present (it scored the whole split, the
    others a subset).

    Examples
    --------
    >>> h = [(12, {"test_accuracy": 0.80}), (18, {"test_accuracy": 0.70}),
    ...      (24, {"test_accuracy": 0.82}), (30, {"test_accuracy": 0.9, SUBSET_ACCURACY: 0.83})]
    >>> round(last_third_gain(h, 30), 6)
    3.0
    """
    if len(history) < 2:
        return float("nan")
    *before, (_, last) = history
    cut = 2 * epochs // 3
    early = [m["test_accuracy"] for e, m in before if e <= cut]
    reference = max(early) if early else before[0][1]["test_accuracy"]
    end = last.get(SUBSET_ACCURACY, last["test_accuracy"])
    return 100.0 * (float(end) - float(reference))


def baseline_accuracy(train_images: np.ndarray, train_labels: np.ndarray,
                      test_images: np.ndarray, test_labels: np.ndarray) -> float:
    """Accuracy of 1-nearest-neighbour (Euclidean, raw pixels) trained on the row's subset.

    Parameters
    ----------
    train_images, test_images : ndarray
        Images of any shape ``(N, ...)``, as stored (uint8 or float); flattened here.
    train_labels, test_labels : ndarray of int

    Returns
    -------
    float
        Share of ``test_images`` whose nearest training image has their label.
    """
    from sklearn.neighbors import KNeighborsClassifier

    def flat(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32).reshape(len(x), -1)

    knn = KNeighborsClassifier(n_neighbors=1).fit(flat(train_images), np.asarray(train_labels))
    return float(knn.score(flat(test_images), np.asarray(test_labels)))


def check_row(history: Sequence[tuple[int, dict[str, float]]], epochs: int, *,
              baseline: float) -> RowCheck:
    """The :class:`RowCheck` of a row's evaluation ``history`` against a ``baseline``
    accuracy (:func:`baseline_accuracy`) scored on the last evaluation's test images."""
    return RowCheck(gain_points=last_third_gain(history, epochs), baseline=float(baseline),
                    accuracy=float(history[-1][1]["test_accuracy"]))
