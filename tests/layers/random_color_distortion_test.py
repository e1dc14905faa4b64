import colorsys
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers import RandomColorDistortion
from keras_simclr.layers import random_color_distortion as color
from tests.testing import run_serialization_test

LUMA = np.array([0.2989, 0.587, 0.114])


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def unit_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype("float32")


def backend():
    return RandomColorDistortion().backend


def hsv_map(image, function):
    """Applies `function(h, s, v) -> (h, s, v)` to every pixel (colorsys)."""
    out = np.empty_like(image)
    for index in np.ndindex(image.shape[:-1]):
        hsv = colorsys.rgb_to_hsv(*image[index])
        out[index] = colorsys.hsv_to_rgb(*function(*hsv))
    return out


def reference_saturation(image, factor):
    return hsv_map(image, lambda h, s, v: (h, min(max(s * factor, 0), 1), v))


def reference_hue(image, delta):
    return hsv_map(image, lambda h, s, v: ((h + delta) % 1.0, s, v))


def reference_distortion(image, params, impl):
    """The official `color_jitter_rand` + `to_grayscale` for one image."""
    image = image.astype("float64")
    if params["jitter"]:
        for operation in np.argsort(params["ranks"]):
            if operation == color.BRIGHTNESS:
                amount = params["brightness"]
                image = image + amount if impl == "v1" else image * amount
            elif operation == color.CONTRAST:
                mean = image.mean(axis=(0, 1))
                image = (image - mean) * params["contrast"] + mean
            elif operation == color.SATURATION:
                image = reference_saturation(image, params["saturation"])
            else:
                image = reference_hue(image, params["hue"])
            image = np.clip(image, 0, 1)
    if params["grayscale"]:
        image = np.repeat((image @ LUMA)[..., None], 3, axis=-1)
    return image


def sampled(layer, batch_size):
    transformation = layer.get_random_transformation(batch_size)
    return {k: to_numpy(v) for k, v in transformation.items()}


def test_adjust_brightness_and_contrast_match_numpy():
    x = unit_images((4, 16, 16, 3))
    amount = np.array([0.5, 1.0, 1.5, 0.2], "float32")
    tensor = keras.ops.convert_to_tensor(x)
    factor = keras.ops.convert_to_tensor(amount)
    np.testing.assert_allclose(
        to_numpy(color.adjust_brightness(backend(), tensor, factor)),
        x * amount[:, None, None, None],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        to_numpy(color.adjust_brightness(backend(), tensor, factor, "v1")),
        x + amount[:, None, None, None],
        rtol=1e-6,
    )
    mean = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        to_numpy(color.adjust_contrast(backend(), tensor, factor)),
        (x - mean) * amount[:, None, None, None] + mean,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        to_numpy(color.adjust_contrast(backend(), tensor, factor))[1],
        tf.image.adjust_contrast(x[1], 1.0).numpy(),
        atol=1e-6,
    )


def test_adjust_saturation_and_hue_match_colorsys_and_tf_image():
    x = unit_images((4, 16, 16, 3))
    x[0, 0, 0] = (0.3, 0.3, 0.3)  # gray pixel: hue undefined
    x[0, 0, 1] = (0.0, 0.0, 0.0)
    x[0, 0, 2] = (1.0, 0.5, 0.5)  # two equal channels
    tensor = keras.ops.convert_to_tensor(x)
    factors = np.array([0.0, 0.5, 1.7, 3.0], "float32")
    deltas = np.array([-0.45, -0.1, 0.2, 0.7], "float32")
    saturated = to_numpy(
        color.adjust_saturation(
            backend(), tensor, keras.ops.convert_to_tensor(factors)
        )
    )
    rotated = to_numpy(
        color.adjust_hue(backend(), tensor, keras.ops.convert_to_tensor(deltas))
    )
    for i in range(4):
        np.testing.assert_allclose(
            saturated[i], reference_saturation(x[i], factors[i]), atol=2e-6
        )
        np.testing.assert_allclose(
            rotated[i], reference_hue(x[i], deltas[i]), atol=2e-6
        )
        np.testing.assert_allclose(
            saturated[i],
            tf.image.adjust_saturation(x[i], factors[i]).numpy(),
            atol=2e-6,
        )
        if abs(deltas[i]) <= 0.5:
            np.testing.assert_allclose(
                rotated[i],
                tf.image.adjust_hue(x[i], deltas[i]).numpy(),
                atol=2e-6,
            )
    assert saturated.min() >= 0 and saturated.max() <= 1


