"""Frozen, keyword-only configuration of each pipeline stage.

Every field carries a comment with its unit or meaning; ``__post_init__`` validates and raises
:class:`~mixscale.errors.MixscaleError` naming the field, the value and what is allowed, so bad
input is refused before anything touches the tracking server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mixscale.errors import MixscaleError

__all__ = [
    "DATASETS",
    "MODELS",
    "DEVICES",
    "DESIGN_METHODS",
    "FAMILIES",
    "PREDICTORS",
    "DesignSpec",
    "TrainConfig",
    "FitConfig",
    "parse_int_list",
    "parse_name_list",
]

DATASETS: tuple[str, ...] = ("digits",)
MODELS: tuple[str, ...] = ("smallcnn",)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DESIGN_METHODS: tuple[str, ...] = ("maximin", "paper")
FAMILIES: tuple[str, ...] = ("power", "arctan", "log", "root", "logistic", "m4")
PREDICTORS: tuple[str, ...] = ("m0", "m1", "m2", "m3")


def _check_int(name: str, value: object, *, low: int, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MixscaleError(f"`{name}` must be an integer, but got {name}={value!r}.")
    if not low <= value <= high:
        rng = f">= {low}" if high == math.inf else f"in [{low}, {int(high)}]"
        raise MixscaleError(f"`{name}` must be {rng}, but got {name}={value}.")


def _check_float(name: str, value: object, *, low: float, high: float = math.inf,
                 low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MixscaleError(f"`{name}` must be a finite number, but got {name}={value!r}.")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        left = "(" if low_open else "["
        raise MixscaleError(f"`{name}` must be in {left}{low}, {high}], but got {name}={value}.")


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise MixscaleError(
            f"unknown {name} {value!r}; allowed: {', '.join(repr(a) for a in allowed)}."
        )


def parse_int_list(name: str, text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Parse ``"150,300,600"`` (or a sequence) into a tuple of ints.

    Parameters
    ----------
    name : str
        Option name used in the error message.
    text : str or sequence of int
        Comma-separated integers.

    Returns
    -------
    tuple of int

    Raises
    ------
    MixscaleError
        If an item is not an integer; the message names the item.
    """
    if not isinstance(text, str):
        return tuple(text)
    items = [t.strip() for t in text.split(",") if t.strip()]
    out = []
    for item in items:
        try:
            out.append(int(item))
        except ValueError:
            raise MixscaleError(
                f"`{name}` must be comma-separated integers (e.g. 150,300), "
                f"but {item!r} in {text!r} is not an integer."
            ) from None
    if not out:
        raise MixscaleError(f"`{name}` must name at least one integer, but got {text!r}.")
    return tuple(out)


_SINGULAR = {"families": "law family", "predictors": "predictor"}


def parse_name_list(name: str, text: str | tuple[str, ...], allowed: tuple[str, ...]
                    ) -> tuple[str, ...]:
    """Parse ``"power,arctan"`` (or ``"all"``) into a tuple of allowed names."""
    if not isinstance(text, str):
        items = tuple(text)
    elif text.strip() == "all":
        return allowed
    else:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise MixscaleError(f"`{name}` must name at least one of {', '.join(allowed)}.")
    for item in items:
        _check_choice(_SINGULAR.get(name, name), item, allowed)
    return items


