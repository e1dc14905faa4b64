import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers import RandomResizedCrop
from keras_simclr.layers.random_resized_crop import bicubic_resize_matrix
from keras_simclr.layers.random_resized_crop import bilinear_resize_matrix
from keras_simclr.layers.random_resized_crop import resize_matrix
from tests.testing import compiled
from tests.testing import run_serialization_test

# The official SimCLR crop, beside the defaults.
NEW_OPTIONS = {"sampler": "simclr", "interpolation": "bicubic"}


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def reference_resize(image, height, width):
    """Bilinear resize with half-pixel centres and clamped edges (NumPy)."""

    def axis(input_size, output_size):
        source = (np.arange(output_size) + 0.5) * input_size / output_size
        source = np.clip(source - 0.5, 0, input_size - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, input_size - 1)
        return low, high, source - low

    low, high, fraction = axis(image.shape[0], height)
    rows = image[low] * (1 - fraction)[:, None, None]
    rows = rows + image[high] * fraction[:, None, None]
    low, high, fraction = axis(image.shape[1], width)
    out = rows[:, low] * (1 - fraction)[None, :, None]
    return out + rows[:, high] * fraction[None, :, None]


def reference_crop(images, transformation, height, width):
    outputs = []
    for i, image in enumerate(images):
        top, left = (int(transformation[k][i]) for k in ("top", "left"))
        h = int(transformation["crop_height"][i])
        w = int(transformation["crop_width"][i])
        box = image[top : top + h, left : left + w]
        out = reference_resize(box, height, width)
        if transformation["flip"][i]:
            out = out[:, ::-1]
        outputs.append(out)
    return np.stack(outputs)


def torchvision_mean_area(count, size, scale, ratio, rng):
    """Mean area fraction of torchvision's `get_params`, in plain Python."""
    total = 0.0
    for _ in range(count):
        for _ in range(10):
            area = size * size * rng.uniform(*scale)
            aspect = math.exp(rng.uniform(*(math.log(r) for r in ratio)))
            w = round(math.sqrt(area * aspect))
            h = round(math.sqrt(area / aspect))
            if 0 < w <= size and 0 < h <= size:
                total += w * h / size**2
                break
        else:
            total += 1.0
    return total / count


def sampled_boxes(layer, shape):
    transformation = layer.get_random_transformation(shape)
    return {k: to_numpy(v) for k, v in transformation.items()}


def test_output_shape_dtype_and_range():
    x = random_images((4, 20, 28, 3))
    y = RandomResizedCrop(12, 16, seed=0)(x)
    assert tuple(y.shape) == (4, 12, 16, 3)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    y = to_numpy(y)
    assert y.min() >= x.min() - 1e-3 and y.max() <= x.max() + 1e-3


def test_uint8_and_unbatched_input():
    x = random_images((20, 28, 3)).astype("uint8")
    y = RandomResizedCrop(12, 16, seed=0)(x)
    assert tuple(y.shape) == (12, 16, 3)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    layer = RandomResizedCrop(8, 8)
    assert layer.compute_output_shape((None, 20, 28, 3)) == (None, 8, 8, 3)


def test_box_statistics_match_torchvision():
    layer = RandomResizedCrop(32, 32, horizontal_flip_probability=0.3, seed=1)
    boxes = sampled_boxes(layer, (4000, 224, 224, 3))
    h, w = boxes["crop_height"], boxes["crop_width"]
    area = h * w / 224**2
    ratio = w / h
    assert area.min() >= 0.075 and area.max() <= 1.0
    assert area.min() < 0.1 and area.max() > 0.95
    assert ratio.min() >= 0.74 and ratio.max() <= 1.35
    assert np.all(h == np.round(h)) and np.all(w == np.round(w))
    expected = torchvision_mean_area(
        5000, 224, (0.08, 1.0), (3 / 4, 4 / 3), np.random.default_rng(0)
    )
    assert abs(area.mean() - expected) < 0.02
    # Log aspect ratio is uniform: its mean is near 0, its spread wide.
    assert abs(np.log(ratio).mean()) < 0.02
    assert np.log(ratio).std() > 0.12
    # Boxes lie inside the image, their offsets uniform over the free room.
    assert boxes["top"].min() >= 0 and boxes["left"].min() >= 0
    assert np.all(boxes["top"] + h <= 224)
    assert np.all(boxes["left"] + w <= 224)
    room = 224 - h
    relative = boxes["top"][room > 20] / room[room > 20]
    assert abs(relative.mean() - 0.5) < 0.03
    assert relative.min() < 0.05 and relative.max() > 0.95
    assert abs(boxes["flip"].mean() - 0.3) < 0.04


