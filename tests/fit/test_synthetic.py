"""Tests of tests/support/synthetic.py, the per-class truth the extrapolation checks rely on."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from tests.support.synthetic import (
    DEFAULT_EPOCHS,
    DEFAULT_SIZES,
    SyntheticTruth,
    oracle_fit,
    synthetic_table,
    truth,
    truth_rows,
)

K = 4


def test_table_has_assemble_table_format() -> None:
    table = synthetic_table(n_classes=K, rows_per_size=3, seeds=2)
    keys = [str(c) for c in range(K)]
    assert list(table.columns) == ["accuracy", *[f"n_{k}" for k in keys], "epoch", "total_n",
                                   "subset_size", "role", "run_id", "design_id",
                                   *[f"accuracy_{k}" for k in keys]]
    assert set(table["role"]) == {"train", "validation"}
    assert table["run_id"].nunique() == len(DEFAULT_SIZES) * 3 * 2
    assert (table["total_n"] == table["subset_size"]).all()
    assert (table[[f"n_{k}" for k in keys]].sum(axis=1) == table["total_n"]).all()
    assert all(tuple(e) == DEFAULT_EPOCHS for _, e in table.groupby("run_id")["epoch"])
    assert table.equals(table.sort_values(["run_id", "epoch"], kind="stable")
                        .reset_index(drop=True))
    assert table["accuracy"].between(0, 1).all()
    # overall = test-frequency-weighted mean of the per-class accuracies (as ClassLaw needs)
    freq = SyntheticTruth(K).frequencies()
    per_class = table[[f"accuracy_{k}" for k in keys]].to_numpy()
    np.testing.assert_allclose(per_class @ freq, table["accuracy"], atol=1e-12)


def test_seeded_and_fast() -> None:
    t0 = time.perf_counter()
    a = synthetic_table(seed=3)
    seconds = time.perf_counter() - t0
    pd.testing.assert_frame_equal(a, synthetic_table(seed=3))
    assert not a["accuracy"].equals(synthetic_table(seed=4)["accuracy"])
    assert seconds < 10.0  # ~0.1 s on an idle core: generous for a loaded CI machine


def test_noise_free_table_is_the_truth_and_noise_is_realistic() -> None:
    exact = synthetic_table(noise=0.0, n_classes=K)
    counts = exact[[f"n_{c}" for c in range(K)]].to_numpy()
    overall, _ = truth(counts, exact["epoch"].to_numpy())
    np.testing.assert_allclose(exact["accuracy"], overall)
    noisy = synthetic_table(noise=1.0, n_classes=K)
    counts = noisy[[f"n_{c}" for c in range(K)]].to_numpy()
    overall, _ = truth(counts, noisy["epoch"].to_numpy())
    sd = float(np.std(noisy["accuracy"] - overall))
    assert 0.01 < sd < 0.06  # between seeds + a finite test split: a few accuracy points


def test_truth_obeys_the_rules() -> None:
    world = SyntheticTruth(K)
    base = np.array([[30, 30, 30, 30]])
    _, per_class = world(base, np.array([20]))
    zero = base.copy()
    zero[0, 1] = 0
    overall0, per_class0 = world(zero, np.array([20]))
    assert per_class0[0, 1] == 0.0 and per_class[0, 1] > 0.3  # no images of a class -> 0
    sizes = np.array([10, 100, 1_000, 100_000])
    grow = np.repeat(sizes[:, None], K, axis=1)
    overall, per_class = world(grow, np.full(len(sizes), 40))
    assert (np.diff(per_class, axis=0) > 0).all()  # more data of every class helps every class
    assert (per_class < world.params()["ceil"]).all() and overall[-1] < 1.0  # bounded ceiling
    epochs = np.array([1, 10, 100, 10_000])
    long, _ = world(np.repeat(base, len(epochs), axis=0), epochs)
    assert (np.diff(long) >= 0).all()
    more_data, _ = world(base * 4, np.array([10]))
    assert long[-1] < more_data[0]  # endless epochs on 120 images < 10 epochs on 480


def test_truth_rows_are_held_out_at_larger_sizes() -> None:
    rows = truth_rows(n_classes=K)
    assert sorted(rows["subset_size"].unique()) == [600, 800]
    assert set(rows["role"]) == {"validation"}
    np.testing.assert_allclose(sorted(rows["ratio"].unique()), [1.5, 2.0])
    last = rows[rows["epoch"] == rows["epoch"].max()]
    gain = last.groupby("subset_size")["truth"].mean()
    design = synthetic_table(n_classes=K, noise=0.0)
    at_s = design.loc[(design["subset_size"] == 400) & (design["epoch"] == 40), "accuracy"]
    assert at_s.mean() < gain[600] < gain[800]  # something left to predict beyond S


def test_oracle_refits_the_truths_own_form() -> None:
    """The benchmark's yardstick: on noise-free rows the truth's form refitted is the truth, also
    at twice the design's largest size; on noisy rows it is off, by the noise alone."""
    exact = synthetic_table(seed=0, noise=0.0)
    held = truth_rows(ratios=(2.0,), noise=0.0)
    np.testing.assert_allclose(oracle_fit(exact)(held), held["truth"], atol=1e-6)
    noisy = synthetic_table(seed=0)
    miss = oracle_fit(noisy)(held) - held["truth"].to_numpy()
    assert 1e-3 < np.sqrt(np.mean(miss ** 2)) < 0.05
