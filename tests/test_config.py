"""Config dataclasses refuse bad values with messages that name the field and the value."""

from __future__ import annotations

import dataclasses

import pytest

from mixscale.config import (
    DesignSpec,
    TrainConfig,
    milestones_within,
    parse_int_list,
    parse_name_list,
    split_list,
)
from mixscale.errors import MixscaleError
from mixscale.fit import FitConfig
from mixscale.fit.laws import FAMILIES as _FAMILY_REGISTRY

FAMILIES = tuple(_FAMILY_REGISTRY)  # the registry's names, as the CLI passes them


def test_defaults_are_valid_and_frozen() -> None:
    spec = DesignSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 3  # type: ignore[misc]
    TrainConfig()
    FitConfig()


def test_keyword_only() -> None:
    with pytest.raises(TypeError):
        DesignSpec("digits")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "imagenet"}, r"unknown dataset 'imagenet'; allowed: 'digits'"),
        ({"subset_sizes": ()}, "at least one size"),
        ({"subset_sizes": (100, 0)}, r"`subset_sizes` must be >= 1, but got subset_sizes=0"),
        ({"subset_sizes": (100, 100)}, "must be distinct"),
        ({"rows_per_size": 0}, r"rows_per_size=0"),
        ({"min_per_class": -1}, r"min_per_class=-1"),
        ({"iterations": 2.5}, r"must be an integer, but got iterations=2.5"),
        ({"method": "greedy"}, r"unknown design method 'greedy'"),
        ({"max_per_class": 0, "min_per_class": 1}, r"max_per_class=0"),
    ],
)
def test_design_spec_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(MixscaleError, match=match):
        DesignSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "vgg"}, r"unknown model 'vgg'; allowed: 'smallcnn'"),
        ({"epochs": 0}, r"epochs=0"),
        ({"eval_every": 50}, r"`eval_every` must be in \[1, 30\], but got eval_every=50"),
        ({"lr": 0.0}, r"`lr` must be in \(0.0, 10.0\], but got lr=0.0"),
        ({"lr": float("nan")}, "finite number"),
        ({"momentum": 1.5}, r"momentum=1.5"),
        ({"device": "tpu"}, r"unknown device 'tpu'"),
        ({"lr_milestones": (0,)}, r"lr_milestones=0"),
    ],
)
def test_train_config_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(MixscaleError, match=match):
        TrainConfig(**kwargs)


def test_eval_epochs_include_the_last() -> None:
    assert TrainConfig(epochs=10, eval_every=4, lr_milestones=()).eval_epochs() == [4, 8, 10]
    assert TrainConfig(epochs=9, eval_every=3, lr_milestones=()).eval_epochs() == [3, 6, 9]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"families": ("powr",)}, r"unknown law family 'powr'"),
        ({"predictors": ("m9",)}, r"unknown predictor 'm9'"),
        ({"model_name": "bad name!"}, r"model_name.*'bad name!'"),
        ({"min_epoch": -2}, r"min_epoch=-2"),
    ],
)
def test_fit_config_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(MixscaleError, match=match):
        FitConfig(**kwargs)


def test_parse_lists() -> None:
    assert parse_int_list("subset_sizes", "60, 120,240") == (60, 120, 240)
    with pytest.raises(MixscaleError, match=r"'1e3' in '100,1e3' is not an integer"):
        parse_int_list("subset_sizes", "100,1e3")
    assert parse_name_list("families", "all", FAMILIES) == FAMILIES
    with pytest.raises(MixscaleError, match="unknown law family 'nope'"):
        parse_name_list("families", "power,nope", FAMILIES)


@pytest.mark.parametrize("text", ["60,,120", "60,120,", ",60", "60, ,120"])
def test_empty_list_items_are_refused_naming_option_and_value(text: str) -> None:
    for parse in (lambda: split_list("subset_sizes", text),
                  lambda: parse_int_list("subset_sizes", text),
                  lambda: parse_name_list("subset_sizes", text, ("60", "120"))):
        with pytest.raises(MixscaleError, match=rf"`subset_sizes` has an empty item in "
                                                 rf"'{text}'"):
            parse()
    assert split_list("subset_sizes", "  ") == []


def test_milestones_within_drops_only_those_past_the_epochs() -> None:
    assert milestones_within((100, 150), 195) == (100, 150)
    assert milestones_within((100, 150), 120) == (100,)
    assert milestones_within((20,), 20) == (20,)
    assert milestones_within((20,), 3) == ()