def test_scale_range_is_respected():
    layer = RandomResizedCrop(8, 8, scale=(0.5, 0.6), seed=2)
    boxes = sampled_boxes(layer, (4000, 100, 100, 3))
    area = boxes["crop_height"] * boxes["crop_width"] / 100**2
    assert area.min() > 0.47 and area.max() < 0.63


def test_fallback_is_torchvision_centre_crop():
    # No box of the whole area with aspect ratio 2..3 fits a square image.
    layer = RandomResizedCrop(8, 8, scale=(1.0, 1.0), aspect_ratio=(2, 3))
    boxes = sampled_boxes(layer, (4, 32, 32, 3))
    np.testing.assert_array_equal(boxes["crop_width"], 32)
    np.testing.assert_array_equal(boxes["crop_height"], 16)
    np.testing.assert_array_equal(boxes["top"], 8)
    np.testing.assert_array_equal(boxes["left"], 0)
    # An image whose own ratio is allowed falls back to the whole image.
    layer = RandomResizedCrop(8, 8, scale=(1.0, 1.0), aspect_ratio=(0.5, 2.0))
    boxes = sampled_boxes(layer, (4, 30, 20, 3))
    assert np.all(boxes["crop_height"] * boxes["crop_width"] <= 600)


def test_crop_matches_numpy_reference():
    # Batches of 4 and one image shape across the file keep JAX's eager
    # op compilations few.
    layer = RandomResizedCrop(12, 16, horizontal_flip_probability=0.5, seed=3)
    flips = 0
    for batch in range(4):
        x = random_images((4, 20, 28, 3), seed=batch)
        boxes = layer.get_random_transformation((4, 20, 28, 3))
        tensor = keras.ops.convert_to_tensor(x)
        y = to_numpy(layer.transform_images(tensor, boxes))
        boxes = {k: to_numpy(v) for k, v in boxes.items()}
        flips += boxes["flip"].sum()
        np.testing.assert_allclose(
            y, reference_crop(x, boxes, 12, 16), rtol=1e-5, atol=1e-3
        )
    assert 0 < flips < 16


@pytest.mark.parametrize("size", [(12, 16), (30, 8)])
def test_full_box_is_a_bilinear_resize(size):
    x = random_images((4, 20, 28, 3))
    # The only box of the whole area with the image's aspect ratio.
    layer = RandomResizedCrop(*size, scale=(1.0, 1.0), aspect_ratio=(1.4, 1.4))
    boxes = sampled_boxes(layer, x.shape)
    np.testing.assert_array_equal(boxes["crop_height"], 20)
    np.testing.assert_array_equal(boxes["crop_width"], 28)
    expected = np.stack([reference_resize(image, *size) for image in x])
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-3)
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)), expected, atol=1e-3
    )
    resized = tf.image.resize(x, size, method="bilinear", antialias=False)
    np.testing.assert_allclose(expected, resized.numpy(), atol=1e-3)


def test_interpolation_rows_sum_to_one():
    layer = RandomResizedCrop(5, 5)
    start = keras.ops.convert_to_tensor([0.0, 3.0])
    length = keras.ops.convert_to_tensor([10.0, 2.0])
    matrix = bilinear_resize_matrix(layer.backend, start, length, 10, 5)
    matrix = to_numpy(matrix)
    assert matrix.shape == (2, 5, 10)
    np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-6)
    # The second box only reads its own two pixels.
    assert np.all(matrix[1][:, [0, 1, 2, 5, 6, 7, 8, 9]] == 0)


