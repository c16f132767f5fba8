"""Argument checks shared by the cells and the sequence layers."""

import numbers


def positive_int(name, value):
    """Return `value` if it is a positive integer, else raise naming `name`.

    A value that is not an integer (a float, a string, a bool, `None`) is a
    `TypeError`; an integer below one a `ValueError`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Received an invalid type for argument `{name}`, "
            f"expected a positive integer, got {type(value).__name__} {value!r}."
        )
    if value <= 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a positive integer, got {value!r}."
        )
    return int(value)


def rate(name, value):
    """Return `value` as a float if it lies in [0, 1), else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Received an invalid type for argument `{name}`, "
            f"expected a float in [0, 1), got {type(value).__name__} {value!r}."
        )
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"Received an invalid value for argument `{name}`, expected a float in [0, 1), got {value!r}.")
    return float(value)


def resolve(name, getter, value):
    """`getter(value)` (e.g. `activations.get`), with errors naming argument `name`."""
    try:
        resolved = getter(value)
    except (ValueError, TypeError) as error:
        raise type(error)(f"Received an invalid value for argument `{name}`: {value!r}. {error}") from error
    return resolved
