"""What a tuning study searches and how it is configured (no optuna import).

Re-exported by :mod:`mixscale.tune`: search ranges parsed and
validated from the command line, the study's options, and where its storage lives by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mixscale.config import split_list
from mixscale.errors import MixscaleError

if TYPE_CHECKING:  # annotations only: optuna is imported by mixscale.tune alone
    import optuna

SEARCHED = ("lr", "momentum", "weight_decay", "batch_size")  # what a study searches

SAMPLERS: tuple[str, ...] = ("tpe", "random")
PRUNERS: tuple[str, ...] = ("median", "hyperband", "none")


def parse_range(name: str, text: str, *, log: bool) -> tuple[float, float]:
    """Parse ``"low,high"`` into two floats (validated by :class:`SearchSpace`)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        scale = " (log scale: both > 0)" if log else ""
        raise MixscaleError(f"`{name}` must be two numbers low,high{scale} such as "
                            f"1e-3,0.3, but got {name}={text!r}.") from None
    return low, high


def parse_choices(name: str, text: str) -> tuple[int, ...]:
    """Parse ``"16,32,64"`` into distinct integers (validated by :class:`SearchSpace`)."""
    items = split_list(name, str(text))  # refuses empty items, naming them
    try:
        values = tuple(int(p) for p in items)
    except ValueError:
        raise MixscaleError(f"`{name}` must be comma-separated integers such as 16,32,64, "
                            f"but got {name}={text!r}.") from None
    return values


def _check_range(name: str, rng: tuple[float, float], *, log: bool, lowest: float,
                 highest: float) -> None:
    low, high = rng
    if not (math.isfinite(low) and math.isfinite(high)):
        raise MixscaleError(f"`{name}` must be finite, but got ({low=}, {high=}).")
    if low > high:
        raise MixscaleError(f"`{name}`: `low <= high` must hold, but got ({low=}, {high=}).")
    if log and low <= 0:
        raise MixscaleError(f"`{name}` is searched on a log scale, so `low > 0` must hold, "
                            f"but got ({low=}, {high=}).")
    if low < lowest or high > highest:
        raise MixscaleError(f"`{name}` must lie within [{lowest}, {highest}], but got "
                            f"({low=}, {high=}).")


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """Where a study looks. A range with low == high fixes that parameter."""

    lr: tuple[float, float] = (1e-3, 0.3)  # SGD learning rate, searched on a log scale
    momentum: tuple[float, float] = (0.5, 0.99)  # SGD momentum, linear scale
    weight_decay: tuple[float, float] = (1e-6, 1e-2)  # L2 penalty, log scale
    batch_size: tuple[int, ...] = (16, 32, 64, 128)  # images per step, categorical

    def __post_init__(self) -> None:
        _check_range("lr_range", self.lr, log=True, lowest=0.0, highest=10.0)
        _check_range("momentum_range", self.momentum, log=False, lowest=0.0, highest=0.999)
        _check_range("weight_decay_range", self.weight_decay, log=True, lowest=0.0,
                     highest=1.0)
        sizes = self.batch_size
        if not sizes or len(set(sizes)) != len(sizes) or not all(1 <= b <= 65_536
                                                                 for b in sizes):
            raise MixscaleError(f"`batch_sizes` must be distinct integers in [1, 65536], but "
                                f"got batch_sizes={list(sizes)}.")

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw one point: ``{"lr", "momentum", "weight_decay", "batch_size"}``."""
        return {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "momentum": trial.suggest_float("momentum", *self.momentum),
            "weight_decay": trial.suggest_float("weight_decay", *self.weight_decay, log=True),
            "batch_size": trial.suggest_categorical("batch_size", list(self.batch_size)),
        }

    def as_params(self) -> dict[str, str]:
        """The ranges as tracking params."""
        return {"lr_range": f"{self.lr[0]:g},{self.lr[1]:g}",
                "momentum_range": f"{self.momentum[0]:g},{self.momentum[1]:g}",
                "weight_decay_range": f"{self.weight_decay[0]:g},{self.weight_decay[1]:g}",
                "batch_sizes": ",".join(map(str, self.batch_size))}


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """How long and how a study searches."""

    trials: int = 20  # trials this process adds to the study
    timeout: float | None = None  # seconds after which this process starts no new trial
    sampler: Literal["tpe", "random"] = "tpe"  # TPE (multivariate) or uniform random
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = 4  # median pruner: complete trials before any trial is pruned
    warmup_epochs: int = 3  # median: no pruning before this epoch; hyperband: min resource
    val_fraction: float = 0.2  # share of each class's training images held out to score
    seed: int = 0  # seeds the sampler (give parallel workers different seeds)
    enqueue_recipe: bool = True  # a new study's first trial tries the recipe's own values
    storage: str | None = None  # Optuna RDB URL; None = default_storage(tracking URI)
    study_name: str | None = None  # None = <dataset>-<model>-<full|row-id8>-e<epochs>

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) \
                or not 1 <= self.trials <= 1_000_000:
            raise MixscaleError(f"`trials` must be an integer in [1, 1000000], but got "
                                f"trials={self.trials!r}.")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise MixscaleError(f"`timeout` must be > 0 seconds (0 on the command line = no "
                                f"limit), but got timeout={self.timeout!r}.")
        for name, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
            if getattr(self, name) not in allowed:
                raise MixscaleError(f"unknown {name} {getattr(self, name)!r}; allowed: "
                                    f"{', '.join(repr(a) for a in allowed)}.")
        for name in ("startup_trials", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MixscaleError(f"`{name}` must be an integer >= 0, but got "
                                    f"{name}={value!r}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise MixscaleError(f"`val_fraction` must be in (0, 1), but got "
                                f"val_fraction={self.val_fraction!r}.")
        if not 0 <= self.seed <= 2**31 - 2:
            raise MixscaleError(f"`seed` must be in [0, 2147483646], but got seed={self.seed}.")
        if self.study_name is not None and not self.study_name.strip():
            raise MixscaleError("`study_name` must not be blank; leave it out for the default.")


def default_storage(tracking_uri: str) -> str:
    """``sqlite:///<folder of the SQLite tracking store>/optuna.db``, else ``./optuna.db``."""
    if tracking_uri.startswith("sqlite:///"):
        path = tracking_uri[len("sqlite:///"):]
        if path and path != ":memory:":
            return f"sqlite:///{Path(path).resolve().parent / 'optuna.db'}"
    return f"sqlite:///{Path('optuna.db').resolve()}"


def masked_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing to hide
        return url
