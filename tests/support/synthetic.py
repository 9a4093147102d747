"""A synthetic per-class truth OUTSIDE every fitted law family, and fit tables drawn from it.

Benchmarks and tests of extrapolation need rows whose true accuracy is known at sizes beyond the
design. The truth here is deliberately none of the fitted forms (no power law, no sigmoid in log
space, no shared link ``z``): class ``c``, with ``x_c`` training images of its own out of
``T`` in all after ``e`` epochs, scores

    acc_c = ceil_c * E(e) * [mix_c * (1 - exp(-(x_c / d_c) ** a_c)) + (1 - mix_c) * T / (T + D_c)]

(0 when ``x_c == 0``): a Weibull-type saturation in the class's own count mixed with a
hyperbolic transfer from the whole subset, class-specific difficulty ``d_c, D_c``, shape
``a_c`` and ceiling ``ceil_c``, times an epoch saturation ``E(e) = 1 - b exp(-e / tau)`` that
is the same for every size, so epochs never replace data. The overall accuracy is the
test-frequency-weighted mean of the classes', as on a real test split.

Noise, as a real run has it (scaled by ``noise``; 0 gives the truth itself):

* between seeds: each run draws a logit offset shared by its classes and one per class;
* evaluation: each (run, epoch) counts correct answers on a finite test split per class
  (binomial), and the overall accuracy is correct / test images, exactly a weighted mean of the
  per-class accuracies (what :class:`mixscale.fit.classlaw.ClassLaw` checks).

:func:`synthetic_table` returns a fit table in :func:`mixscale.track.assemble_table`'s exact
format (``class_metrics=True``); :func:`truth_rows` gives held-out rows at larger sizes (1.5 S
and 2 S) with the noise-free truth beside the observed accuracy; :func:`truth` is the truth.
Everything is seeded and takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from mixscale.design import FeasibleSampler

__all__ = ["SyntheticTruth", "truth", "synthetic_table", "truth_rows", "oracle_fit",
           "DEFAULT_SIZES", "DEFAULT_EPOCHS", "count_columns", "class_columns"]

DEFAULT_SIZES = (100, 200, 300, 400)  # the design's sizes; S = 400
DEFAULT_EPOCHS = tuple(range(4, 41, 4))  # logged evaluations (fit's min_epoch 10 keeps 8)
_TRUTH_SEED = 20261201  # the truth's parameters are fixed: one world per class count
_SEED_SD = (0.08, 0.12)  # between-seed logit sd: shared by a run's classes, and per class


def count_columns(n_classes: int) -> list[str]:
    """``n_0 ... n_<k-1>``: the count columns of a synthetic table."""
    return [f"n_{c}" for c in range(n_classes)]


def class_columns(n_classes: int) -> list[str]:
    """``accuracy_0 ... accuracy_<k-1>``: the per-class accuracy columns."""
    return [f"accuracy_{c}" for c in range(n_classes)]


@dataclass(frozen=True)
class SyntheticTruth:
    """The per-class truth of ``n_classes`` classes (parameters drawn once from ``seed``)."""

    n_classes: int = 10
    seed: int = _TRUTH_SEED

    def params(self) -> dict[str, np.ndarray]:
        """Per class ``ceil, mix, d, a, D`` and test-split size ``test``; epoch ``b, tau``."""
        rng = np.random.default_rng([self.seed, self.n_classes])
        k = self.n_classes
        return {
            "ceil": rng.uniform(0.86, 0.99, k),  # the best a class can ever score
            "mix": rng.uniform(0.45, 0.8, k),  # share of own-count learning vs transfer
            "d": rng.uniform(5.0, 30.0, k),  # own images for 63 % of the own-count term
            "a": rng.uniform(0.55, 0.9, k),  # Weibull shape: slow, long saturation
            "D": rng.uniform(120.0, 700.0, k),  # total images for half the transfer term
            "test": rng.integers(60, 140, k),  # test images per class (unequal frequencies)
            "b": np.array(0.55),
            "tau": np.array(6.0),
        }

    def per_class(self, counts: np.ndarray, epoch: np.ndarray) -> np.ndarray:
        """True per-class accuracy, shape ``(n, k)``, for counts ``(n, k)`` and epochs ``(n,)``."""
        counts = np.asarray(counts, dtype=float)
        if counts.ndim != 2 or counts.shape[1] != self.n_classes:
            raise ValueError(f"counts must have shape (n, {self.n_classes}), got {counts.shape}")
        return _form(self.params(), counts, epoch)

    def frequencies(self) -> np.ndarray:
        """Test-split class frequencies (sum 1)."""
        test = self.params()["test"].astype(float)
        return test / test.sum()

    def __call__(self, counts: np.ndarray, epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(overall, per_class)``: true overall accuracy ``(n,)`` and per class ``(n, k)``."""
        per_class = self.per_class(counts, epoch)
        return per_class @ self.frequencies(), per_class


