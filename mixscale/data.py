"""Datasets, per-class index tables and deterministic per-row subsets.

A dataset is held as numpy arrays (images ``N x C x H x W`` float32, already normalised) with a
fixed, seeded, stratified train/test split; per-class availability in the training split caps
the design. A row's subset is drawn per class without replacement from a generator seeded by
the row's seed, so the same row and seed always give the same images.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mixscale.config import DATASETS
from mixscale.errors import MixscaleError

__all__ = [
    "ImageDataset",
    "load_dataset",
    "sanitize_class_name",
    "sample_subset",
    "subset_hash",
]

SPLIT_SEED = 0  # the train/test split is fixed: every row of every design sees the same test set
TEST_FRACTION = 0.25  # share of each class held out as the test split (digits)


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """An image-classification dataset split into train and test arrays."""

    name: str  # dataset name as given on the command line
    class_names: tuple[str, ...]  # human-readable class names, in label order
    train_images: np.ndarray  # (N, C, H, W) float32, normalised
    train_labels: np.ndarray  # (N,) int64 labels in [0, n_classes)
    test_images: np.ndarray  # (M, C, H, W) float32, normalised
    test_labels: np.ndarray  # (M,) int64

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def class_keys(self) -> tuple[str, ...]:
        """MLflow-safe class keys (see :func:`sanitize_class_name`)."""
        return tuple(sanitize_class_name(c) for c in self.class_names)

    @property
    def count_columns(self) -> tuple[str, ...]:
        """Parameter / column names ``n_<class>`` in label order."""
        return tuple(f"n_{k}" for k in self.class_keys)

    @property
    def available(self) -> np.ndarray:
        """Training images per class (int64), the design's default upper bounds."""
        return np.bincount(self.train_labels, minlength=self.n_classes).astype(np.int64)


def sanitize_class_name(name: str) -> str:
    """Make a class name usable in MLflow param/metric keys and DataFrame columns.

    Rule: every run of characters outside ``[A-Za-z0-9_]`` becomes one ``_``; leading and
    trailing ``_`` are stripped; an empty result raises. ``"sea lion"`` -> ``"sea_lion"``.
    """
    key = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_")
    if not key:
        raise MixscaleError(f"class name {name!r} has no letters or digits to build a key from.")
    return key


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(len(idx) * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@lru_cache(maxsize=4)
def _load_digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    mean, std = images.mean(), images.std()
    images = (images - mean) / std
    labels = bunch.target.astype(np.int64)
    train, test = _stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    for a in (images, labels):
        a.setflags(write=False)
    return ImageDataset(
        name="digits",
        class_names=tuple(str(c) for c in bunch.target_names),
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test],
        test_labels=labels[test],
    )


def load_dataset(name: str) -> ImageDataset:
    """Load a dataset by name with its fixed, seeded, stratified train/test split.

    Parameters
    ----------
    name : str
        One of :data:`mixscale.config.DATASETS` (``"digits"``: scikit-learn's bundled 8x8
        handwritten digits, 1,797 images in 10 classes; 25 % of each class is the test split).

    Returns
    -------
    ImageDataset

    Raises
    ------
    MixscaleError
        For an unknown dataset name.
    """
    if name == "digits":
        return _load_digits()
    raise MixscaleError(
        f"unknown dataset {name!r}; allowed: {', '.join(repr(d) for d in DATASETS)}."
    )


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
