"""A row's two checks: the gain over its last third and 1-NN on its own pixels."""

from __future__ import annotations

import numpy as np
import pytest

from mixscale.data import load_dataset, sample_subset
from mixscale.train import RISING_POINTS, SUBSET_ACCURACY, baseline_accuracy, check_row
from mixscale.train.checks import last_third_gain


def _history(values, epochs=(12, 15, 18, 21, 24, 27, 30)):
    return [(e, {"test_accuracy": v}) for e, v in zip(epochs, values, strict=True)]


def test_gain_is_measured_from_the_best_evaluation_up_to_two_thirds() -> None:
    h = _history([0.5, 0.6, 0.70, 0.72, 0.74, 0.75, 0.76])  # epoch 18 is the last <= 20
    assert last_third_gain(h, 30) == pytest.approx(6.0)
    swing = _history([0.74, 0.62, 0.70, 0.72, 0.74, 0.75, 0.76])  # a low swing at epoch 15
    assert last_third_gain(swing, 30) == pytest.approx(2.0)  # measured from 0.74, not 0.70
    assert last_third_gain(h[-1:], 30) != last_third_gain(h[-1:], 30)  # nan: one evaluation
    late = _history([0.6, 0.7], epochs=(24, 30))  # nothing before 2/3: the first one
    assert last_third_gain(late, 30) == pytest.approx(10.0)


def test_the_gain_compares_the_same_test_images() -> None:
    h = _history([0.70, 0.71, 0.72, 0.72, 0.72, 0.72, 0.80])
    h[-1][1][SUBSET_ACCURACY] = 0.725  # the whole split scored higher, the subset did not
    assert last_third_gain(h, 30) == pytest.approx(0.5)


def test_verdicts() -> None:
    flat = check_row(_history([0.7] * 6 + [0.705]), 30, baseline=0.6)
    assert flat.verdict == "ok" and not flat.rising and not flat.below_baseline
    assert set(flat.metrics()) == {"last_third_gain_points", "baseline_accuracy",
                                   "baseline_margin_points"}
    assert flat.metrics()["baseline_margin_points"] == pytest.approx(10.5)
    rising = check_row(_history([0.5, 0.6, 0.7, 0.72, 0.74, 0.76, 0.78]), 30, baseline=0.6)
    assert rising.rising and rising.verdict.startswith("still rising: +8.0 points")
    assert f"more than {RISING_POINTS:g}" in rising.verdict
    poor = check_row(_history([0.5] * 7), 30, baseline=0.55)
    assert poor.below_baseline and poor.verdict == ("below baseline: 0.500 vs 1-NN on its "
                                                    "pixels 0.550")
    both = check_row(_history([0.3, 0.3, 0.3, 0.4, 0.4, 0.4, 0.5]), 30, baseline=0.6)
    assert both.verdict.count(";") == 1


def test_one_nearest_neighbour_baseline_on_digits() -> None:
    ds = load_dataset("digits")
    few = sample_subset(ds.train_labels, np.full(10, 1), seed=0)
    many = sample_subset(ds.train_labels, np.full(10, 50), seed=0)
    a_few = baseline_accuracy(ds.train_images[few], ds.train_labels[few], ds.test_images,
                              ds.test_labels)
    a_many = baseline_accuracy(ds.train_images[many], ds.train_labels[many], ds.test_images,
                               ds.test_labels)
    assert 0.1 < a_few < a_many  # one image per class beats chance, 50 do better
    assert a_many > 0.9  # 1-NN is strong on digits: a network has to earn its keep
    # the baseline is 1-NN itself: a test image that is a training image is classified right
    assert baseline_accuracy(ds.train_images[many], ds.train_labels[many],
                             ds.train_images[many], ds.train_labels[many]) == 1.0
