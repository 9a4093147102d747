"""Maximin criterion of the paper's Algorithm 1 vs the default optimiser, side by side.

Both methods get the same number of exchange steps (``--iterations``) and the same seed. The
criterion is the smallest pairwise Euclidean distance of ``rows / subset_size`` (larger is
better); ``ratio`` is default / paper. For three uncapped classes and ten rows the optimum is
the triangular lattice, ``sqrt(2) / 3 = 0.4714``.

Run with ``python benchmarks/bench_design.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from mixscale.design import design_quality, maximin_design

# (k, cap per class or None for uncapped, subset size, rows, known optimum or None)
CASES: list[tuple[int, int | None, int, int, float | None]] = [
    *[(10, 5000, s, n, None) for s in (5000, 25000, 45000) for n in (30, 50)],
    (3, None, 3000, 10, math.sqrt(2) / 3),
]


def _timed(n: int, s: int, lower: np.ndarray, upper: np.ndarray, **kwargs) -> tuple[float, float]:
    start = time.perf_counter()
    rows = maximin_design(n, s, lower, upper, **kwargs)
    return design_quality(rows, s).min_distance, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="exchange steps per method")
    parser.add_argument("--quick", action="store_true", help="200 steps and the smaller cases")
    parser.add_argument("--seed", type=int, default=0, help="seed used for both methods")
    args = parser.parse_args(argv)
    iterations = 200 if args.quick else args.iterations
    cases = [c for c in CASES if c[2] <= 25000 and c[3] <= 30] if args.quick else CASES

    print(f"iterations={iterations} per method, seed={args.seed}, distances on counts / s")
    header = (
        f"{'k':>3} {'cap':>6} {'s':>6} {'n':>3} | {'paper':>7} {'default':>7} {'ratio':>6}"
        f" {'optimum':>7} | {'t_paper':>8} {'t_default':>9}"
    )
    print(header)
    print("-" * len(header))
    for k, cap, s, n, optimum in cases:
        lower = np.zeros(k, dtype=np.int64)
        upper = np.full(k, s if cap is None else cap, dtype=np.int64)
        common = {"iterations": iterations, "seed": args.seed}
        paper, t_paper = _timed(n, s, lower, upper, method="paper", **common)
        best, t_best = _timed(n, s, lower, upper, method="maximin", **common)
        cap_text = "none" if cap is None else str(cap)
        opt_text = "" if optimum is None else f"{optimum:.4f}"
        print(
            f"{k:>3} {cap_text:>6} {s:>6} {n:>3} | {paper:7.4f} {best:7.4f} {best / paper:6.2f}"
            f" {opt_text:>7} | {t_paper:7.2f}s {t_best:8.2f}s"
        )
    _paper_sized(iterations, args.seed)


def _paper_sized(iterations: int, seed: int) -> None:
    """The paper's CIFAR-10 design: 9 sizes x (30 training + 15 validation rows), cap 5,000."""
    start = time.perf_counter()
    lower, upper = np.ones(10, dtype=np.int64), np.full(10, 5000, dtype=np.int64)
    for s in range(5000, 45001, 5000):
        for n, offset in ((30, 0), (15, 1)):
            maximin_design(n, s, lower, upper, iterations=iterations, seed=seed + offset)
    print(f"paper-sized design (9 sizes x 45 rows, k=10, cap 5000, {iterations} iterations per "
          f"design): built in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