def test_flip_reverses_columns():
    layer = RandomResizedCrop(12, 16, horizontal_flip_probability=0.5, seed=4)
    x = keras.ops.convert_to_tensor(random_images((4, 20, 28, 3)))
    boxes = layer.get_random_transformation((4, 20, 28, 3))
    flipped = dict(boxes, flip=keras.ops.ones((4,), "bool"))
    kept = dict(boxes, flip=keras.ops.zeros((4,), "bool"))
    np.testing.assert_allclose(
        to_numpy(layer.transform_images(x, flipped)),
        to_numpy(layer.transform_images(x, kept))[:, :, ::-1],
        atol=1e-4,
    )


def test_coordinate_image_reveals_per_image_boxes():
    # Pixel values hold their own row and column, so the output shows the box.
    rows, columns = np.meshgrid(np.arange(20.0), np.arange(28.0), indexing="ij")
    image = np.stack([rows, columns, np.zeros_like(rows)], -1)
    x = np.repeat(image[None], 4, axis=0).astype("float32")
    layer = RandomResizedCrop(12, 16, horizontal_flip_probability=0.5, seed=5)
    y = np.concatenate([to_numpy(layer(x)) for _ in range(4)])
    # Rows depend on the output row only; columns on the output column only.
    np.testing.assert_allclose(
        y[..., 0], y[..., :1, 0].repeat(16, -1), atol=1e-3
    )
    assert np.all(np.diff(y[:, :, 0, 0], axis=1) >= -1e-4)
    column_steps = np.diff(y[:, 0, :, 1], axis=1)
    increasing = (column_steps >= -1e-4).all(1)
    assert np.all(increasing | (column_steps <= 1e-4).all(1))
    assert 0 < (column_steps.sum(1) < 0).sum() < 16
    spans = y[:, -1, 0, 0] - y[:, 0, 0, 0]
    assert len(np.unique(np.round(spans, 3))) > 4
    assert y[..., :2].min() >= 0
    assert y[..., 0].max() <= 19 and y[..., 1].max() <= 27


def test_calls_differ_and_seeds_reproduce():
    x = random_images((4, 20, 28, 3))
    a = RandomResizedCrop(12, 16, seed=6)
    first = to_numpy(a(x))
    assert not np.allclose(first, to_numpy(a(x)))
    np.testing.assert_array_equal(
        first, to_numpy(RandomResizedCrop(12, 16, seed=6)(x))
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"height": 0}, "height"),
        ({"width": 2.5}, "width"),
        ({"scale": (0.5, 0.2)}, "scale"),
        ({"scale": (0.0, 1.0)}, "scale"),
        ({"scale": (0.5, 1.5)}, "scale"),
        ({"aspect_ratio": (-1.0, 2.0)}, "aspect_ratio"),
        ({"horizontal_flip_probability": 1.5}, "horizontal_flip_probability"),
        ({"value_range": (1, 0)}, "value_range"),
        ({"sampler": "inception"}, "sampler"),
        ({"sampler": None}, "sampler"),
        ({"interpolation": "nearest"}, "interpolation"),
        ({"interpolation": "BICUBIC"}, "interpolation"),
    ],
)
def test_bad_arguments(kwargs, name):
    arguments = dict({"height": 8, "width": 8}, **kwargs)
    with pytest.raises(ValueError, match=f"{name}="):
        RandomResizedCrop(**arguments)


def test_get_config_round_trip():
    layer = RandomResizedCrop(
        12,
        10,
        scale=(0.2, 0.9),
        aspect_ratio=(0.5, 2.0),
        horizontal_flip_probability=0.5,
        value_range=(0, 1),
        seed=11,
    )
    revived = run_serialization_test(layer)
    assert revived.seed == 11
    assert revived.get_config()["scale"] == (0.2, 0.9)


