import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers.center_crop import CenterCrop
from keras_simclr.layers.random_resized_crop import RandomResizedCrop
from tests.testing import compiled
from tests.testing import run_serialization_test


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def official_center_crop(image, height, width, crop_proportion):
    """SimCLR's `data_util.center_crop` of one image, in NumPy and
    `tf.image.resize`, then clipped as its `preprocess_for_eval`."""
    image_height, image_width = image.shape[:2]
    aspect_ratio = height / width
    if aspect_ratio > np.float32(image_width) / np.float32(image_height):
        crop_height = np.rint(
            np.float32(crop_proportion / aspect_ratio) * image_width
        )
        crop_width = np.rint(np.float32(crop_proportion) * image_width)
    else:
        crop_height = np.rint(np.float32(crop_proportion) * image_height)
        crop_width = np.rint(
            np.float32(crop_proportion * aspect_ratio) * image_height
        )
    crop_height, crop_width = int(crop_height), int(crop_width)
    top = ((image_height - crop_height) + 1) // 2
    left = ((image_width - crop_width) + 1) // 2
    box = image[top : top + crop_height, left : left + crop_width]
    resized = tf.image.resize(box, (height, width), method="bicubic")
    return resized.numpy()


@pytest.mark.parametrize(
    "image_size, output_size, box",
    [
        # 0.875 * 20 = 17.5 rounds to even, 18.
        ((20, 28), (12, 12), (1, 5, 18, 18)),
        ((28, 20), (12, 12), (5, 1, 18, 18)),
        # height / width = 0.5 is read as the width-to-height ratio.
        ((20, 28), (8, 16), (1, 10, 18, 9)),
        # 0.875 * 28 = 24.5 rounds to even, 24; 2 / 1 > 28 / 30.
        ((30, 28), (16, 8), (9, 2, 12, 24)),
        # An odd free room puts the extra pixel above and to the left.
        ((21, 27), (12, 12), (2, 5, 18, 18)),
    ],
)
def test_crop_box_is_the_official_one(image_size, output_size, box):
    layer = CenterCrop(*output_size)
    top, left, height, width = (
        float(to_numpy(v)) for v in layer.crop_box(*image_size)
    )
    assert (top, left, height, width) == box


@pytest.mark.parametrize(
    "image_size, output_size, crop_proportion",
    [
        ((20, 28), (12, 12), 0.875),
        ((28, 20), (12, 12), 0.875),
        ((20, 28), (8, 16), 0.875),
        ((30, 28), (16, 8), 0.6),
        ((21, 27), (12, 12), 0.875),
        ((20, 28), (30, 24), 1.0),
    ],
)
def test_matches_the_official_center_crop(
    image_size, output_size, crop_proportion
):
    x = random_images((3,) + image_size + (3,))
    layer = CenterCrop(*output_size, crop_proportion=crop_proportion)
    expected = np.stack(
        [
            official_center_crop(image, *output_size, crop_proportion)
            for image in x
        ]
    )
    # The bicubic kernel overshoots on random pixels; the layer clips.
    assert expected.min() < 0 or expected.max() > 255
    expected = np.clip(expected, 0, 255)
    # Compiled: one compilation per image size rather than one per op
    # (JAX), and a graph (TensorFlow).
    both = compiled(lambda x: (layer(x), layer(x, training=False)))
    # float32 rounding of [0, 255] values (4e-6 of the range): TensorFlow
    # and XLA round positions and sums in other orders.
    for output in both(x):
        np.testing.assert_allclose(to_numpy(output), expected, atol=1e-3)


