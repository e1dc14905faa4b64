import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers.center_crop import CenterCrop
from keras_simclr.layers.random_resized_crop import RandomResizedCrop
from tests import center_crop_reference as reference
from tests.testing import compiled
from tests.testing import run_serialization_test


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def official_center_crop(image, height, width, crop_proportion):
    """The official `data_util.center_crop` of one image (bicubic), not
    clipped."""
    return reference.official_center_crop(
        image[None], height, width, crop_proportion, value_range=(-1e9, 1e9)
    )[0]


@pytest.mark.parametrize(
    "image_size, output_size, box",
    [
        # 0.875 * 20 = 17.5 rounds to even, 18.
        ((20, 28), (12, 12), (1, 5, 18, 18)),
        ((28, 20), (12, 12), (5, 1, 18, 18)),
        # A wide output (width / height = 2 > 28 / 20): 87.5% of the width,
        # half as high.
        ((20, 28), (8, 16), (4, 2, 12, 24)),
        # A tall output: 0.875 * 100 = 87.5 rounds to 88 high, 58 wide.
        ((100, 100), (48, 32), (6, 21, 88, 58)),
        # A tall output (1 / 2 < 28 / 30): 87.5% of the height, 26.25 -> 26,
        # half as wide, 13.125 -> 13.
        ((30, 28), (16, 8), (2, 8, 26, 13)),
        # An odd free room puts the extra pixel above and to the left.
        ((21, 27), (12, 12), (2, 5, 18, 18)),
    ],
)
def test_crop_box_is_the_official_one(image_size, output_size, box):
    # The official function cuts this box: the literal is a readable
    # statement of it.
    assert reference.official_crop_box(*image_size, *output_size, 0.875) == box
    layer = CenterCrop(*output_size)
    top, left, height, width = (
        float(to_numpy(v)) for v in layer.crop_box(*image_size)
    )
    assert (top, left, height, width) == box


# Image sizes (square, landscape, portrait, odd) and output shapes (square,
# tall, wide) whose crops the official function and the layer must agree on.
IMAGE_SIZES = [(100, 100), (100, 150), (150, 100), (37, 53), (64, 40)]
OUTPUT_SIZES = [(48, 32), (32, 48), (16, 16), (9, 25), (30, 7)]
PROPORTIONS = [0.875, 0.6, 1.0]


def test_crop_boxes_match_the_official_function_on_many_shapes():
    for image_size in IMAGE_SIZES:
        for output_size in OUTPUT_SIZES:
            for proportion in PROPORTIONS:
                expected = reference.official_crop_box(
                    *image_size, *output_size, proportion
                )
                layer = CenterCrop(*output_size, crop_proportion=proportion)
                actual = tuple(
                    int(float(to_numpy(v)))
                    for v in layer.crop_box(*image_size)
                )
                assert actual == expected, (image_size, output_size, proportion)


@pytest.mark.parametrize("image_size", [(100, 100), (37, 53), (64, 40)])
def test_non_square_outputs_match_the_official_function(image_size):
    x = random_images((2,) + image_size + (3,), seed=3)
    for output_size in [(48, 32), (32, 48), (9, 25)]:
        layer = CenterCrop(*output_size)
        expected = reference.official_center_crop(x, *output_size)
        actual = to_numpy(compiled(layer)(x))
        np.testing.assert_allclose(actual, expected, atol=1e-3)


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
        # The crop is the whole image when the output has the image's
        # aspect ratio.
        ((20, 28), (10, 14)),
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