@pytest.mark.parametrize("options", [{}, NEW_OPTIONS])
def test_runs_in_tf_data_with_dynamic_sizes(options):
    layer = RandomResizedCrop(
        12, 12, horizontal_flip_probability=0.5, **options
    )
    sizes = [(20, 24), (30, 18), (16, 16)]

    def generate():
        for h, w in sizes:
            yield random_images((h, w, 3))

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((None, None, 3), tf.float32)
    )
    outputs = list(dataset.map(layer).batch(3))
    assert outputs[0].shape == (3, 12, 12, 3)
    batched = tf.data.Dataset.from_tensor_slices(random_images((4, 20, 20, 3)))
    batched = batched.batch(2).map(layer)
    assert [b.shape for b in batched] == [(2, 12, 12, 3)] * 2


@pytest.mark.parametrize("options", [{}, NEW_OPTIONS])
def test_runs_in_a_compiled_training_step(options):
    inputs = keras.Input((16, 16, 3))
    crop = RandomResizedCrop(
        8, 8, horizontal_flip_probability=0.5, **options
    )
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
    assert model.predict(x, verbose=0).shape == (4, 1)


def keys_cubic(x, a=-0.5):
    x = abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def reference_bicubic_matrix(start, length, input_size, output_size):
    """TensorFlow's `ResizeBicubic` (half-pixel centres, Keys kernel read
    from a 1024-step table, taps outside the segment dropped and the rest
    renormalised) for the segment `[start, start + length)`, as a matrix."""
    matrix = np.zeros((output_size, input_size))
    scale = np.float32(length) / np.float32(output_size)
    for j in range(output_size):
        position = (j + 0.5) * scale - 0.5
        base = int(np.floor(position))
        step = int(np.rint((position - base) * 1024)) / 1024
        taps = {}
        for k in (-1, 0, 1, 2):
            if 0 <= base + k < length:
                taps[start + base + k] = keys_cubic(step - k)
        total = sum(taps.values())
        for pixel, weight in taps.items():
            matrix[j, pixel] = weight / total
    return matrix


def tf_crop_resize(images, transformation, height, width, method):
    """Crop each image, then `tf.image.resize`, then flip (TensorFlow)."""
    outputs = []
    for i, image in enumerate(images):
        top, left = (int(transformation[k][i]) for k in ("top", "left"))
        h = int(transformation["crop_height"][i])
        w = int(transformation["crop_width"][i])
        box = image[top : top + h, left : left + w]
        out = tf.image.resize(box, (height, width), method=method).numpy()
        if transformation["flip"][i]:
            out = out[:, ::-1]
        outputs.append(out)
    return np.stack(outputs)


# Boxes of one axis, in batches of 4 with the shapes of the other tests
# (20 x 28 images, 12 x 16 outputs), so JAX compiles few ops: a whole axis,
# boxes smaller and larger than the output (up and down sampling), and
# boxes of 2 and 1 pixels where most taps fall outside.
AXIS_BOXES = [
    (20, 12, [0.0, 3.0, 5.0, 4.0], [20.0, 9.0, 2.0, 1.0]),
    (28, 16, [0.0, 6.0, 20.0, 27.0], [28.0, 13.0, 3.0, 1.0]),
]