@pytest.mark.parametrize(
    "image_size, output_size",
    [
        ((24, 24), (12, 12)),
        ((24, 24), (30, 30)),
        # The crop is the whole image when height / width of the output is
        # the image's width / height (the official code's reading).
        ((20, 28), (14, 10)),
    ],
)
def test_whole_image_bilinear_is_a_plain_resize(image_size, output_size):
    x = random_images((3,) + image_size + (3,))
    layer = CenterCrop(
        *output_size, crop_proportion=1.0, interpolation="bilinear"
    )
    box = [float(to_numpy(v)) for v in layer.crop_box(*image_size)]
    assert box == [0.0, 0.0, *map(float, image_size)]
    resize = RandomResizedCrop(*output_size)
    actual, whole = compiled(
        lambda x: (layer(x), resize(x, training=False))
    )(x)
    actual = to_numpy(actual)
    expected = tf.image.resize(x, output_size, method="bilinear").numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-3)
    np.testing.assert_allclose(actual, to_numpy(whole), atol=1e-3)


def test_output_dtype_shape_and_unbatched_uint8_input():
    x = random_images((20, 28, 3)).astype("uint8")
    y = CenterCrop(12, 12)(x)
    assert tuple(y.shape) == (12, 12, 3)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    expected = official_center_crop(x.astype("float32"), 12, 12, 0.875)
    expected = np.clip(expected, 0, 255)
    np.testing.assert_allclose(to_numpy(y), expected, atol=1e-3)
    y = CenterCrop(12, 12, dtype="bfloat16")(x[None])
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    layer = CenterCrop(8, 6)
    assert layer.compute_output_shape((None, 20, 28, 3)) == (None, 8, 6, 3)


def test_value_range_is_checked_and_clipped():
    x = random_images((2, 20, 28, 3))
    with pytest.raises(ValueError, match="value_range"):
        CenterCrop(12, 12, value_range=(0, 1))(x)
    y = to_numpy(CenterCrop(12, 12, value_range=(0, 1))(x / 255.0))
    assert y.min() >= 0.0 and y.max() <= 1.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"height": 0}, "height"),
        ({"width": 2.5}, "width"),
        ({"crop_proportion": 0.0}, "crop_proportion"),
        ({"crop_proportion": 1.5}, "crop_proportion"),
        ({"crop_proportion": "all"}, "crop_proportion"),
        ({"interpolation": "area"}, "interpolation"),
        ({"value_range": (1, 0)}, "value_range"),
    ],
)
def test_bad_arguments(kwargs, name):
    arguments = dict({"height": 8, "width": 8}, **kwargs)
    with pytest.raises(ValueError, match=f"{name}="):
        CenterCrop(**arguments)


def test_get_config_round_trip():
    layer = CenterCrop(
        12,
        10,
        crop_proportion=0.5,
        interpolation="bilinear",
        value_range=(0, 1),
        name="eval_crop",
    )
    revived = run_serialization_test(layer)
    config = revived.get_config()
    assert config["crop_proportion"] == 0.5
    assert config["interpolation"] == "bilinear"
    assert config["value_range"] == (0.0, 1.0)
    assert "seed" not in config


def test_runs_in_tf_data_with_dynamic_sizes():
    layer = CenterCrop(12, 12)
    sizes = [(20, 28), (28, 20), (16, 16)]
    images = [random_images(s + (3,), seed=i) for i, s in enumerate(sizes)]

    def generate():
        yield from images

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((None, None, 3), tf.float32)
    )
    outputs = list(dataset.map(layer))
    for image, output in zip(images, outputs):
        expected = np.clip(official_center_crop(image, 12, 12, 0.875), 0, 255)
        np.testing.assert_allclose(output.numpy(), expected, atol=1e-3)


def test_runs_in_a_compiled_model():
    inputs = keras.Input((16, 16, 3))
    crop = CenterCrop(8, 8, value_range=(0, 1))
    features = keras.layers.GlobalAveragePooling2D()(crop(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    model.compile(
        optimizer="sgd",
        loss="mse",
        jit_compile=keras.backend.backend() != "torch",
    )
    x = random_images((4, 16, 16, 3)) / 255.0
    history = model.fit(x, np.zeros((4, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    cropped = keras.Model(inputs, crop(inputs))
    expected = np.stack(
        [np.clip(official_center_crop(i, 8, 8, 0.875), 0, 1) for i in x]
    )
    np.testing.assert_allclose(
        cropped.predict(x, verbose=0), expected, atol=1e-5
    )
