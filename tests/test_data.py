"""Datasets: a fixed stratified split, per-class availability, deterministic subsets."""

from __future__ import annotations

import numpy as np
import pytest

from mixscale.data import load_dataset, sample_subset, sanitize_class_name, subset_hash
from mixscale.errors import MixscaleError


def test_digits_split_is_stratified_and_disjoint() -> None:
    ds = load_dataset("digits")
    assert ds.n_classes == 10
    assert ds.count_columns[:2] == ("n_0", "n_1")
    assert ds.train_images.shape[1:] == (1, 8, 8)
    assert ds.train_images.dtype == np.float32
    assert len(ds.train_labels) + len(ds.test_labels) == 1797
    test_share = np.bincount(ds.test_labels) / (np.bincount(ds.test_labels)
                                                + np.bincount(ds.train_labels))
    np.testing.assert_allclose(test_share, 0.25, atol=0.01)
    # no image is in both splits
    train_rows = {r.tobytes() for r in ds.train_images.reshape(len(ds.train_images), -1)}
    overlap = sum(r.tobytes() in train_rows
                  for r in ds.test_images.reshape(len(ds.test_images), -1))
    assert overlap < 5  # digits has a handful of exact duplicate images, nothing more
    assert ds.available.sum() == len(ds.train_labels)


def test_unknown_dataset() -> None:
    with pytest.raises(MixscaleError, match=r"unknown dataset 'cifar7'; allowed: 'digits'"):
        load_dataset("cifar7")


def test_subset_has_exact_counts_and_is_deterministic() -> None:
    ds = load_dataset("digits")
    counts = np.array([5, 0, 12, 1, 3, 7, 9, 2, 4, 30])
    a = sample_subset(ds.train_labels, counts, seed=7)
    b = sample_subset(ds.train_labels, counts, seed=7)
    c = sample_subset(ds.train_labels, counts, seed=8)
    np.testing.assert_array_equal(np.bincount(ds.train_labels[a], minlength=10), counts)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == counts.sum()
    assert subset_hash(a) == subset_hash(b) != subset_hash(c)


def test_subset_refuses_more_than_available() -> None:
    ds = load_dataset("digits")
    counts = np.zeros(10, dtype=int)
    counts[3] = ds.available[3] + 1
    with pytest.raises(MixscaleError, match=r"class 3 needs 0 <= count <= \d+"):
        sample_subset(ds.train_labels, counts, seed=0)


@pytest.mark.parametrize(("name", "key"), [("sea lion", "sea_lion"), ("7", "7"),
                                           ("a/b-c", "a_b_c"), ("__x__", "x")])
def test_sanitize(name: str, key: str) -> None:
    assert sanitize_class_name(name) == key


def test_sanitize_refuses_empty() -> None:
    with pytest.raises(MixscaleError, match="no letters or digits"):
        sanitize_class_name("--")