@dataclass(frozen=True, kw_only=True)
class DesignSpec:
    """What to design: which dataset, which subset sizes, how many rows of each."""

    dataset: str = "digits"  # dataset name; its per-class availability caps every row
    subset_sizes: tuple[int, ...] = (60, 120, 240, 480, 960)  # images per training subset
    rows_per_size: int = 6  # training-design rows per subset size
    val_rows_per_size: int = 3  # validation-design rows per size (independent design, own seed)
    min_per_class: int = 1  # lower bound per class: >= 1 keeps every class present in every row
    # Lower bound per class as a share of the balanced count subset_size / n_classes. Maximin
    # pushes rows to the simplex's vertices (nearly single-class subsets, which train
    # near-chance classifiers and tell a law little); 0.5 keeps every class at half its
    # balanced share or more while still varying the mix widely. 0 disables it.
    min_share: float = 0.5
    max_per_class: int | None = None  # upper bound per class; None = what the dataset has
    iterations: int = 1000  # maximin exchange iterations per subset size
    method: Literal["maximin", "paper"] = "maximin"  # design optimiser (paper = Algorithm 1)
    seed: int = 0  # seeds the training design; the validation design uses seed + 1

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("design method", self.method, DESIGN_METHODS)
        if not self.subset_sizes:
            raise MixscaleError("`subset_sizes` must name at least one size.")
        for s in self.subset_sizes:
            _check_int("subset_sizes", s, low=1)
        if len(set(self.subset_sizes)) != len(self.subset_sizes):
            raise MixscaleError(
                f"`subset_sizes` must be distinct, but got {list(self.subset_sizes)}."
            )
        _check_int("rows_per_size", self.rows_per_size, low=1)
        _check_int("val_rows_per_size", self.val_rows_per_size, low=0)
        _check_int("min_per_class", self.min_per_class, low=0)
        _check_float("min_share", self.min_share, low=0.0, high=1.0)
        if self.max_per_class is not None:
            _check_int("max_per_class", self.max_per_class, low=max(1, self.min_per_class))
        _check_int("iterations", self.iterations, low=0)
        _check_int("seed", self.seed, low=0, high=2**31 - 2)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train one row (the recipe shared by every row of a design)."""

    model: str = "smallcnn"  # network architecture
    epochs: int = 30  # training epochs per row
    eval_every: int = 3  # evaluate (and log metrics) every this many epochs, and at the end
    lr: float = 0.05  # SGD learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty
    batch_size: int = 32  # images per SGD step
    lr_milestones: tuple[int, ...] = (20,)  # epochs where the learning rate is multiplied by gamma
    lr_gamma: float = 0.1  # learning-rate factor at each milestone
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available

    def __post_init__(self) -> None:
        _check_choice("model", self.model, MODELS)
        _check_choice("device", self.device, DEVICES)
        _check_int("epochs", self.epochs, low=1, high=100_000)
        _check_int("eval_every", self.eval_every, low=1, high=self.epochs)
        _check_float("lr", self.lr, low=0.0, high=10.0, low_open=True)
        _check_float("momentum", self.momentum, low=0.0, high=0.999)
        _check_float("weight_decay", self.weight_decay, low=0.0, high=1.0)
        _check_int("batch_size", self.batch_size, low=1, high=65_536)
        _check_float("lr_gamma", self.lr_gamma, low=0.0, high=1.0, low_open=True)
        for m in self.lr_milestones:
            _check_int("lr_milestones", m, low=1, high=self.epochs)

    def eval_epochs(self) -> list[int]:
        """Epochs (1-based, after training that epoch) at which the row is evaluated."""
        epochs = list(range(self.eval_every, self.epochs + 1, self.eval_every))
        if epochs[-1] != self.epochs:
            epochs.append(self.epochs)
        return epochs


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Which scaling laws to fit, and how."""

    families: tuple[str, ...] = ("power",)  # law families (see mixscale.laws)
    predictors: tuple[str, ...] = PREDICTORS  # linear predictors: the paper's models 0-3
    min_epoch: int = 10  # evaluations before this epoch are dropped (paper: noisy early epochs)
    n_starts: int = 8  # multi-start least-squares starts per law
    loss: Literal["linear", "huber"] = "linear"  # least-squares loss (huber resists outliers)
    n_boot: int = 100  # run-bootstrap replicates for the champion's intervals; 0 = none
    extrapolate: bool = True  # also fit without the largest subset size and score on it
    model_name: str | None = None  # registered model name; None = "mixscale-<dataset>"
    seed: int = 0  # seeds the random starts

    def __post_init__(self) -> None:
        if not self.families:
            raise MixscaleError("`families` must name at least one law family.")
        for f in self.families:
            _check_choice("law family", f, FAMILIES)
        if not self.predictors:
            raise MixscaleError("`predictors` must name at least one linear predictor.")
        for p in self.predictors:
            _check_choice("predictor", p, PREDICTORS)
        _check_int("min_epoch", self.min_epoch, low=0)
        _check_int("n_starts", self.n_starts, low=1, high=10_000)
        _check_int("seed", self.seed, low=0, high=2**31 - 2)
        if self.model_name is not None:
            ok = self.model_name.strip() and all(
                ch.isalnum() or ch in "-_." for ch in self.model_name
            )
            if not ok:
                raise MixscaleError(
                    f"`model_name` may use letters, digits, '-', '_' and '.', "
                    f"but got {self.model_name!r}."
                )
