"""Shared checks: config and `.keras` round trips, as keras-hub's TestCase."""

import os

import keras
import numpy as np


def run_serialization_test(instance):
    """`get_config` -> `from_config` gives an object with the same config."""
    config = instance.get_config()
    revived = instance.__class__.from_config(config)
    assert revived.get_config() == config
    serialized = keras.saving.serialize_keras_object(instance)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert revived.get_config() == config
    return revived


def run_model_saving_test(model, inputs, tmp_path, atol=1e-5, output_fn=None):
    """Saves `model` as `.keras`, loads it back and compares inference outputs.

    `output_fn(model, inputs)` gives the outputs to compare; by default
    `model(inputs, training=False)`.
    """
    output_fn = output_fn or (lambda m, x: m(x, training=False))
    expected = keras.tree.map_structure(
        keras.ops.convert_to_numpy, output_fn(model, inputs)
    )
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    actual = keras.tree.map_structure(
        keras.ops.convert_to_numpy, output_fn(restored, inputs)
    )
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5),
        expected,
        actual,
    )
    return restored
