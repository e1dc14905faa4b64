"""The checks of the arguments users give to keras_simclr, in one place.

Every public entry point checks its arguments through these functions, so
that one kind of bad argument gets one error everywhere, before any work
starts and on every backend: each is refused with the message "`name`
must be ... Received: name=value" (`check_int`, `check_number`,
`check_choice`, `check_interval`, `check_image_size`, `check_layer`...).
The data given to `fit()`, `evaluate()` and `predict()` is checked by
`keras_simclr._data_checks`, the tensors given to the losses by
`keras_simclr.losses._input_checks`.
"""

import math
import numbers
import os

import keras
import numpy as np


# === Arguments ===
#
# One message format for every public argument: what it must be, then
# "Received: name=value". Each check returns the value it accepted, as a
# plain Python value (a NumPy integer becomes an int, a number a float).


def is_integer(value):
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _or_none(allow_none):
    return " or None" if allow_none else ""


def _is_finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _format_bound(bound):
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def _interval_text(minimum, maximum, include_minimum, include_maximum):
    """`[0, 1)`, `(0, inf)`...: the interval of the bounds, None unbounded."""
    left = "[" if include_minimum and minimum is not None else "("
    right = "]" if include_maximum and maximum is not None else ")"
    low = "-inf" if minimum is None else _format_bound(minimum)
    high = "inf" if maximum is None else _format_bound(maximum)
    return f"{left}{low}, {high}{right}"


def _within(value, minimum, maximum, include_minimum, include_maximum):
    """Whether a number lies between the bounds (None: unbounded)."""
    if minimum is not None and not (
        value >= minimum if include_minimum else value > minimum
    ):
        return False
    return maximum is None or (
        value <= maximum if include_maximum else value < maximum
    )