def test_to_grayscale_matches_tf_image():
    x = unit_images((4, 16, 16, 3))
    gray = color.to_grayscale(backend(), keras.ops.convert_to_tensor(x))
    gray = to_numpy(gray)
    expected = tf.image.rgb_to_grayscale(x).numpy()
    np.testing.assert_allclose(gray, np.repeat(expected, 3, axis=-1), atol=1e-6)


@pytest.mark.parametrize("impl", ["v1", "v2"])
def test_layer_matches_official_random_order_per_image(impl):
    layer = RandomColorDistortion(
        strength=1.0, impl=impl, value_range=(0, 1), seed=3
    )
    orders = set()
    # Batches of 4 images of 16 x 16 pixels throughout the layer tests keep
    # JAX's eager op compilations few.
    for batch in range(12):
        x = unit_images((4, 16, 16, 3), seed=batch)
        transformation = layer.get_random_transformation(4)
        tensor = keras.ops.convert_to_tensor(x)
        y = to_numpy(layer.transform_images(tensor, transformation))
        params = {k: to_numpy(v) for k, v in transformation.items()}
        orders.update(tuple(np.argsort(r)) for r in params["ranks"])
        for i in range(4):
            expected = reference_distortion(
                x[i], {k: v[i] for k, v in params.items()}, impl
            )
            np.testing.assert_allclose(y[i], expected, atol=1e-5)
    assert len(orders) > 12


def test_sampled_factors_and_probabilities():
    params = sampled(RandomColorDistortion(strength=0.5, seed=1), 4000)
    assert np.sort(params["ranks"], axis=1).tolist() == [[0, 1, 2, 3]] * 4000
    for name in ("brightness", "contrast", "saturation"):
        assert params[name].min() >= 0.6 and params[name].max() <= 1.4
        assert params[name].min() < 0.62 and params[name].max() > 1.38
    assert params["hue"].min() >= -0.1 and params["hue"].max() <= 0.1
    assert abs(params["jitter"].mean() - 0.8) < 0.03
    assert abs(params["grayscale"].mean() - 0.2) < 0.03
    # The operation run first is uniform over the four.
    first = np.argmin(params["ranks"], axis=1)
    assert np.all(np.abs(np.bincount(first, minlength=4) / 4000 - 0.25) < 0.03)

    params = sampled(RandomColorDistortion(strength=2.0, impl="v1"), 4000)
    assert params["brightness"].min() >= -1.6
    assert params["brightness"].max() <= 1.6
    assert params["brightness"].min() < -1.5
    assert params["contrast"].min() >= 0.0 and params["contrast"].max() <= 2.6


def test_grayscale_has_equal_channels():
    layer = RandomColorDistortion(
        jitter_probability=0.0, grayscale_probability=1.0
    )
    y = to_numpy(layer(unit_images((4, 16, 16, 3)) * 255))
    np.testing.assert_allclose(y[..., 0], y[..., 1], atol=1e-4)
    np.testing.assert_allclose(y[..., 0], y[..., 2], atol=1e-4)


def test_no_jitter_no_grayscale_and_zero_strength_are_identity():
    x = unit_images((4, 16, 16, 3)) * 255
    layer = RandomColorDistortion(
        jitter_probability=0.0, grayscale_probability=0.0
    )
    np.testing.assert_allclose(to_numpy(layer(x)), x, atol=1e-4)
    layer = RandomColorDistortion(
        strength=0.0, jitter_probability=1.0, grayscale_probability=0.0
    )
    np.testing.assert_allclose(to_numpy(layer(x)), x, atol=1e-3)


def test_range_dtype_unbatched_and_training_false():
    x = (unit_images((4, 16, 16, 3)) * 255).astype("uint8")
    layer = RandomColorDistortion(seed=2)
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    y = to_numpy(y)
    assert y.min() >= 0 and y.max() <= 255
    assert tuple(layer(x[0]).shape) == (16, 16, 3)
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    y = to_numpy(RandomColorDistortion(value_range=(-1, 1))(x / 127.5 - 1))
    assert y.min() >= -1 and y.max() <= 1


def test_per_image_randomness_calls_differ_and_seeds_reproduce():
    x = np.repeat(unit_images((1, 16, 16, 3)) * 255, 4, axis=0)
    layer = RandomColorDistortion(jitter_probability=1.0, seed=4)
    first = to_numpy(layer(x))
    assert len({first[i].round(2).tobytes() for i in range(4)}) == 4
    assert not np.allclose(first, to_numpy(layer(x)))
    again = RandomColorDistortion(jitter_probability=1.0, seed=4)(x)
    np.testing.assert_array_equal(first, to_numpy(again))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"strength": -1.0}, "strength"),
        ({"strength": "strong"}, "strength"),
        ({"jitter_probability": 1.2}, "jitter_probability"),
        ({"grayscale_probability": -0.1}, "grayscale_probability"),
        ({"impl": "v3"}, "impl"),
        ({"value_range": (0, 0)}, "value_range"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}="):
        RandomColorDistortion(**kwargs)