@pytest.mark.parametrize(
    "input_size, output_size, starts, lengths", AXIS_BOXES
)
def test_bicubic_matrix_matches_reference(
    input_size, output_size, starts, lengths
):
    layer = RandomResizedCrop(5, 5)
    matrix = compiled(
        lambda start, length: bicubic_resize_matrix(
            layer.backend, start, length, input_size, output_size
        )
    )(
        keras.ops.convert_to_tensor(starts),
        keras.ops.convert_to_tensor(lengths),
    )
    matrix = to_numpy(matrix)
    for i, (start, length) in enumerate(zip(starts, lengths)):
        expected = reference_bicubic_matrix(
            int(start), int(length), input_size, output_size
        )
        np.testing.assert_allclose(matrix[i], expected, atol=1e-6)
        np.testing.assert_allclose(expected.sum(-1), 1.0, atol=1e-12)
    # The kernel's negative lobes are there.
    assert matrix.min() < -0.05


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_whole_image_resize_equals_tf_image_resize(interpolation):
    x = random_images((4, 20, 28, 3)) / 255.0
    layer = RandomResizedCrop(
        12, 16, interpolation=interpolation, value_range=(0, 1)
    )
    actual = to_numpy(compiled(lambda x: layer(x, training=False))(x))
    expected = tf.image.resize(x, (12, 16), method=interpolation).numpy()
    # Measured on [0, 1] images: 2.4e-7 (bilinear), 4.8e-7 (bicubic).
    np.testing.assert_allclose(actual, np.clip(expected, 0, 1), atol=2e-6)
    zero = keras.ops.zeros((1,))
    matrix = resize_matrix(layer.backend, zero, zero + 20, 20, 12, "bicubic")
    reference = reference_bicubic_matrix(0, 20, 20, 12)
    np.testing.assert_allclose(to_numpy(matrix)[0], reference, atol=1e-6)
    with pytest.raises(ValueError, match="interpolation='area'"):
        resize_matrix(layer.backend, zero, zero + 20, 20, 12, "area")


def test_bicubic_crop_equals_crop_then_tf_image_resize():
    layer = RandomResizedCrop(
        12,
        16,
        horizontal_flip_probability=0.5,
        sampler="simclr",
        interpolation="bicubic",
        value_range=(0, 1),
        seed=3,
    )
    transform = compiled(layer.transform_images)
    flips = 0
    for batch in range(2):
        x = random_images((4, 20, 28, 3), seed=batch) / 255.0
        boxes = layer.get_random_transformation((4, 20, 28, 3))
        tensor = keras.ops.convert_to_tensor(x)
        y = to_numpy(transform(tensor, boxes))
        boxes = {k: to_numpy(v) for k, v in boxes.items()}
        flips += boxes["flip"].sum()
        expected = tf_crop_resize(x, boxes, 12, 16, "bicubic")
        np.testing.assert_allclose(y, np.clip(expected, 0, 1), atol=2e-6)
    assert 0 < flips < 8


def test_bicubic_output_is_clipped_to_value_range():
    # Sharp edges of 5 x 7 squares make the bicubic kernel overshoot on
    # both sides.
    rows, columns = np.indices((20, 28))
    board = (rows // 5 + columns // 7) % 2 * 255.0
    x = np.repeat(board[None, :, :, None], 4, axis=0)
    x = np.repeat(x, 3, axis=-1).astype("float32")
    resized = tf.image.resize(x, (12, 16), method="bicubic").numpy()
    assert resized.min() < -30 and resized.max() > 285
    # The only box of the whole area with the image's aspect ratio.
    layer = RandomResizedCrop(
        12,
        16,
        scale=(1.0, 1.0),
        aspect_ratio=(1.4, 1.4),
        interpolation="bicubic",
    )
    for training in (True, False):
        np.testing.assert_allclose(
            to_numpy(layer(x, training=training)),
            np.clip(resized, 0, 255),
            atol=1e-3,
        )


def test_bicubic_checks_the_value_range():
    x = random_images((4, 20, 28, 3))
    layer = RandomResizedCrop(
        8, 8, interpolation="bicubic", value_range=(0, 1)
    )
    with pytest.raises(ValueError, match="value_range"):
        layer(x)
    # Bilinear resizing does not depend on the range.
    RandomResizedCrop(8, 8, value_range=(0, 1))(x)


def test_get_config_round_trip_of_sampler_and_interpolation():
    layer = RandomResizedCrop(
        12, 10, sampler="simclr", interpolation="bicubic", seed=5
    )
    revived = run_serialization_test(layer)
    assert revived.sampler == "simclr"
    assert revived.interpolation == "bicubic"
    revived = run_serialization_test(RandomResizedCrop(12, 10, sampler="byol"))
    assert revived.sampler == "byol"
    defaults = RandomResizedCrop(12, 10).get_config()
    assert defaults["sampler"] == "torchvision"
    assert defaults["interpolation"] == "bilinear"
