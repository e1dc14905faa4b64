"""Guards the private `DataLayer` base on the backend under test."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr import _graph_checks
from keras_simclr.layers import data_layer
from keras_simclr.layers.data_layer import ImageDataLayer
from tests import testing


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


# === Value range checks ===


def unit_images(batch=4, size=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (batch, size, size, 3)).astype("float32")


def extrema_text(x, argument="x"):
    """The `min()` and `max()` part of the message, from NumPy."""
    return (
        rf"{argument}\.min\(\)={float(x.min()):.6g}, "
        rf"{argument}\.max\(\)={float(x.max()):.6g}"
    )


def as_tensors(x):
    """The batch as a NumPy array, a tensor of the backend under test, and a
    TensorFlow tensor (what a tf.data pipeline yields on every backend)."""
    return {
        "numpy": x,
        "backend": keras.ops.convert_to_tensor(x),
        "tensorflow": tf.constant(x),
    }


@pytest.mark.parametrize("kind", ["numpy", "backend", "tensorflow"])
def test_check_value_range_refuses_unit_images_for_0_255(kind):
    x = unit_images()
    message = (
        r"`x` holds images in \[0, 1\] but `value_range` is \(0.0, 255.0\).*"
        r"value_range=\(0, 1\).*multiply the images by 255\. "
        r"Received: value_range=\(0.0, 255.0\), " + extrema_text(x) + "$"
    )
    with pytest.raises(ValueError, match=message):
        data_layer.check_value_range(as_tensors(x)[kind], (0, 255), "x")


@pytest.mark.parametrize("kind", ["numpy", "backend", "tensorflow"])
def test_check_value_range_refuses_values_outside_the_range(kind):
    x = unit_images() * 300.0
    message = (
        r"`images` has values outside `value_range`=\(0.0, 255.0\).*"
        r"Received: value_range=\(0.0, 255.0\), "
        + extrema_text(x, "images")
        + "$"
    )
    with pytest.raises(ValueError, match=message):
        data_layer.check_value_range(as_tensors(x)[kind], (0, 255), "images")
    with pytest.raises(ValueError, match="outside `value_range`"):
        data_layer.check_value_range(
            as_tensors(unit_images() * 2 - 1)[kind], (0, 1), "x"
        )


@pytest.mark.parametrize("kind", ["numpy", "backend", "tensorflow"])
def test_check_value_range_passes_images_in_range(kind):
    check = data_layer.check_value_range
    pixels = (unit_images() * 255).astype("uint8")
    check(as_tensors(pixels)[kind], (0, 255), "x")
    check(as_tensors(unit_images())[kind], (0, 1), "x")
    check(as_tensors(unit_images() * 2 - 1)[kind], (-1, 1), "x")
    # Float rounding just past the ends (0.1% of the width) is tolerated.
    check(as_tensors(np.float32([[0.0, 255.2]]))[kind], (0, 255), "x")
    check(as_tensors(np.float32([[-0.0009, 1.0009]]))[kind], (0, 1), "x")
    # A constant batch, such as zeros, says nothing about the range.
    check(as_tensors(np.zeros((2, 4, 4, 3), "float32"))[kind], (0, 255), "x")
    check(as_tensors(np.zeros((0, 4, 4, 3), "float32"))[kind], (0, 255), "x")


def test_check_value_range_tolerance_and_other_ranges():
    check = data_layer.check_value_range
    with pytest.raises(ValueError, match="outside"):
        check(np.float32([0.0, 255.3]), (0, 255), "x")
    with pytest.raises(ValueError, match="outside"):
        check(np.float32([-0.002, 0.5]), (0, 1), "x")
    # Any range above 1 refuses [0, 1] images, with its own remedy.
    with pytest.raises(
        ValueError, match=r"rescale the images to \(0.0, 100.0\)"
    ):
        check(np.float32([0.2, 0.9]), (0, 100), "x")
    with pytest.raises(ValueError, match="value_range="):
        check(np.float32([0.2, 0.9]), (1, 0), "x")


def test_check_value_range_skips_symbolic_tensors():
    data_layer.check_value_range(keras.KerasTensor((None, 6, 6, 3)), (0, 255), "x")
    checked = []

    def traced(x):
        data_layer.check_value_range(x, (0, 255), "x")
        checked.append(True)
        return x

    # Traced by tf.function on TensorFlow, jax.jit on JAX; eager on torch,
    # which is checked.
    step = testing.compiled(traced)
    if keras.backend.backend() == "torch":
        with pytest.raises(ValueError, match="value_range"):
            step(keras.ops.convert_to_tensor(unit_images()))
    else:
        step(keras.ops.convert_to_tensor(unit_images()))
        assert checked


@pytest.mark.parametrize("kind", ["numpy", "backend", "tensorflow"])
def test_layer_called_eagerly_checks_its_input(kind):
    x = unit_images()
    with pytest.raises(ValueError, match=r"value_range.*" + extrema_text(x, "inputs")):
        RandomInvert(seed=0)(as_tensors(x)[kind])
    with pytest.raises(ValueError, match="outside `value_range`"):
        RandomInvert(seed=0)(as_tensors(x * 300.0)[kind])
    y = RandomInvert(value_range=(0, 1), seed=0)(as_tensors(x)[kind])
    assert tuple(y.shape) == x.shape
    # No check where the range is not used.
    RandomInvert(seed=0)(as_tensors(x)[kind], training=False)


def test_tf_data_map_asserts_the_range_on_the_first_batch():
    x = unit_images(batch=6)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(3)
    # TensorFlow reports errors inside a dataset function as
    # InvalidArgumentError, with the layer's message and the batch's extrema.
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        next(iter(dataset.map(RandomInvert(seed=0))))
    assert "`value_range` is (0.0, 255.0)" in str(raised.value)
    error = _graph_checks.value_error(raised.value)
    first = x[:3]
    expected = (
        r"^`inputs` holds images in \[0, 1\].*multiply the images by 255\. "
        r"Received: value_range=\(0.0, 255.0\), inputs\.min\(\)=\S+, "
        r"inputs\.max\(\)=\S+$"
    )
    assert isinstance(error, ValueError)
    assert re.match(expected, str(error))
    reported = re.findall(r"\.m(?:in|ax)\(\)=(\S+?)(?:,|$)", str(error))
    np.testing.assert_allclose(
        [float(v) for v in reported], [first.min(), first.max()], rtol=1e-6
    )

    outside = dataset.map(lambda images: images * 300.0).map(RandomInvert())
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        next(iter(outside))
    assert _graph_checks.value_error(ValueError("other")) is None

    in_range = dataset.map(RandomInvert(value_range=(0, 1), seed=0))
    assert [b.shape for b in in_range] == [(3, 6, 6, 3)] * 2
    pixels = dataset.map(lambda images: images * 255.0).map(RandomInvert())
    assert [b.shape for b in pixels] == [(3, 6, 6, 3)] * 2


def test_no_check_inside_a_model_or_another_layer():
    class Twice(ImageDataLayer):
        """Calls a `RandomInvert` of range (0, 1) on its own (0, 255) input."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = RandomInvert(value_range=(0, 1))

        def call(self, inputs, training=True):
            return self.inner(inputs, training=training)

    pixels = unit_images() * 255.0
    # The inner layer gets 0-255 images for its (0, 1) range, unchecked.
    Twice()(pixels)
    with pytest.raises(ValueError, match="outside"):
        RandomInvert(value_range=(0, 1))(pixels)

    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, RandomInvert()(inputs))
    y = model(unit_images(), training=True)
    assert tuple(y.shape) == (4, 6, 6, 3)
