"""In-graph checks: a failed assertion in a `tf.data` pipeline becomes the
ValueError of its registered message, with the values it reported, and no
other error does."""

import numpy as np
import pytest
import tensorflow as tf

from keras_simclr import _graph_checks


def _failing_pipeline(message, values):
    def check(x):
        reported = tuple((name, fn(x)) for name, fn in values)
        with tf.control_dependencies(
            [_graph_checks.assertion(tf.reduce_max(x) < 0, message, reported)]
        ):
            return tf.identity(x)

    return tf.data.Dataset.from_tensor_slices(np.array([[0.25, 3.5]], "float32")).map(
        check
    )


def test_the_value_error_is_the_registered_message_and_the_reported_values():
    # Brackets and the marker's own words in a message do not confuse it.
    message = "`x` must be below 0 [not in [0, 1]], see #1. Received: "
    dataset = _failing_pipeline(
        message, (("x.min()", tf.reduce_min), ("x.max()", tf.reduce_max))
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        next(iter(dataset))
    # The raw error reads as the message too.
    assert message in str(raised.value)
    error = _graph_checks.value_error(raised.value)
    assert isinstance(error, ValueError)
    assert str(error) == message + "x.min()=0.25, x.max()=3.5"


def test_the_context_raises_the_value_error_and_lets_others_through():
    dataset = _failing_pipeline("No values. ", ())
    with pytest.raises(ValueError) as raised:
        with _graph_checks.as_value_errors():
            next(iter(dataset))
    assert str(raised.value) == "No values."
    assert not isinstance(raised.value, tf.errors.InvalidArgumentError)
    # TensorFlow's own assertions, and other errors, pass unchanged.
    with pytest.raises(tf.errors.InvalidArgumentError):
        with _graph_checks.as_value_errors():
            tf.debugging.assert_greater(tf.constant(0.0), 1.0, message="its own")
    assert _graph_checks.value_error(RuntimeError("keras_simclr check")) is None
    with pytest.raises(KeyError):
        with _graph_checks.as_value_errors():
            raise KeyError("other")


def test_one_message_one_key():
    first = _graph_checks._register("a", ("v",))
    assert _graph_checks._register("a", ("v",)) == first
    assert _graph_checks._register("a", ()) != first
    assert _graph_checks._register("b", ("v",)) != first
