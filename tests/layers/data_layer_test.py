"""Guards the private `DataLayer` base on the backend under test."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers import data_layer
from keras_simclr.layers.data_layer import ImageDataLayer


class RandomInvert(ImageDataLayer):
    """Inverts each image with probability 0.5 (in `[0, 1]` units)."""

    def augment(self, images):
        np_ = self.backend.numpy
        batch_size = self.backend.shape(images)[0]
        invert = self._uniform((batch_size,)) < 0.5
        return np_.where(invert[:, None, None, None], 1.0 - images, images)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def images(batch=8, size=6, high=255.0):
    rng = np.random.default_rng(0)
    return rng.uniform(0, high, (batch, size, size, 3)).astype("float32")


def test_keras_version_is_the_tested_one():
    major, minor = (int(v) for v in keras.__version__.split(".")[:2])
    assert (major, minor) == (3, 15)
    assert issubclass(ImageDataLayer, keras.layers.Layer)


def test_value_range_conversion_and_per_image_randomness():
    x = images(batch=64)
    y = to_numpy(RandomInvert(value_range=(0, 255), seed=1)(x))
    inverted = np.all(np.abs(y - (255.0 - x)) < 1e-3, axis=(1, 2, 3))
    kept = np.all(np.abs(y - x) < 1e-3, axis=(1, 2, 3))
    assert np.all(inverted | kept)
    assert 10 < inverted.sum() < 54


def test_other_value_range():
    x = images(high=2.0) - 1.0
    y = to_numpy(RandomInvert(value_range=(-1, 1), seed=1)(x))
    assert np.all(
        np.isclose(y, -x, atol=1e-5).all(axis=(1, 2, 3))
        | np.isclose(y, x, atol=1e-5).all(axis=(1, 2, 3))
    )


def test_training_false_is_identity_and_dtype():
    x = images().astype("uint8")
    y = RandomInvert()(x, training=False)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    np.testing.assert_array_equal(to_numpy(y), x.astype("float32"))
    y = RandomInvert()(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


def test_unbatched_input():
    x = images()[0]
    y = RandomInvert()(x)
    assert tuple(y.shape) == x.shape


def test_bad_rank_raises():
    with pytest.raises(ValueError, match="inputs.shape"):
        RandomInvert()(np.zeros((2, 3), "float32"))


def test_seeded_layers_reproduce_and_calls_differ():
    x = images(batch=16)
    a = RandomInvert(seed=7)
    b = RandomInvert(seed=7)
    first = to_numpy(a(x))
    np.testing.assert_array_equal(first, to_numpy(b(x)))
    second = to_numpy(a(x))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    "value_range", [(1, 0), (0,), "0-255", (0, "a"), (2, 2)]
)
def test_bad_value_range(value_range):
    with pytest.raises(ValueError, match="value_range="):
        RandomInvert(value_range=value_range)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed=1.5"):
        RandomInvert(seed=1.5)


def test_validators():
    with pytest.raises(ValueError, match="p=1.5"):
        data_layer.validate_probability("p", 1.5)
    with pytest.raises(ValueError, match="p=True"):
        data_layer.validate_probability("p", True)
    assert data_layer.validate_interval("s", [1, 2], 0.0) == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"s=\(0, 1\)"):
        data_layer.validate_interval("s", (0, 1), 0.0, strict_lower=True)
    with pytest.raises(ValueError, match=r"s=\(0.5, 2\)"):
        data_layer.validate_interval("s", (0.5, 2), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"s=\(2, 1\)"):
        data_layer.validate_interval("s", (2, 1))


def test_get_config_has_seed_and_range():
    config = RandomInvert(value_range=(0, 1), seed=3).get_config()
    assert config["seed"] == 3
    assert config["value_range"] == (0.0, 1.0)


def test_runs_in_tf_data():
    x = images(batch=6)
    layer = RandomInvert(seed=2)
    batched = tf.data.Dataset.from_tensor_slices(x).batch(3).map(layer)
    outputs = [b.numpy() for b in batched]
    assert [o.shape for o in outputs] == [(3, 6, 6, 3)] * 2
    single = tf.data.Dataset.from_tensor_slices(x).map(layer)
    assert next(iter(single)).shape == (6, 6, 3)


def test_runs_in_a_compiled_training_step():
    inputs = keras.Input((6, 6, 3))
    features = keras.layers.GlobalAveragePooling2D()(RandomInvert()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    model.compile(
        optimizer="sgd",
        loss="mse",
        jit_compile=keras.backend.backend() != "torch",
    )
    history = model.fit(
        images(batch=4) / 255.0, np.zeros((4, 1)), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
