"""A row's images: drawn per class without replacement, seeded by the row, and hashed.

The same row and seed always give the same images.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mixscale.errors import MixscaleError

__all__ = ["sample_subset", "subset_hash"]


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
