"""Frozen, keyword-only configuration of each pipeline stage.

Every field carries a comment with its unit or meaning; ``__post_init__`` validates and raises
:class:`~mixscale.errors.MixscaleError` naming the field, the value and what is allowed, so bad
input is refused before anything touches the tracking server.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mixscale.errors import MixscaleError

__all__ = [
    "Echo",
    "RESOLVED_PARAMS",
    "MAX_SEEDS",
    "DATASETS",
    "MODELS",
    "AUGMENTS",
    "STEMS",
    "PRECISIONS",
    "SCHEDULES",
    "RECIPES",
    "RECIPE_VALUES",
    "DEVICES",
    "DESIGN_METHODS",
    "DesignSpec",
    "TrainConfig",
    "milestones_within",
    "parse_int_list",
    "split_list",
    "parse_name_list",
    "check_int",
    "check_choice",
]

Echo = Callable[[str], None]  # how a stage prints one line of progress (print by default)
# Params resolved where the rows train: `auto` choices per machine, and eval_images (0 = the
# whole test split) to the number of test images each evaluation scores, per dataset.
RESOLVED_PARAMS = ("device", "augment", "stem", "precision", "eval_images")
MAX_SEEDS = 100  # most verification seeds one plan may ask for (plan --verify --seeds)


class _DatasetNames(tuple):
    """Dataset names; ``in`` also accepts any ``imagefolder:<path>`` with a non-empty path."""

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name.startswith("imagefolder:"):
            return bool(name[len("imagefolder:"):].strip())
        return tuple.__contains__(self, name)


# Datasets: scikit-learn's bundled digits, four torchvision datasets (read from --data-dir) and a
# user's own class folders, ``imagefolder:<path>``.
DATASETS: tuple[str, ...] = _DatasetNames(
    ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder:<path>")
)
MODELS: tuple[str, ...] = ("smallcnn", "resnet18")
AUGMENTS: tuple[str, ...] = ("auto", "none", "crop-flip")
STEMS: tuple[str, ...] = ("auto", "cifar", "imagenet")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
# Learning-rate schedules: "cosine" decays the rate smoothly from lr to 0 over the row's last
# optimiser step (so a row's last evaluation is of an annealed network, and the evaluations
# before it follow a smooth curve); "step" multiplies it by lr_gamma at each of lr_milestones.
SCHEDULES: tuple[str, ...] = ("cosine", "step")
# Training recipes: TrainConfig field values over its defaults (the fast digits recipe).
# "paper" is the paper's CIFAR-10 recipe: torchvision's ResNet18 as in its model zoo (ImageNet
# stem), SGD lr 0.1, momentum 0.9, weight decay 1e-4, lr x0.1 at epochs 100 and 150, random crop
# + horizontal flip, 195 epochs, evaluation every 5. The paper does not state its batch size;
# 128 is the usual choice for this recipe.
# The paper trains every row for the same epochs, so a small row takes few optimiser steps; it
# has no step floor (min_steps_per_epoch 0) and the step schedule.
RECIPE_VALUES: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {"model": "resnet18", "epochs": 195, "eval_every": 5, "lr": 0.1, "momentum": 0.9,
              "weight_decay": 1e-4, "batch_size": 128, "lr_milestones": (100, 150),
              "lr_gamma": 0.1, "augment": "crop-flip", "stem": "imagenet",
              "schedule": "step", "min_steps_per_epoch": 0},
}
RECIPES: tuple[str, ...] = tuple(RECIPE_VALUES)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DESIGN_METHODS: tuple[str, ...] = ("maximin", "paper")


def check_int(name: str, value: object, *, low: int, high: float = math.inf) -> None:
    """Raise :class:`MixscaleError` naming ``name`` unless ``value`` is an int in [low, high]."""
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


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise :class:`MixscaleError` naming ``value`` and ``allowed`` unless it is one of them."""
    if value not in allowed:
        raise MixscaleError(
            f"unknown {name} {value!r}; allowed: {', '.join(repr(a) for a in allowed)}."
        )


