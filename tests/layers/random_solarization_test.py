import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers.random_solarization import RandomSolarization
from tests.testing import run_serialization_test


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_images(shape, value_range=(0, 255), seed=0):
    low, high = value_range
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape).astype("float32")


def reference_solarize(image, threshold, value_range):
    """BYOL's solarization of one image, generalised to any value range."""
    low, high = value_range
    return np.where(image >= threshold, high + low - image, image)


def binomial_bound(probability, trials, sigmas=4.0):
    """How far a measured frequency may stray from `probability`: `sigmas`
    binomial standard deviations."""
    return sigmas * math.sqrt(probability * (1 - probability) / trials)


@pytest.mark.parametrize(
    "value_range, threshold",
    [((0, 255), None), ((0, 1), None), ((-1, 1), None), ((0, 255), 100.0)],
)
def test_probability_one_matches_numpy_reference(value_range, threshold):
    x = random_images((4, 8, 8, 3), value_range)
    layer = RandomSolarization(
        probability=1.0, threshold=threshold, value_range=value_range
    )
    expected_threshold = (
        threshold if threshold is not None else 0.5 * sum(value_range)
    )
    assert layer.solarization_threshold() == expected_threshold
    expected = reference_solarize(x, expected_threshold, value_range)
    # Both sides of the threshold are present, so the test can tell them.
    assert 0.2 < np.mean(x >= expected_threshold) < 0.8
    scale = value_range[1] - value_range[0]
    np.testing.assert_allclose(
        to_numpy(layer(x)), expected, rtol=0, atol=1e-6 * scale
    )


def test_byol_definition_on_unit_images():
    x = np.array([0.0, 0.2, 0.4999, 0.5, 0.7, 1.0], "float32")
    x = x.reshape(1, 1, 6, 1)
    layer = RandomSolarization(probability=1.0, value_range=(0, 1))
    expected = [0.0, 0.2, 0.4999, 0.5, 0.3, 0.0]
    np.testing.assert_allclose(to_numpy(layer(x)).ravel(), expected, atol=1e-7)


def test_pil_definition_on_uint8_images():
    # PIL's ImageOps.solarize(image, threshold=128) inverts pixels >= 128;
    # for integer pixels that is the middle, 127.5, of (0, 255).
    x = np.arange(256, dtype="uint8").reshape(1, 16, 16, 1)
    y = to_numpy(RandomSolarization(probability=1.0)(x))
    expected = np.where(x >= 128, 255 - x.astype("int64"), x)
    np.testing.assert_array_equal(y, expected)


def test_probability_zero_and_training_false_are_identity():
    x = random_images((4, 8, 8, 3))
    np.testing.assert_array_equal(
        to_numpy(RandomSolarization(probability=0.0)(x)), x
    )
    np.testing.assert_array_equal(
        to_numpy(RandomSolarization(probability=1.0)(x, training=False)), x
    )


def test_transform_images_follows_the_draws():
    layer = RandomSolarization(probability=0.5, seed=3)
    x = random_images((4, 8, 8, 3))
    selected = keras.ops.convert_to_tensor([True, False, True, False])
    transformation = {"solarize": selected}
    y = to_numpy(
        layer.transform_images(keras.ops.convert_to_tensor(x), transformation)
    )
    for i in (0, 2):
        np.testing.assert_allclose(
            y[i], reference_solarize(x[i], 127.5, (0, 255)), atol=1e-4
        )
    for i in (1, 3):
        np.testing.assert_array_equal(y[i], x[i])


def test_per_image_probability_over_many_images():
    # 4,000 images whose pixels are all above the threshold: an image is
    # either inverted everywhere (55) or untouched (200).
    trials = 4000
    x = np.full((trials, 2, 2, 3), 200.0, "float32")
    y = to_numpy(RandomSolarization(probability=0.2, seed=5)(x))
    solarized = np.all(y == 55.0, axis=(1, 2, 3))
    kept = np.all(y == 200.0, axis=(1, 2, 3))
    assert np.all(solarized | kept)
    frequency = solarized.mean()
    # 4 binomial standard deviations: 0.0253 for 4,000 images at p = 0.2.
    assert abs(frequency - 0.2) < binomial_bound(0.2, trials)


def test_calls_differ_and_seeds_reproduce():
    x = np.full((64, 2, 2, 1), 200.0, "float32")
    layer = RandomSolarization(probability=0.5, seed=11)
    first = to_numpy(layer(x))
    assert not np.array_equal(first, to_numpy(layer(x)))
    np.testing.assert_array_equal(
        first, to_numpy(RandomSolarization(probability=0.5, seed=11)(x))
    )


def test_dtype_unbatched_and_mixed_precision():
    x = random_images((4, 8, 8, 3)).astype("uint8")
    y = RandomSolarization(probability=1.0)(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    assert tuple(RandomSolarization()(x[0]).shape) == (8, 8, 3)
    y = RandomSolarization(probability=1.0, dtype="mixed_bfloat16")(x)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"probability": 1.5}, "probability"),
        ({"probability": "often"}, "probability"),
        ({"threshold": 300.0}, "threshold"),
        ({"threshold": 0.7, "value_range": (-1, 0)}, "threshold"),
        ({"value_range": (1, 0)}, "value_range"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}="):
        RandomSolarization(**kwargs)


def test_refuses_images_outside_the_value_range():
    with pytest.raises(ValueError, match="value_range"):
        RandomSolarization()(random_images((4, 8, 8, 3), (0, 1)))


def test_get_config_round_trip():
    layer = RandomSolarization(
        probability=0.3, threshold=0.25, value_range=(0, 1), seed=7
    )
    revived = run_serialization_test(layer)
    assert revived.seed == 7 and revived.threshold == 0.25
    assert run_serialization_test(RandomSolarization()).threshold is None


def test_runs_in_tf_data():
    x = np.full((6, 4, 4, 3), 200.0, "float32")
    layer = RandomSolarization(probability=1.0, seed=5)
    batched = tf.data.Dataset.from_tensor_slices(x).batch(3).map(layer)
    outputs = [b.numpy() for b in batched]
    assert [o.shape for o in outputs] == [(3, 4, 4, 3)] * 2
    np.testing.assert_allclose(outputs[0], 55.0)
    single = tf.data.Dataset.from_tensor_slices(x).map(layer)
    assert next(iter(single)).shape == (4, 4, 3)


def test_runs_in_a_compiled_training_step():
    inputs = keras.Input((8, 8, 3))
    features = RandomSolarization(probability=0.5, value_range=(0, 1))(inputs)
    features = keras.layers.GlobalAveragePooling2D()(features)
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    model.compile(
        optimizer="sgd",
        loss="mse",
        jit_compile=keras.backend.backend() != "torch",
    )
    history = model.fit(
        random_images((4, 8, 8, 3), (0, 1)), np.zeros((4, 1)), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
