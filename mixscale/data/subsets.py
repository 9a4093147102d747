"""A row's images: drawn per class without replacement, seeded by the row, and hashed; and the
test images every evaluation scores (the whole test split, or a fixed stratified subset of it).

The same row and seed always give the same images.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mixscale.errors import MixscaleError

__all__ = ["EVAL_SEED", "EVAL_IMAGES_AUTO", "sample_subset", "subset_hash", "eval_subset"]

EVAL_SEED = 0  # seeds the --eval-images subset: every row of every design scores the same images
# Test images the evaluations before a row's last score by default (--eval-images 0): on
# Fashion-MNIST the whole 10,000-image split at every evaluation took 63 % of a row's time; a
# fixed 2,000 (binomial noise about 1 point at 75 %) leaves it under a third, and the last
# evaluation, the one a converged row is judged by, scores the whole split anyway.
EVAL_IMAGES_AUTO = 2000


def sample_subset(labels: np.ndarray, counts: np.ndarray, *, seed: int) -> np.ndarray:
    """Indices of exactly ``counts[c]`` images of each class, drawn without replacement.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Labels of the pool to draw from.
    counts : ndarray of int, shape (n_classes,)
        Images wanted per class.
    seed : int
        Seeds the draw: the same labels, counts and seed give the same indices.

    Returns
    -------
    ndarray of int64
        Sorted indices into ``labels``.

    Raises
    ------
    MixscaleError
        If a count is negative or larger than what the class has.
    """
    counts = np.asarray(counts)
    available = np.bincount(labels, minlength=len(counts))
    rng = np.random.default_rng(seed)
    chosen = []
    for c, n in enumerate(counts):
        if n < 0 or n > available[c]:
            raise MixscaleError(
                f"class {c} needs 0 <= count <= {available[c]} (images available), "
                f"but got count={n}."
            )
        pool = np.flatnonzero(labels == c)
        chosen.append(rng.choice(pool, size=int(n), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subset_hash(indices: np.ndarray) -> str:
    """Short, stable hash of a subset's image indices (logged so subsets can be compared)."""
    data = np.ascontiguousarray(np.sort(np.asarray(indices, dtype=np.int64))).tobytes()
    return hashlib.sha256(data).hexdigest()[:12]


def eval_subset(labels: np.ndarray, n: int, *, n_classes: int, seed: int = EVAL_SEED
                ) -> np.ndarray:
    """Indices of the test images every evaluation scores: the whole split, or ``n`` of them.

    The subset is stratified (each class gets its share of ``n``, by largest remainder, and at
    least one image) and drawn with ``seed``, so every row scored with the same ``n`` sees the
    same images.

    Parameters
    ----------
    labels : ndarray of int, shape (M,)
        Labels of the test split.
    n : int
        Images to score; 0 = the whole split (as does ``n == M``).
    n_classes : int
        Classes of the dataset (the smallest allowed ``n``).
    seed : int
        Seeds the draw (:data:`EVAL_SEED` by default).

    Returns
    -------
    ndarray of int64
        Sorted indices into ``labels`` (``arange(M)`` for the whole split).

    Raises
    ------
    MixscaleError
        If ``n`` is neither 0 nor in ``[n_classes, M]``; the message names ``n`` and the range.
    """
    labels = np.asarray(labels, dtype=np.int64)
    total = len(labels)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not (
            n == 0 or n_classes <= n <= total):
        raise MixscaleError(
            f"--eval-images must be 0 (the default) or in [{n_classes}, {total}] (at "
            f"least one image per class, at most the test split's {total}), but got "
            f"eval_images={n!r}.")
    if n in (0, total):
        return np.arange(total, dtype=np.int64)
    have = np.bincount(labels, minlength=n_classes)
    exact = n * have / total
    take = np.minimum(np.maximum(np.floor(exact).astype(np.int64), (have > 0).astype(np.int64)),
                      have)
    while take.sum() > n:  # the one-per-class floor overshot: take from classes above one
        take[int(np.argmax(np.where(take > 1, take - exact, -np.inf)))] -= 1
    while take.sum() < n:  # the rest by largest remainder, to classes with images left
        take[int(np.argmax(np.where(take < have, exact - take, -np.inf)))] += 1
    return sample_subset(labels, take, seed=seed)