def _form(p: dict[str, np.ndarray], counts: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    """The truth's form (module docstring) at parameters ``p`` (:meth:`SyntheticTruth.params`'
    keys): per-class accuracy ``(n, k)``."""
    epoch = np.broadcast_to(np.asarray(epoch, dtype=float), (len(counts),))
    total = counts.sum(axis=1, keepdims=True)
    own = 1.0 - np.exp(-((counts / p["d"]) ** p["a"]))
    transfer = total / (total + p["D"])
    saturation = 1.0 - p["b"] * np.exp(-epoch / p["tau"])
    acc = p["ceil"] * saturation[:, None] * (p["mix"] * own + (1 - p["mix"]) * transfer)
    return np.where(counts > 0, acc, 0.0)


_ORACLE_KEYS = ("ceil", "mix", "d", "a", "D")  # per class; then the shared b, tau
_ORACLE_LO, _ORACLE_HI = (0.3, 0.0, 0.5, 0.1, 5.0), (1.0, 1.0, 500.0, 3.0, 1e4)


def oracle_fit(table: pd.DataFrame, *, n_starts: int = 4, seed: int = 0
               ) -> Callable[[pd.DataFrame], np.ndarray]:
    """The truth's own form refitted to ``table``'s per-class accuracies: the yardstick of what
    the best law can do on a design (no law is better than the true form refitted to the
    same noisy rows, bar luck).

    Least squares of every class's accuracy on the rows where it has images (its 5
    parameters, plus the shared epoch ``b, tau``), best of ``n_starts`` starts (the first at
    typical values, the others jittered from it). The test frequencies are the truth's
    (``SyntheticTruth.frequencies``). Returns ``predict(frame) -> overall accuracy``.
    """
    columns = [c for c in table.columns if c.startswith("n_")]
    k = len(columns)
    counts = table[columns].to_numpy(float)
    epoch = table["epoch"].to_numpy(float)
    targets = table[class_columns(k)].to_numpy(float)
    has = counts > 0
    lo = np.r_[np.tile(_ORACLE_LO, k), 0.0, 0.5]
    hi = np.r_[np.tile(_ORACLE_HI, k), 1.0, 50.0]

    def params(theta: np.ndarray) -> dict[str, np.ndarray]:
        per = theta[:-2].reshape(k, len(_ORACLE_KEYS))
        return {**{key: per[:, j] for j, key in enumerate(_ORACLE_KEYS)},
                "b": theta[-2], "tau": theta[-1]}

    rng = np.random.default_rng(seed)
    typical = np.r_[np.tile([0.9, 0.6, 15.0, 0.7, 300.0], k), 0.5, 6.0]
    best = None
    for i in range(n_starts):
        start = typical * (np.exp(rng.normal(0.0, 0.3, typical.size)) if i else 1.0)
        start = np.clip(start, lo + 1e-6, hi - 1e-6)
        res = least_squares(lambda th: (_form(params(th), counts, epoch) - targets)[has],
                            start, bounds=(lo, hi))
        if best is None or res.cost < best.cost:
            best = res
    fitted, freq = params(best.x), SyntheticTruth(k).frequencies()

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return _form(fitted, frame[columns].to_numpy(float), frame["epoch"].to_numpy(float)) @ freq

    return predict


def truth(counts: np.ndarray, epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The default truth for ``counts.shape[1]`` classes: ``(overall (n,), per_class (n, k))``."""
    counts = np.atleast_2d(np.asarray(counts))
    return SyntheticTruth(counts.shape[1])(counts, epoch)


def _mixes(size: int, n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` space-filling class mixes of ``size`` images: the design's exact uniform sampler,
    best of a few draws by the smallest pairwise distance (cheap maximin)."""
    sampler = FeasibleSampler(int(size), np.zeros(n_classes, dtype=int),
                              np.full(n_classes, int(size)))
    best, best_gap = None, -1.0
    for _ in range(8):
        draw = sampler.sample(n, rng)
        gaps = np.linalg.norm(draw[:, None, :] - draw[None, :, :], axis=-1)
        gap = gaps[np.triu_indices(n, 1)].min() if n > 1 else 0.0
        if gap > best_gap:
            best, best_gap = draw, gap
    return best


def _rows(sizes: Sequence[int], rows_per_size: int, seeds: int, epochs: Sequence[int],
          n_classes: int, seed: int, noise: float, val_share: float,
          world: SyntheticTruth) -> tuple[pd.DataFrame, np.ndarray]:
    """The table (format of :func:`synthetic_table`) and the noise-free overall truth."""
    if not sizes or rows_per_size < 1 or seeds < 1 or not epochs or n_classes < 2:
        raise ValueError("need sizes, rows_per_size >= 1, seeds >= 1, epochs and >= 2 classes")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng([seed, 7])
    epochs = np.asarray(sorted(epochs), dtype=np.int64)
    test = world.params()["test"]
    n_val = int(round(rows_per_size * val_share))
    frames, truths = [], []
    for size in sizes:
        for i, mix in enumerate(_mixes(int(size), rows_per_size, n_classes, rng)):
            role = "validation" if i >= rows_per_size - n_val else "train"
            counts = np.repeat(mix[None, :], len(epochs), axis=0)
            overall, per_class = world(counts, epochs)
            for _ in range(seeds):
                offset = noise * (rng.normal(0, _SEED_SD[0]) + rng.normal(0, _SEED_SD[1],
                                                                            n_classes))
                logit = np.log(np.clip(per_class, 1e-6, 1 - 1e-6) / np.clip(
                    1 - per_class, 1e-6, 1))
                p = np.where(mix > 0, 1 / (1 + np.exp(-(logit + offset))), 0.0)
                if noise > 0:
                    correct = rng.binomial(test, np.clip(p, 0, 1))
                    acc_c = correct / test
                else:
                    acc_c = per_class
                frame = pd.DataFrame({"accuracy": acc_c @ test / test.sum()})
                for c in range(n_classes):
                    frame[f"n_{c}"] = int(mix[c])
                frame["epoch"] = epochs
                frame["total_n"] = int(mix.sum())
                frame["subset_size"] = int(size)
                frame["role"] = role
                frame["run_id"] = rng.bytes(16).hex()
                frame["design_id"] = "synthetic"
                for c in range(n_classes):
                    frame[f"accuracy_{c}"] = acc_c[:, c].astype(float)
                frames.append(frame)
                truths.append(pd.Series(overall, index=frame.index))
    table = pd.concat(frames, ignore_index=True)
    true = pd.concat(truths, ignore_index=True).to_numpy()
    order = np.lexsort((table["epoch"].to_numpy(), table["run_id"].to_numpy()))
    return table.iloc[order].reset_index(drop=True), true[order]


def synthetic_table(*, sizes: Sequence[int] = DEFAULT_SIZES, rows_per_size: int = 6,
                    seeds: int = 1, epochs: Sequence[int] = DEFAULT_EPOCHS,
                    n_classes: int = 10, seed: int = 0, noise: float = 1.0,
                    val_share: float = 1 / 3) -> pd.DataFrame:
    """A fit table drawn from the synthetic truth, in ``assemble_table``'s exact format.

    Parameters
    ----------
    sizes : sequence of int
        Subset sizes of the design (the largest is S).
    rows_per_size : int
        Distinct class mixes per size; the last ``round(rows_per_size * val_share)`` of each
        size are validation rows, the others training rows.
    seeds : int
        Runs (training seeds) per mix, each with its own between-seed noise and run id.
    epochs : sequence of int
        The logged evaluation epochs of every run.
    n_classes : int
        Number of classes (columns ``n_0 ...``; truth parameters fixed per class count).
    seed : int
        Seed of the mixes and the noise.
    noise : float
        Noise scale: 1 = realistic (binomial test split + between-seed offsets), 0 = exact truth.
    val_share : float
        Share of each size's mixes that are validation rows.

    Returns
    -------
    DataFrame
        ``accuracy, n_<class>..., epoch, total_n, subset_size, role, run_id, design_id,
        accuracy_<class>...``, one row per (run, epoch), sorted by run id and epoch.
    """
    table, _ = _rows(sizes, rows_per_size, seeds, epochs, n_classes, seed, noise, val_share,
                     SyntheticTruth(n_classes))
    return table


def truth_rows(*, design_max: int = DEFAULT_SIZES[-1], ratios: Sequence[float] = (1.5, 2.0),
               rows_per_size: int = 6, seeds: int = 2, epochs: Sequence[int] = DEFAULT_EPOCHS,
               n_classes: int = 10, seed: int = 1, noise: float = 1.0) -> pd.DataFrame:
    """Held-out rows at ``ratio * design_max`` images (default 1.5 S and 2 S).

    The same format as :func:`synthetic_table` (every row has role ``validation``) plus
    ``truth`` (the noise-free overall accuracy) and ``ratio`` (size / ``design_max``), so a
    prediction can be scored on the observed accuracy (what a held-out run would show) and on
    the truth.
    """
    sizes = [int(round(r * design_max)) for r in ratios]
    table, true = _rows(sizes, rows_per_size, seeds, epochs, n_classes, seed, noise, 0.0,
                        SyntheticTruth(n_classes))
    table["role"] = "validation"
    table["truth"] = true
    table["ratio"] = table["subset_size"] / design_max
    return table
