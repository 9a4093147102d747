"""How to fit the scaling laws: :class:`FitConfig`, checked against the law registries of
:mod:`mixscale.fit.laws` (the one place family and predictor names are written)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mixscale.config import check_choice, check_int
from mixscale.errors import MixscaleError
from mixscale.fit.backtest import SELECTS
from mixscale.fit.laws import FAMILIES, PREDICTORS, bounded_law

__all__ = ["FitConfig"]


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Which scaling laws to fit, and how."""

    # law families (see mixscale.fit.laws): the paper's power law (unbounded: reported, not
    # registered) and the bounded M4, which extrapolates (backtest) far better
    families: tuple[str, ...] = ("power", "m4")
    predictors: tuple[str, ...] = tuple(PREDICTORS)  # linear predictors: the paper's models 0-3
    min_epoch: int = 10  # evaluations before this epoch are dropped (paper: noisy early epochs)
    n_starts: int = 8  # multi-start least-squares starts per law
    loss: Literal["linear", "huber"] = "linear"  # least-squares loss (huber resists outliers)
    n_boot: int = 100  # run-bootstrap replicates for the champion's intervals; 0 = none
    # backtest every law (fit on the sizes up to each but the largest, score on the larger
    # ones; mixscale.fit.backtest), which also gives the old extrap_* score on the largest size
    extrapolate: bool = True
    # also fit the per-class law with diminishing returns (mixscale.fit.classlaw) from the rows'
    # test_accuracy_<class> metrics, and compare, register and serve it like the others
    class_law: bool = True
    # how the champion is chosen among the registered (bounded) laws: "backtest" = lowest
    # backtest RMSE at extrapolation ratios up to 3 (mixscale.fit.backtest), "validation" =
    # lowest validation MSE (the rule before backtests; also the fallback without a fold)
    select: Literal["backtest", "validation"] = "backtest"
    model_name: str | None = None  # registered model name; None = "mixscale-<dataset>"
    seed: int = 0  # seeds the random starts

    def __post_init__(self) -> None:
        if not self.families:
            raise MixscaleError("`families` must name at least one law family.")
        for f in self.families:
            check_choice("law family", f, tuple(FAMILIES))
        if not self.predictors:
            raise MixscaleError("`predictors` must name at least one linear predictor.")
        for p in self.predictors:
            check_choice("predictor", p, tuple(PREDICTORS))
        check_int("min_epoch", self.min_epoch, low=0)
        check_int("n_starts", self.n_starts, low=1, high=10_000)
        check_choice("loss", self.loss, ("linear", "huber"))
        check_choice("select", self.select, SELECTS)
        if self.select == "backtest" and not self.extrapolate:
            raise MixscaleError(
                "`select` 'backtest' ranks laws by their backtest, which `extrapolate` false "
                "turns off; pass --select validation with --extrapolate false, or keep "
                "--extrapolate true.")
        check_int("n_boot", self.n_boot, low=0, high=100_000)
        check_int("seed", self.seed, low=0, high=2**31 - 2)
        if not isinstance(self.class_law, bool):
            raise MixscaleError(f"`class_law` must be True or False, but got "
                                f"class_law={self.class_law!r}.")
        if self.model_name is not None:
            ok = self.model_name.strip() and all(
                ch.isalnum() or ch in "-_." for ch in self.model_name
            )
            if not ok:
                raise MixscaleError(
                    f"`model_name` may use letters, digits, '-', '_' and '.', "
                    f"but got {self.model_name!r}."
                )

    @property
    def registrable(self) -> bool:
        """Whether these settings can give a law that is registered: only bounded laws are
        (a bounded family with a saturating predictor, or the per-class law)."""
        return self.class_law or any(bounded_law(f, p) for f in self.families
                                     for p in self.predictors)

    def no_bounded_law(self, what: str) -> str:
        """The refusal when no bounded law ``what`` ("can be fitted", "fitted"): the settings
        and the fix, in one place for the up-front check and the fit's own."""
        return (f"no bounded law {what} (families {','.join(self.families)}, predictors "
                f"{','.join(self.predictors)}, class_law {self.class_law}): only bounded laws "
                "are registered and served; fit the bounded family m4 with a saturating "
                "predictor (e.g. --families power,m4 --predictors m3,s2) or keep --class-law "
                "true.")

    def check_design(self, *, train_runs: int, sizes: int) -> None:
        """Refuse, before anything is trained, a design this fit would refuse once trained.

        Parameters
        ----------
        train_runs : int
            Training rows (runs) the design has or will have.
        sizes : int
            Distinct subset sizes among them.

        Raises
        ------
        MixscaleError
            Fewer than 2 training runs (no law can be fitted to one), or ``select`` backtest
            with fewer than 2 sizes (a backtest fits the smaller sizes and scores the larger).
        """
        if train_runs < 2:
            raise MixscaleError(
                f"fitting needs finished training rows from at least 2 runs, but the design "
                f"has {train_runs}; train more of its rows, or design more (--rows-per-size, "
                "--subset-sizes).")
        if self.select == "backtest" and sizes < 2:
            raise MixscaleError(
                f"--select backtest needs at least 2 subset sizes (a backtest fits the smaller "
                f"and scores the larger), but the design has {sizes}; add a size to "
                "--subset-sizes, or pass --select validation.")

    def check_registrable(self) -> None:
        """Refuse, before anything is trained or logged, settings that cannot register a law.

        Raises
        ------
        MixscaleError
            When :attr:`registrable` is false.
        """
        if not self.registrable:
            raise MixscaleError(self.no_bounded_law("can be fitted"))