def split_list(name: str, text: str) -> list[str]:
    """Split a comma-separated option into stripped items, refusing empty ones.

    Parameters
    ----------
    name : str
        Option name used in the error message.
    text : str
        Comma-separated items, e.g. ``"60,120"``.

    Returns
    -------
    list of str
        The items; an empty or blank ``text`` gives ``[]``.

    Raises
    ------
    MixscaleError
        If an item is empty (``"60,,120"``, ``"60,120,"``); the message names the option and
        the value.
    """
    if not text.strip():
        return []
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise MixscaleError(f"`{name}` has an empty item in {text!r}: give comma-separated "
                            "values with nothing empty between the commas.")
    return items


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
        If there is no item, an item is empty or an item is not an integer; the message names
        the item.
    """
    if not isinstance(text, str):
        return tuple(text)
    out = []
    for item in split_list(name, text):
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
    """Parse ``"power,arctan"`` (or ``"all"``) into a tuple of allowed names.

    Raises
    ------
    MixscaleError
        If there is no item, an item is empty or an item is not in ``allowed``.
    """
    if not isinstance(text, str):
        items = tuple(text)
    elif text.strip() == "all":
        return allowed
    else:
        items = tuple(split_list(name, text))
    if not items:
        raise MixscaleError(f"`{name}` must name at least one of {', '.join(allowed)}.")
    for item in items:
        check_choice(_SINGULAR.get(name, name), item, allowed)
    return items


def milestones_within(milestones: tuple[int, ...], epochs: int) -> tuple[int, ...]:
    """The learning-rate milestones that act within ``epochs`` epochs (later ones dropped).

    A recipe's milestones belong to its own length (the paper recipe decays at epochs 100 and
    150 of 195); trained for fewer epochs, the ones past the end would never act, so they are
    dropped rather than refused. Milestones the user gives explicitly are checked instead.
    """
    return tuple(m for m in milestones if m <= epochs)


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
    # imagefolder: leave out images that cannot be read (the design run lists them in
    # skipped_images.txt) instead of refusing the folder; rows read the folder the same way
    skip_bad_images: bool = False

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("design method", self.method, DESIGN_METHODS)
        if not self.subset_sizes:
            raise MixscaleError("`subset_sizes` must name at least one size.")
        for s in self.subset_sizes:
            check_int("subset_sizes", s, low=1)
        if len(set(self.subset_sizes)) != len(self.subset_sizes):
            raise MixscaleError(
                f"`subset_sizes` must be distinct, but got {list(self.subset_sizes)}."
            )
        check_int("rows_per_size", self.rows_per_size, low=1)
        check_int("val_rows_per_size", self.val_rows_per_size, low=0)
        check_int("min_per_class", self.min_per_class, low=0)
        _check_float("min_share", self.min_share, low=0.0, high=1.0)
        if self.max_per_class is not None:
            check_int("max_per_class", self.max_per_class, low=max(1, self.min_per_class))
        check_int("iterations", self.iterations, low=0)
        check_int("seed", self.seed, low=0, high=2**31 - 2)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train one row (the recipe shared by every row of a design).

    The field defaults are the fast ``default`` recipe for the bundled digits; the ``paper``
    recipe (:meth:`from_recipe`) is the paper's CIFAR-10 set-up (see :data:`RECIPE_VALUES`).
    """

    model: str = "smallcnn"  # network architecture
    epochs: int = 30  # training epochs per row
    eval_every: int = 3  # evaluate (and log metrics) every this many epochs, and at the end
    # Epochs before this one are not evaluated (the last epoch always is): `train` and `main`
    # set it to the fit's min_epoch, whose fit drops those evaluations anyway, unless
    # --eval-early; 0 = evaluate every eval_every-th epoch.
    eval_from: int = 0
    # Test images each evaluation scores: a fixed, seeded (data.EVAL_SEED), stratified subset
    # of the test split; 0 = the whole split. A row logs the number it scored.
    eval_images: int = 0
    lr: float = 0.05  # SGD learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty
    batch_size: int = 32  # images per SGD step
    # "cosine": lr decays smoothly to 0 at the row's last step; "step": x lr_gamma at each
    # of lr_milestones (see SCHEDULES)
    schedule: Literal["cosine", "step"] = "cosine"
    # step schedule: epochs where lr is multiplied by lr_gamma (the cosine default has none)
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1  # step schedule: learning-rate factor at each milestone
    # Fewest optimiser steps in an epoch: an epoch of a subset smaller than this many batches
    # draws more batches from further passes (the row's param steps_per_epoch), so a 60-image
    # row is not scored after 60 steps while a 960-image row had 900 (and a shorter --epochs
    # shortens every row alike). 0 = one pass per epoch.
    min_steps_per_epoch: int = 30
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    # Training-time augmentation, on whole batches on the device: "crop-flip" = random crop
    # from the image zero-padded by crop_padding pixels + random horizontal flip; "auto" =
    # crop-flip for colour (3-channel) images, none for grey ones (digits, MNIST).
    augment: Literal["auto", "none", "crop-flip"] = "auto"
    crop_padding: int = 4  # pixels of zero padding on each side for the random crop
    # resnet18's first layers: "cifar" = 3x3 conv, stride 1, no max-pool; "imagenet" =
    # torchvision's 7x7 conv, stride 2 + max-pool; "auto" = cifar for images <= 64 px.
    stem: Literal["auto", "cifar", "imagenet"] = "auto"
    # Mixed precision on CUDA (autocast; GradScaler for fp16): auto = bf16 where the GPU
    # supports it, else fp16. On CPU training is always fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    data_dir: str = "data"  # where torchvision datasets are (or are downloaded to)
    download: bool = False  # download a missing torchvision dataset into data_dir
    # Provenance: the tune run whose best lr, momentum, weight_decay and batch_size replaced
    # the recipe's (explicit options still win); "" = none. Logged on every row run.
    hparams_from: str = ""
    # Save the row's training state every this many epochs (an MLflow artifact of the row's
    # run), so that a killed or failed row resumes from it in the same run; 0 = off. Not part
    # of the recipe: it never changes what a row learns.
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_choice("device", self.device, DEVICES)
        check_choice("augment", self.augment, AUGMENTS)
        check_choice("stem", self.stem, STEMS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("min_steps_per_epoch", self.min_steps_per_epoch, low=0, high=1_000_000)
        check_int("epochs", self.epochs, low=1, high=100_000)
        check_int("eval_every", self.eval_every, low=1, high=self.epochs)
        check_int("eval_from", self.eval_from, low=0)
        check_int("eval_images", self.eval_images, low=0)
        _check_float("lr", self.lr, low=0.0, high=10.0, low_open=True)
        _check_float("momentum", self.momentum, low=0.0, high=0.999)
        _check_float("weight_decay", self.weight_decay, low=0.0, high=1.0)
        check_int("batch_size", self.batch_size, low=1, high=65_536)
        _check_float("lr_gamma", self.lr_gamma, low=0.0, high=1.0, low_open=True)
        for m in self.lr_milestones:
            check_int("lr_milestones", m, low=1, high=self.epochs)
        check_int("crop_padding", self.crop_padding, low=0, high=64)
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int) or not 0 <= every <= self.epochs:
            raise MixscaleError(
                f"`checkpoint_every` (epochs between checkpoints; 0 = off) must be an integer "
                f"in [0, epochs={self.epochs}], but got checkpoint_every={every!r}."
            )
        if not isinstance(self.data_dir, str) or not self.data_dir.strip():
            raise MixscaleError(f"`data_dir` must be a non-empty path, but got "
                                f"data_dir={self.data_dir!r}.")
        if not isinstance(self.download, bool):
            raise MixscaleError(f"`download` must be True or False, but got "
                                f"download={self.download!r}.")
        if not isinstance(self.hparams_from, str):
            raise MixscaleError(f"`hparams_from` must be a run id or \"\", but got "
                                f"hparams_from={self.hparams_from!r}.")

    @classmethod
    def recipe_values(cls, recipe: str = "default") -> dict[str, Any]:
        """Every field's value under a named recipe (the defaults, then the recipe's values)."""
        check_choice("recipe", recipe, RECIPES)
        values = {f.name: f.default for f in dataclasses.fields(cls)}
        return {**values, **RECIPE_VALUES[recipe]}

    @classmethod
    def from_recipe(cls, recipe: str = "default", **overrides: Any) -> TrainConfig:
        """A config from a named recipe; ``overrides`` (explicit options) win over it.

        Examples
        --------
        >>> TrainConfig.from_recipe("paper", epochs=50, lr_milestones=(25, 40)).lr
        0.1
        """
        return cls(**{**cls.recipe_values(recipe), **overrides})

    def to_params(self, resolved: Mapping[str, object] | None = None, *,
                  omit: Iterable[str] = ("download",)) -> dict[str, object]:
        """The recipe as MLflow params: every field but ``omit``, ``lr_milestones`` as ``"a,b"``.

        ``resolved`` (:meth:`mixscale.train.TrainSettings.as_params`: what the ``auto``
        choices of :data:`RESOLVED_PARAMS` became on the training machine) replaces those
        fields. :meth:`from_params` reads a row's params back.
        """
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in tuple(omit)}
        params.update(resolved or {})
        if "lr_milestones" in params:
            params["lr_milestones"] = ",".join(map(str, self.lr_milestones))
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, source: str = "the row") -> TrainConfig:
        """Rebuild a config from a row run's params (all text): :meth:`to_params` read back.

        Each field is parsed to the type of its default; a field the row lacks keeps its default.
        ``device`` and ``precision`` become ``"auto"``: a row logs what they *resolved* to (e.g.
        ``cpu``/``fp32`` on a machine without GPU), and pinning that would keep the verification
        off a GPU that is present. ``augment`` and ``stem`` keep their resolved values (they
        depend on the images only), except the ``stem`` ``"none"`` logged for smallcnn, which
        becomes ``"auto"`` (smallcnn has no stem). ``download`` is off, and ``checkpoint_every``
        0 (it never changes what is learnt; rows logged before it existed lack it).

        Raises
        ------
        MixscaleError
            If a param cannot be parsed or the recipe is not a valid config.
        """
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            text = params.get(field.name)
            if text is None or field.name in ("device", "precision", "download",
                                              "checkpoint_every"):
                continue
            if field.name == "stem" and text == "none":
                continue
            kind = type(field.default)
            try:
                if kind is tuple:
                    values[field.name] = tuple(int(t) for t in text.split(",") if t.strip())
                elif kind is bool:
                    values[field.name] = text.strip().lower() == "true"
                else:
                    values[field.name] = kind(text)
            except ValueError:
                raise MixscaleError(f"param {field.name}={text!r} of {source} is not a valid "
                                    f"{kind.__name__}.") from None
        try:
            return cls(**values, device="auto", precision="auto")
        except MixscaleError as exc:
            raise MixscaleError(f"the recipe of {source} is not valid: {exc}") from None

    def eval_epochs(self) -> list[int]:
        """Epochs (1-based, after training that epoch) at which the row is evaluated: every
        ``eval_every``-th from ``eval_from`` on, and always the last.

        Examples
        --------
        >>> TrainConfig(epochs=30, eval_from=10).eval_epochs()[:3]
        [12, 15, 18]
        """
        epochs = [e for e in range(self.eval_every, self.epochs + 1, self.eval_every)
                  if e >= self.eval_from]
        if not epochs or epochs[-1] != self.epochs:
            epochs.append(self.epochs)
        return epochs

    def steps_per_epoch(self, steps_per_pass: int) -> int:
        """Optimiser steps in one epoch of a row whose subset takes ``steps_per_pass`` steps
        per pass (:func:`mixscale.train.loop.batch_bounds`): one pass, or
        ``min_steps_per_epoch`` batches drawn from further passes when one pass has fewer.

        Examples
        --------
        >>> TrainConfig(batch_size=32, min_steps_per_epoch=30).steps_per_epoch(2)  # 60 images
        30
        >>> TrainConfig(batch_size=32, min_steps_per_epoch=30).steps_per_epoch(40)  # 1,280
        40
        """
        return max(steps_per_pass, self.min_steps_per_epoch)

    def skipped_epochs(self) -> list[int]:
        """The ``eval_every``-th epochs that ``eval_from`` leaves unevaluated."""
        return [e for e in range(self.eval_every, self.epochs, self.eval_every)
                if e < self.eval_from]
