"""Hostile inputs to the shared zoo pieces: each test reproduces a defect found by feeding nonsense."""

import dataclasses
import typing

import pytest

from zoo import config as config_lib
from zoo.char_lm import CharLMConfig
from zoo.errors import UserError, UserTypeError
from zoo.forecast.config import ForecastConfig
from zoo.memory.config import MemoryConfig, StudyConfig
from zoo.sentiment import SentimentConfig

CONFIG_CLASSES = (CharLMConfig, ForecastConfig, SentimentConfig, StudyConfig, MemoryConfig)


def _float_fields(config_class):
    """Names of the fields typed `float` or `float | None`."""
    return [
        name
        for name, annotation in config_lib.field_types(config_class).items()
        if annotation is float or float in typing.get_args(annotation)
    ]


# ----------------------------------------------------------------- 8: float config fields and seeds


def test_every_config_has_float_fields_to_check():
    # The parametrisation below must not be empty by accident.
    assert {config.__name__: len(_float_fields(config)) for config in CONFIG_CLASSES} == {
        "CharLMConfig": 5,
        "ForecastConfig": 4,
        "SentimentConfig": 13,
        "StudyConfig": 4,
        "MemoryConfig": 2,
    }


@pytest.mark.parametrize(
    "config_class, name",
    [(config_class, name) for config_class in CONFIG_CLASSES for name in _float_fields(config_class)],
)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_float_fields_refuse_nan_and_infinity_naming_the_field(config_class, name, text):
    # clip_norm=nan and learning_rate=inf used to pass validation (NaN fails every comparison).
    with pytest.raises(UserError, match=f"`{name}`: {text.lstrip('-')}|`{name}`: -inf"):
        config_lib.apply_overrides(config_class(), [f"{name}={text}"])


@pytest.mark.parametrize(
    "config_class, name, value",
    [
        (CharLMConfig, "clip_norm", -1.0),
        (CharLMConfig, "validation_fraction", 1.0),
        (ForecastConfig, "test_fraction", 0.5),
        (SentimentConfig, "clip_norm", -0.5),
        (SentimentConfig, "baseline_l2", -1e-3),
        (SentimentConfig, "word_dropout", 1.0),
        (StudyConfig, "solve_fraction", 1.5),
        (MemoryConfig, "clipnorm", 0.0),
    ],
)
def test_float_fields_refuse_out_of_range_values(config_class, name, value):
    with pytest.raises(UserError, match=f"`{name}`: {value}; expected "):
        dataclasses.replace(config_class(), **{name: value}).validate()


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
@pytest.mark.parametrize("seed", [-1, 2**31, 99999999999])
def test_seed_out_of_range_names_the_field(config_class, seed):
    # `--set seed=-1` used to reach NumPy: "Seed must be between 0 and 2**32 - 1", no field named.
    with pytest.raises(UserError, match=rf"`seed`: {seed}; expected an integer from 0 to 2,147,483,647"):
        config_lib.apply_overrides(config_class(), [f"seed={seed}"])
    assert config_lib.apply_overrides(config_class(), [f"seed={2**31 - 1}"]).seed == 2**31 - 1


def test_require_float_bounds_and_types():
    assert config_lib.require_float("rate", 1) == 1.0
    assert config_lib.require_float("rate", 0.0, minimum=0.0, below=1.0) == 0.0
    with pytest.raises(UserError, match=r"`rate`: 1.0; expected a number in \[0, 1\)"):
        config_lib.require_float("rate", 1.0, minimum=0.0, below=1.0)
    with pytest.raises(UserError, match=r"`rate`: 0.0; expected a finite number > 0"):
        config_lib.require_float("rate", 0.0, above=0.0)
    with pytest.raises(UserError, match=r"`budget`: nan; expected a finite number > 0 or none"):
        config_lib.require_optional_float("budget", float("nan"), above=0.0)
    assert config_lib.require_optional_float("budget", None, above=0.0) is None
    for value in (True, "0.1", None):
        with pytest.raises(UserTypeError, match="`rate`"):
            config_lib.require_float("rate", value)
    with pytest.raises(UserError, match=r"`length`: 11; expected an integer from 0 to 10"):
        config_lib.require_int("length", 11, minimum=0, maximum=10)


def test_markov_orders_are_bounded():
    # markov_orders=99999999999 used to end in a MemoryError building the per-order tables.
    with pytest.raises(UserError, match=r"`markov_orders`: 99999999999; expected orders from 0 to 20"):
        config_lib.apply_overrides(CharLMConfig(), ["markov_orders=1,99999999999"])
    with pytest.raises(UserError, match="empty `markov_orders`"):
        dataclasses.replace(CharLMConfig(), markov_orders=()).validate()