def reference_gray_distortion(image, params, impl):
    """Brightness and contrast in the image's order, each clipped: what the
    official colour jitter does to a gray image; grayscale is a no-op."""
    image = image.astype("float64")
    if params["jitter"]:
        for operation in np.argsort(params["ranks"]):
            if operation == color.BRIGHTNESS:
                amount = params["brightness"]
                image = image + amount if impl == "v1" else image * amount
            elif operation == color.CONTRAST:
                mean = image.mean()
                image = (image - mean) * params["contrast"] + mean
            else:
                continue
            image = np.clip(image, 0, 1)
    return image


@pytest.mark.parametrize("impl", ["v1", "v2"])
def test_grayscale_images_get_brightness_and_contrast(impl):
    layer = RandomColorDistortion(
        strength=1.0, impl=impl, value_range=(0, 1), seed=3
    )
    for batch in range(3):
        gray = unit_images((4, 16, 16, 1), seed=batch)
        transformation = layer.get_random_transformation(4)
        y = to_numpy(
            layer.transform_images(
                keras.ops.convert_to_tensor(gray), transformation
            )
        )
        assert y.shape == gray.shape
        params = {k: to_numpy(v) for k, v in transformation.items()}
        rgb = np.repeat(gray, 3, axis=-1)
        for i in range(4):
            image_params = {k: v[i] for k, v in params.items()}
            expected = reference_gray_distortion(gray[i], image_params, impl)
            np.testing.assert_allclose(y[i], expected, atol=1e-5)
            # The same as the RGB distortion of the image on three channels
            # (up to the luma weights summing to 0.9999).
            expected = reference_distortion(rgb[i], image_params, impl)
            np.testing.assert_allclose(y[i, ..., 0], expected[..., 0], atol=2e-4)


def test_grayscale_images_through_the_layer():
    x = (unit_images((4, 16, 16, 1)) * 255).astype("uint8")
    layer = RandomColorDistortion(jitter_probability=1.0, seed=2)
    y = layer(x)
    assert tuple(y.shape) == (4, 16, 16, 1)
    y = to_numpy(y)
    assert y.min() >= 0 and y.max() <= 255
    assert np.abs(y - x).mean() > 1
    assert tuple(layer(x[0]).shape) == (16, 16, 1)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(2).map(layer)
    assert [b.shape for b in dataset] == [(2, 16, 16, 1)] * 2


@pytest.mark.parametrize("channels", [2, 4])
def test_refuses_other_channel_counts_when_built(channels):
    message = (
        r"RGB images \(3 channels\) or grayscale images \(1 channel\).*"
        rf"Received: inputs.shape=\(2, 4, 4, {channels}\)"
    )
    with pytest.raises(ValueError, match=message):
        RandomColorDistortion()(np.zeros((2, 4, 4, channels), "float32"))
    with pytest.raises(ValueError, match="grayscale images"):
        RandomColorDistortion().build((None, 4, 4, channels))
    with pytest.raises(ValueError, match="grayscale images"):
        RandomColorDistortion()(keras.Input((4, 4, channels)))


def test_get_config_round_trip():
    layer = RandomColorDistortion(
        strength=0.5,
        jitter_probability=0.7,
        grayscale_probability=0.1,
        impl="v1",
        value_range=(0, 1),
        seed=9,
    )
    revived = run_serialization_test(layer)
    assert revived.seed == 9 and revived.impl == "v1"


def test_runs_in_tf_data():
    x = unit_images((6, 8, 8, 3)) * 255
    layer = RandomColorDistortion(seed=5)
    batched = tf.data.Dataset.from_tensor_slices(x).batch(3).map(layer)
    outputs = [b.numpy() for b in batched]
    assert [o.shape for o in outputs] == [(3, 8, 8, 3)] * 2
    assert outputs[0].min() >= 0 and outputs[0].max() <= 255
    single = tf.data.Dataset.from_tensor_slices(x).map(layer)
    assert next(iter(single)).shape == (8, 8, 3)


