"""The test images every evaluation scores: the whole split, or a fixed stratified subset."""

from __future__ import annotations

import numpy as np
import pytest

from mixscale.data import eval_subset, load_dataset
from mixscale.errors import MixscaleError


def test_eval_subset_is_stratified_fixed_and_whole_by_default() -> None:
    labels = load_dataset("digits").test_labels  # 450 images, 44-46 per class
    idx = eval_subset(labels, 100, n_classes=10)
    assert len(idx) == 100 == len(set(idx.tolist()))
    assert np.bincount(labels[idx], minlength=10).tolist() == [10] * 10
    assert np.array_equal(idx, eval_subset(labels, 100, n_classes=10))  # every row: the same
    assert not np.array_equal(idx, eval_subset(labels, 100, n_classes=10, seed=1))
    assert np.array_equal(eval_subset(labels, 0, n_classes=10), np.arange(450))
    assert np.array_equal(eval_subset(labels, 450, n_classes=10), np.arange(450))


def test_eval_subset_gives_every_class_its_share_and_at_least_one() -> None:
    labels = np.array([0] * 98 + [1, 2])
    assert np.bincount(labels[eval_subset(labels, 5, n_classes=3)]).tolist() == [3, 1, 1]
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    assert np.bincount(labels[eval_subset(labels, 7, n_classes=3)]).tolist() == [4, 2, 1]


@pytest.mark.parametrize("n", [9, 451, -1])
def test_eval_subset_refuses_sizes_outside_the_split(n: int) -> None:
    labels = load_dataset("digits").test_labels
    with pytest.raises(MixscaleError, match=rf"--eval-images must be 0 \(the default\) "
                       rf"or in \[10, 450\].*eval_images={n}\."):
        eval_subset(labels, n, n_classes=10)
