"""Checks that run inside a TensorFlow graph, and the one place where their
failures become the `ValueError` that arrays get.

A `tf.data` pipeline (on every backend) or a traced TensorFlow function
cannot raise a Python exception of its own: a failed `tf.debugging.Assert`
reaches the caller as a `tf.errors.InvalidArgumentError` whose text is the
assertion's data. Each assertion made by `assertion` puts its message
first in that data, readable as it is, with a fixed marker and the key
under which the message was registered when the graph was built, then the
values it reports. `value_error` finds the marker and builds the
`ValueError` from the registered message and the reported values: the
message is never read back from the text.
"""

import contextlib
import re
import threading

MARKER = "keras_simclr check #"
_KEY = re.compile(re.escape(MARKER) + r"(\d+)")
# TensorFlow prints each item of an assertion's data in brackets.
_ITEM = re.compile(r"\[([^\[\]]*)\]")

_LOCK = threading.Lock()
_MESSAGES = []  # key -> (message, names of the reported values)
_KEYS = {}  # (message, names) -> key


def assertion(condition, message, values=()):
    """A `tf.debugging.Assert` that `value_error` turns into a `ValueError`.

    Args:
        condition: a scalar boolean tensor, true when the data is right.
        message: the message of the `ValueError`, complete but for the
            reported values, which follow it as `name=value, ...`.
        values: `(name, tensor)` pairs of scalars to report.

    Returns:
        The assertion op, for `tf.control_dependencies`.
    """
    import tensorflow as tf

    names = tuple(name for name, _ in values)
    key = _register(message, names)
    shown = f"{message}{' and '.join(names)}{':' if names else ''}"
    data = [f"{shown} ({MARKER}{key})"] + [tensor for _, tensor in values]
    return tf.debugging.Assert(condition, data)


def _register(message, names):
    entry = (message, names)
    with _LOCK:
        key = _KEYS.get(entry)
        if key is None:
            key = _KEYS[entry] = len(_MESSAGES)
            _MESSAGES.append(entry)
    return key


def value_error(error):
    """The `ValueError` for an error raised by a failed `assertion`, or None
    for any other error."""
    text = str(error)
    match = _KEY.search(text)
    if match is None or int(match.group(1)) >= len(_MESSAGES):
        return None
    message, names = _MESSAGES[int(match.group(1))]
    values = _ITEM.findall(text[match.end():])[: len(names)]
    reported = ", ".join(
        f"{name}={value.strip()}" for name, value in zip(names, values)
    )
    return ValueError(f"{message}{reported}".rstrip())


@contextlib.contextmanager
def as_value_errors():
    """Within it, a failed `assertion` raises its `ValueError`."""
    try:
        yield
    except Exception as error:
        replacement = value_error(error)
        if replacement is None:
            raise
        raise replacement from None
