"""Typed run configurations: `--set key=value` overrides and JSON files.

Every recipe's config is a frozen-free `dataclasses.dataclass` with a comment
per field. `apply_overrides` checks each override against the fields and their
types, so a typo or a wrong type fails loudly instead of being ignored.
Every problem with a config is a `zoo.errors.UserError` naming the field.

`require_int`, `require_float`, `require_seed` and `require_choice` are the
checks the configs' `validate` methods (and the task functions' arguments)
share.
"""

import dataclasses
import json
import math
import numbers
import os
import types
import typing

from zoo.errors import UserError, UserFileNotFoundError, UserTypeError
from zoo.files import atomic_write_text, unreadable

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_INTEGER_KINDS = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}


def require_int(name, value, *, minimum=1, maximum=None, expected=None):
    """Return `value` as an `int` if it is an integer in [`minimum`, `maximum`].

    Otherwise raise naming `name`: `UserTypeError` (a `TypeError` and a
    `ValueError`) when `value` is not an integer (a bool, float, string or
    None; NumPy integers are integers), `UserError` when it is below
    `minimum` or above `maximum` (None: no bound). `expected` replaces the
    description of a valid value in the message ("a positive integer" by
    default).
    """
    if expected is None:
        expected = _INTEGER_KINDS.get(minimum, f"an integer >= {minimum}")
        if maximum is not None:
            expected = (
                f"an integer from {minimum:,} to {maximum:,}" if minimum is not None else f"an integer <= {maximum:,}"
            )
    message = f"Received an invalid value for `{name}`: {value!r}; expected {expected}."
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserTypeError(message)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise UserError(message)
    return int(value)


DIVERGENCE_FACTOR = 10.0  # the default of every task's `divergence_factor`


def require_divergence_factor(value):
    """`value` as a float if it is 0 (check off) or a finite number above 1, else `UserError`."""
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return require_float(
        "divergence_factor",
        value,
        above=1,
        expected="a finite number above 1 (how many times its first value the training loss may reach before "
        "training stops), or 0 for no limit",
    )


# NumPy seeds must lie in [0, 2**32); TensorFlow's stateless sampling takes
# int32 seeds, and the recipes derive further seeds by adding small offsets
# (ensemble members, folds), so seeds stop at 2**31 - 1.
MAX_SEED = 2**31 - 1


def require_seed(name, value):
    """Return `value` if it is an integer seed in [0, `MAX_SEED`], else raise naming `name`."""
    return require_int(name, value, minimum=0, maximum=MAX_SEED)


def _interval_text(minimum, maximum, above, below):
    """ "a number in [0, 1)", "a finite number > 0", ... for the bounds of `require_float`."""
    low = above if above is not None else minimum
    high = below if below is not None else maximum
    if low is not None and high is not None:
        left, right = "(" if above is not None else "[", ")" if below is not None else "]"
        return f"a number in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f"a finite number {'>' if above is not None else '>='} {low:g}"
    if high is not None:
        return f"a finite number {'<' if below is not None else '<='} {high:g}"
    return "a finite number"


def require_float(name, value, *, minimum=None, maximum=None, above=None, below=None, optional=False, expected=None):
    """Return `value` as a `float` if it is a finite number in the given range.

    `minimum`/`maximum` are inclusive bounds, `above`/`below` exclusive ones
    (None: no bound). NaN and infinities are always refused: a comparison
    with NaN is false, so without this check a NaN passes `not value < 0`.
    With `optional`, None is also valid (and returned): an unlimited
    budget, a default. Otherwise raise naming `name`: `UserTypeError` when
    `value` is not a number (a bool, string or None), `UserError` when it is
    not finite or out of range. `expected` replaces the description of a
    valid value.
    """
    if optional and value is None:
        return None
    expected = (expected or _interval_text(minimum, maximum, above, below)) + (" or none" if optional else "")
    message = f"Received an invalid value for `{name}`: {value!r}; expected {expected}."
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserTypeError(message)
    value = float(value)
    if (
        not math.isfinite(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (above is not None and value <= above)
        or (below is not None and value >= below)
    ):
        raise UserError(message)
    return value


def require_choice(name, value, choices):
    """Return `value` if it is one of `choices`, else raise `UserError` listing them."""
    if value not in choices:
        raise UserError(f"Received an invalid value for `{name}`: {value!r}; expected one of {list(choices)}.")
    return value


def _parse_value(name, text, annotation):
    """Convert the string `text` to the field type `annotation`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if text.lower() in ("none", "null") and len(options) < len(typing.get_args(annotation)):
            return None
        errors = []
        for option in options:
            try:
                return _parse_value(name, text, option)
            except ValueError as error:
                errors.append(str(error))
        raise UserError("; ".join(errors))
    if origin is typing.Literal:
        return require_choice(name, text, typing.get_args(annotation))
    if origin in (tuple, list):
        (item_type, *_) = typing.get_args(annotation) or (str,)
        items = [item.strip() for item in text.split(",") if item.strip()]
        values = [_parse_value(name, item, item_type) for item in items]
        return tuple(values) if origin is tuple else values
    if annotation is bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise UserError(f"Received an invalid value for `{name}`: {text!r}; expected true or false.")
    if annotation in (int, float):
        try:
            return annotation(text)
        except ValueError:
            raise UserError(
                f"Received an invalid value for `{name}`: {text!r}; expected {annotation.__name__}."
            ) from None
    if annotation is str:
        return text
    raise TypeError(f"Field `{name}` has a type ({annotation!r}) that --set cannot parse.")


def field_types(config_class):
    """Map each field name of a dataclass to its resolved type."""
    hints = typing.get_type_hints(config_class)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_class)}


def apply_overrides(config, overrides):
    """Return a copy of `config` with `key=value` strings applied.

    Raises `UserError` naming the key for an unknown field, a missing `=`,
    or a value that does not parse as the field's type.
    """
    types_by_name = field_types(type(config))
    changes = {}
    for override in overrides or ():
        if "=" not in override:
            raise UserError(f"Received an invalid override {override!r} for `--set`; expected key=value.")
        key, text = (part.strip() for part in override.split("=", 1))
        if key not in types_by_name:
            raise UserError(
                f"Unknown config field {key!r} in `--set {override}`. Known fields: {', '.join(sorted(types_by_name))}."
            )
        changes[key] = _parse_value(key, text, types_by_name[key])
    updated = dataclasses.replace(config, **changes)
    validate = getattr(updated, "validate", None)
    if callable(validate):
        validate()
    return updated


def to_dict(config):
    return dataclasses.asdict(config)


def save(config, path):
    """Write `config` as JSON, atomically."""
    atomic_write_text(path, json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")


def load(config_class, path):
    """Read a config written by `save`; unknown keys are an error."""
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"No config file at {path!r}.")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise unreadable(path, error, kind="config file", expected="the JSON object a run saved") from error
    if not isinstance(data, dict):
        raise UserError(f"The config file {path!r} holds a JSON {type(data).__name__}; expected an object of fields.")
    types_by_name = field_types(config_class)
    unknown = sorted(set(data) - set(types_by_name))
    if unknown:
        raise UserError(f"Config file {path!r} has unknown fields {unknown}; known: {sorted(types_by_name)}.")
    for name, value in data.items():
        if isinstance(value, list) and typing.get_origin(types_by_name[name]) is tuple:
            data[name] = tuple(value)
    config = config_class(**data)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config