def check_bool(value, name):
    """Refuses anything but True or False (NumPy booleans included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_int(value, name, minimum=1, maximum=None, allow_none=False):
    """Refuses anything but an integer in `[minimum, maximum]` (or None if
    allowed); a bound of None is no bound.

    The message names the range: "a positive integer" (`minimum=1`), "a
    non-negative integer" (`minimum=0`), "an integer" (no bounds), "an
    integer in [2, 8]"...
    """
    if value is None and allow_none:
        return None
    if not is_integer(value) or not _within(value, minimum, maximum, True, True):
        if maximum is not None:
            what = "an integer in " + _interval_text(minimum, maximum, True, True)
        elif minimum is None:
            what = "an integer"
        elif minimum in (0, 1):
            what = "a non-negative integer" if minimum == 0 else "a positive integer"
        else:
            what = f"an integer >= {minimum}"
        raise ValueError(
            f"`{name}` must be {what}{_or_none(allow_none)}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_number(
    value,
    name,
    minimum=None,
    maximum=None,
    include_minimum=True,
    include_maximum=True,
    allow_none=False,
):
    """Refuses anything but a finite number in the given interval (or None
    if allowed); bools, NaN and infinities are refused.

    The message names the interval: "a positive number" for `(0, inf)`, "a
    non-negative number" for `[0, inf)`, else "a number in [0, 1)"...
    """
    if value is None and allow_none:
        return None
    if not (
        is_number(value)
        and _is_finite(value)
        and _within(value, minimum, maximum, include_minimum, include_maximum)
    ):
        if minimum == 0 and maximum is None:
            what = "a non-negative number" if include_minimum else "a positive number"
        elif minimum is None and maximum is None:
            what = "a finite number"
        else:
            what = "a number in " + _interval_text(
                minimum, maximum, include_minimum, include_maximum
            )
        raise ValueError(
            f"`{name}` must be {what}{_or_none(allow_none)}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_positive_number(value, name, allow_none=False):
    """A finite number > 0."""
    return check_number(
        value, name, minimum=0, include_minimum=False, allow_none=allow_none
    )


def check_non_negative_number(value, name, allow_none=False):
    """A finite number >= 0, such as the weight of a loss term."""
    return check_number(value, name, minimum=0, allow_none=allow_none)


def check_probability(value, name, allow_none=False):
    """A number in [0, 1]."""
    return check_number(value, name, minimum=0, maximum=1, allow_none=allow_none)


def check_num_classes(value, name="num_classes", allow_none=False):
    """A class count: an integer >= 2."""
    return check_int(value, name, minimum=2, allow_none=allow_none)


def check_seed(seed, name="seed"):
    """A random seed: an integer or None."""
    return check_int(seed, name, minimum=None, allow_none=True)


def _same_choice(value, choice):
    """Whether `value` is `choice`: True, False and None match only
    themselves, an int any integer equal to it, a string an equal string."""
    if isinstance(choice, bool) or choice is None:
        if isinstance(value, np.bool_):
            value = bool(value)
        return value is choice
    if isinstance(choice, int):
        return is_integer(value) and value == choice
    return type(value) is type(choice) and value == choice


def check_choice(value, name, choices):
    """Refuses anything but one of `choices`; returns that choice."""
    for choice in choices:
        if _same_choice(value, choice):
            return choice
    allowed = ", ".join(repr(choice) for choice in choices)
    raise ValueError(
        f"`{name}` must be one of {allowed}. Received: {name}={value!r}"
    )


def check_interval(
    value,
    name,
    minimum=None,
    maximum=None,
    include_minimum=True,
    strictly_increasing=False,
    allow_none=False,
):
    """Refuses anything but a pair `(low, high)` of finite numbers with
    `low <= high` (`low < high` if `strictly_increasing`), both in
    `[minimum, maximum]` (`(minimum, maximum]` without `include_minimum`);
    a bound of None is no bound.

    Returns:
        `(low, high)` as floats, or None where allowed.
    """
    if value is None and allow_none:
        return None
    valid = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(is_number(v) and _is_finite(v) for v in value)
    )
    if valid:
        low, high = value
        valid = (low < high if strictly_increasing else low <= high) and all(
            _within(v, minimum, maximum, include_minimum, True) for v in value
        )
    if not valid:
        order = "<" if strictly_increasing else "<="
        bounds = ""
        if minimum is not None or maximum is not None:
            bounds = " inside " + _interval_text(
                minimum, maximum, include_minimum, True
            )
        none = "None or " if allow_none else ""
        raise ValueError(
            f"`{name}` must be {none}a tuple `(low, high)` of two numbers with "
            f"low {order} high{bounds}. Received: {name}={value!r}"
        )
    return (float(value[0]), float(value[1]))


def check_value_range(value_range, allow_none=False):
    """The `value_range` of images: `(low, high)` with `low < high`, as
    floats (or None where allowed: no rescaling)."""
    return check_interval(
        value_range, "value_range", strictly_increasing=True, allow_none=allow_none
    )


def check_image_size(value, name="image_size", allow_none=False):
    """An image size: a positive integer (a square) or a pair of them.

    Returns:
        `(height, width)` as ints, or None where allowed.
    """
    if value is None and allow_none:
        return None
    size = (value, value) if is_integer(value) else value
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(is_integer(s) and s > 0 for s in size)
    ):
        none = "None, " if allow_none else ""
        raise ValueError(
            f"`{name}` must be {none}a positive integer or a tuple "
            f"`(height, width)` of two. Received: {name}={value!r}"
        )
    return (int(size[0]), int(size[1]))


def check_path(value, name="path", allow_none=False):
    """A path: a non-empty string or `os.PathLike`; returned as a str."""
    if value is None and allow_none:
        return None
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"`{name}` must be a non-empty path (str or os.PathLike)"
            f"{_or_none(allow_none)}. Received: {name}={value!r}"
        )
    return path


def check_layer(value, name, allow_none=False, description="a Keras layer"):
    """Refuses anything but a Keras layer (or None if allowed).

    `description` says what the layer is for in the message, such as "a
    Keras model or layer that maps images to feature vectors".
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, keras.layers.Layer):
        raise ValueError(
            f"`{name}` must be {description}{_or_none(allow_none)}. "
            f"Received: {name}={value!r}"
        )
    return value