def test_runs_in_a_compiled_training_step():
    inputs = keras.Input((8, 8, 3))
    features = RandomColorDistortion(value_range=(0, 1))(inputs)
    features = keras.layers.GlobalAveragePooling2D()(features)
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    model.compile(
        optimizer="sgd",
        loss="mse",
        jit_compile=keras.backend.backend() != "torch",
    )
    history = model.fit(
        unit_images((4, 8, 8, 3)), np.zeros((4, 1)), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])


# === Per-property ranges (BYOL's colour jitter) ===


def assert_uniform_on(values, low, high):
    """Draws fill `[low, high]`: inside it, reaching within 1% of both ends,
    with the mean of a uniform within 4 standard errors."""
    width = high - low
    assert values.min() >= low and values.max() <= high
    assert values.min() < low + 0.01 * width
    assert values.max() > high - 0.01 * width
    standard_error = width / math.sqrt(12 * len(values))
    assert abs(values.mean() - (low + high) / 2) < 4 * standard_error


def test_byol_ranges_are_sampled():
    layer = RandomColorDistortion(
        brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, impl="v1", seed=2
    )
    assert layer.jitter_ranges() == (0.4, 0.4, 0.2, 0.1)
    params = sampled(layer, 4000)
    assert_uniform_on(params["brightness"], -0.4, 0.4)
    assert_uniform_on(params["contrast"], 0.6, 1.4)
    assert_uniform_on(params["saturation"], 0.8, 1.2)
    assert_uniform_on(params["hue"], -0.1, 0.1)
    assert abs(params["jitter"].mean() - 0.8) < 4 * math.sqrt(0.16 / 4000)
    assert abs(params["grayscale"].mean() - 0.2) < 4 * math.sqrt(0.16 / 4000)


def test_one_override_changes_only_its_range():
    # strength 1.0 gives 0.8 / 0.8 / 0.8 / 0.2; only brightness is overridden.
    params = sampled(RandomColorDistortion(brightness=0.3, seed=6), 4000)
    assert_uniform_on(params["brightness"], 0.7, 1.3)
    assert_uniform_on(params["contrast"], 0.2, 1.8)
    assert_uniform_on(params["saturation"], 0.2, 1.8)
    assert_uniform_on(params["hue"], -0.2, 0.2)
    params = sampled(
        RandomColorDistortion(strength=0.5, hue=0.05, impl="v1", seed=6), 4000
    )
    assert_uniform_on(params["brightness"], -0.4, 0.4)
    assert_uniform_on(params["contrast"], 0.6, 1.4)
    assert_uniform_on(params["hue"], -0.05, 0.05)
    # A range of 0 leaves the property alone.
    params = sampled(RandomColorDistortion(saturation=0.0, hue=0.0), 100)
    np.testing.assert_array_equal(params["saturation"], 1.0)
    np.testing.assert_array_equal(params["hue"], 0.0)


def test_overrides_apply_with_zero_strength_and_match_reference():
    layer = RandomColorDistortion(
        strength=0.0,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        impl="v1",
        jitter_probability=1.0,
        value_range=(0, 1),
        seed=8,
    )
    x = unit_images((4, 16, 16, 3), seed=5)
    transformation = layer.get_random_transformation(4)
    y = to_numpy(
        layer.transform_images(keras.ops.convert_to_tensor(x), transformation)
    )
    params = {k: to_numpy(v) for k, v in transformation.items()}
    for i in range(4):
        expected = reference_distortion(
            x[i], {k: v[i] for k, v in params.items()}, "v1"
        )
        np.testing.assert_allclose(y[i], expected, atol=1e-5)
    assert np.abs(to_numpy(layer(x)) - x).mean() > 0.01
    # No jitter at all when every range is 0.
    still = RandomColorDistortion(
        strength=0.0, hue=0.0, grayscale_probability=0.0, value_range=(0, 1)
    )
    np.testing.assert_allclose(to_numpy(still(x)), x, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"brightness": -0.1}, "brightness"),
        ({"contrast": "high"}, "contrast"),
        ({"saturation": float("nan")}, "saturation"),
        ({"hue": 0.6}, "hue"),
        ({"hue": -0.1}, "hue"),
    ],
)
def test_bad_overrides(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}="):
        RandomColorDistortion(**kwargs)


def test_overrides_in_config():
    layer = RandomColorDistortion(
        brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, impl="v1", seed=1
    )
    revived = run_serialization_test(layer)
    assert revived.jitter_ranges() == (0.4, 0.4, 0.2, 0.1)
    config = RandomColorDistortion().get_config()
    assert [config[k] for k in ("brightness", "contrast", "saturation", "hue")] == [
        None
    ] * 4
