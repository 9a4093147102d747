"""Extrapolation of each law family and fitting rule on a public learning-curve benchmark.

Data: ``../shared/data/scaling_benchmark/benchmark.vision.csv`` (Alabdulmohsin, Neyshabur and
Zhai 2022; 72 image-classification curves, see ``SOURCE.md`` beside it). Protocol, per curve:
fit on the ``Training == 1`` rows (x = seen examples, y = downstream error), predict the
``Training == 0`` rows (larger x), and score with the RMSE of ``log(predicted error) -
log(true error)``. The methods, the in-curve backtest and the 90 % interval are defined in
``benchmarks/_curves.py`` (shared with part (a) of ``bench_extrapolation.py``); the families are
fitted as :class:`mixscale.fit.ScalingLaw` fits them (accuracy least squares), ``m4-log`` and
``m4-log-prior`` with :func:`mixscale.fit.priors.fit_curve`.

Published reference for M4 on this file: mean 0.0415, median 0.030, best on 70 % of the 72
curves, about 8 s of CPU per curve.

Usage: ``python benchmarks/bench_scaling_benchmark.py [--csv PATH] [--random-starts 2]
[--methods m4,m4-log] [--quick] [--scores OUT.csv] [--derive-prior]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _curves import DEFAULT_CSV, METHODS, derive_prior, evaluate_curves, format_table  # noqa: E402


def main() -> None:
    """Parse the options, score the methods and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--random-starts", type=int, default=2,
                        help="seeded random starts per fit, after the family's grid")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="every sixth curve (12 curves)")
    parser.add_argument("--scores", type=Path, default=None,
                        help="also write the per-curve scores to this CSV")
    parser.add_argument("--derive-prior", action="store_true",
                        help="print the population prior the pipeline ships (M4_PRIOR) and stop")
    args = parser.parse_args()
    if args.derive_prior:
        prior = derive_prior(args.csv, random_starts=4)
        print(f"center={tuple(round(v, 4) for v in prior.center)}")
        print(f"scale={tuple(round(v, 4) for v in prior.scale)}")
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    scores = evaluate_curves(args.csv, methods, quick=args.quick,
                             random_starts=args.random_starts)
    if args.scores is not None:
        scores.to_csv(args.scores, index=False)
    print(format_table(scores))


if __name__ == "__main__":
    main()
