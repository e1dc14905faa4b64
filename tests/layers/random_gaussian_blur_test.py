import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers import RandomGaussianBlur
from keras_simclr.layers.random_gaussian_blur import gaussian_blur_matrix
from tests.testing import run_serialization_test


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def reference_blur(image, sigma, radius, padding):
    """Separable Gaussian blur of one `(h, w, c)` image with `numpy.pad`."""
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    mode = {"reflect": "reflect", "edge": "edge", "zeros": "constant"}[padding]
    pad = ((radius, radius), (radius, radius), (0, 0))
    padded = np.pad(image.astype("float64"), pad, mode=mode)
    h, w = image.shape[:2]
    rows = sum(k * padded[i : i + h] for i, k in enumerate(kernel))
    return sum(k * rows[:, i : i + w] for i, k in enumerate(kernel))


def matrices(sigma, size, radius, padding):
    layer = RandomGaussianBlur()
    sigma = keras.ops.convert_to_tensor(np.array(sigma, "float32"))
    matrix = gaussian_blur_matrix(layer.backend, sigma, size, radius, padding)
    return to_numpy(matrix)


def test_kernel_rows_sum_to_one():
    for padding in ("reflect", "edge"):
        m = matrices([0.5, 2.0], 12, 3, padding)
        assert m.shape == (2, 12, 12)
        np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-6)
        assert m.min() >= 0
    m = matrices([2.0], 12, 3, "zeros")
    np.testing.assert_allclose(m[0, 3:-3].sum(-1), 1.0, atol=1e-6)
    assert np.all(m[0, [0, -1]].sum(-1) < 0.9)
    # A sharper kernel puts more weight on the centre tap.
    sharp, wide = matrices([0.3, 3.0], 12, 3, "reflect")
    assert sharp[5, 5] > 0.9 and wide[5, 5] < 0.2


@pytest.mark.parametrize("padding", ["reflect", "edge", "zeros"])
def test_blur_matches_numpy_reference(padding):
    # Batches of 4 and one image shape across the file keep JAX's eager
    # op compilations few.
    layer = RandomGaussianBlur(probability=1.0, kernel_size=5, padding=padding)
    x = random_images((4, 24, 20, 3))
    transformation = layer.get_random_transformation(4)
    tensor = keras.ops.convert_to_tensor(x)
    y = to_numpy(layer.transform_images(tensor, transformation))
    sigmas = to_numpy(transformation["sigma"])
    assert len(np.unique(sigmas)) == 4
    for i in range(4):
        np.testing.assert_allclose(
            y[i],
            reference_blur(x[i], sigmas[i], 2, padding),
            rtol=1e-5,
            atol=1e-3,
        )


def test_zeros_padding_matches_official_depthwise_conv():
    sigma, radius = 1.3, 2
    x = random_images((4, 24, 20, 3))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).astype("float32")
    horizontal = np.tile(kernel.reshape(1, -1, 1, 1), [1, 1, 3, 1])
    vertical = np.tile(kernel.reshape(-1, 1, 1, 1), [1, 1, 3, 1])
    expected = tf.nn.depthwise_conv2d(x, horizontal, [1, 1, 1, 1], "SAME")
    expected = tf.nn.depthwise_conv2d(expected, vertical, [1, 1, 1, 1], "SAME")
    layer = RandomGaussianBlur(probability=1.0, kernel_size=5, padding="zeros")
    transformation = {
        "blur": keras.ops.ones((4,), "bool"),
        "sigma": keras.ops.convert_to_tensor(np.full((4,), sigma, "float32")),
    }
    y = layer.transform_images(keras.ops.convert_to_tensor(x), transformation)
    np.testing.assert_allclose(to_numpy(y), expected.numpy(), atol=1e-3)


def test_constant_image_is_preserved():
    x = np.full((4, 16, 16, 3), 77.0, "float32")
    y = to_numpy(RandomGaussianBlur(probability=1.0, kernel_size=5)(x))
    np.testing.assert_allclose(y, x, atol=1e-3)


def test_default_kernel_size_is_a_tenth_of_the_height():
    layer = RandomGaussianBlur()
    assert layer.kernel_radius(224) == 11  # 23 taps, as the official code
    assert layer.kernel_radius(32) == 1
    assert layer.kernel_radius(16) == 0
    assert RandomGaussianBlur(kernel_size=4).kernel_radius(224) == 2
    # Too small for a kernel: unchanged.
    x = random_images((4, 16, 16, 3))
    np.testing.assert_array_equal(
        to_numpy(RandomGaussianBlur(probability=1.0)(x)), x
    )


def test_probability_and_sigma_draws():
    layer = RandomGaussianBlur(probability=0.3, sigma=(0.5, 1.5), seed=1)
    transformation = layer.get_random_transformation(4000)
    blur = to_numpy(transformation["blur"])
    sigma = to_numpy(transformation["sigma"])
    assert abs(blur.mean() - 0.3) < 0.03
    assert sigma.min() >= 0.5 and sigma.max() <= 1.5
    assert abs(sigma.mean() - 1.0) < 0.03

    layer = RandomGaussianBlur(
        probability=0.5, sigma=(1, 2), kernel_size=5, seed=2
    )
    x = random_images((4, 16, 16, 3))
    y = np.concatenate([to_numpy(layer(x)) for _ in range(16)])
    x = np.concatenate([x] * 16)
    changed = np.abs(y - x).max(axis=(1, 2, 3)) > 1e-3
    assert 16 < changed.sum() < 48
    np.testing.assert_array_equal(y[~changed], x[~changed])


def test_probability_zero_is_identity_and_one_blurs_everything():
    x = random_images((4, 16, 16, 3))
    np.testing.assert_array_equal(
        to_numpy(RandomGaussianBlur(probability=0.0)(x)), x
    )
    layer = RandomGaussianBlur(probability=1.0, sigma=(1.0, 2.0), kernel_size=5)
    y = to_numpy(layer(x))
    assert np.all(np.abs(y - x).max(axis=(1, 2, 3)) > 1.0)
    # Blurring smooths: neighbouring pixels get closer.
    assert np.abs(np.diff(y, axis=1)).mean() < np.abs(np.diff(x, axis=1)).mean()


def test_range_dtype_unbatched_and_training_false():
    x = random_images((4, 16, 16, 3)).astype("uint8")
    layer = RandomGaussianBlur(probability=1.0, kernel_size=5, seed=3)
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    assert tuple(y.shape) == (4, 16, 16, 3)
    y = to_numpy(y)
    assert y.min() >= 0 and y.max() <= 255
    assert tuple(layer(x[0]).shape) == (16, 16, 3)
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)


def test_per_image_randomness_calls_differ_and_seeds_reproduce():
    x = np.repeat(random_images((1, 16, 16, 3)), 4, axis=0)
    layer = RandomGaussianBlur(probability=1.0, kernel_size=5, seed=4)
    first = to_numpy(layer(x))
    assert len({first[i].round(1).tobytes() for i in range(4)}) == 4
    assert not np.allclose(first, to_numpy(layer(x)))
    again = RandomGaussianBlur(probability=1.0, kernel_size=5, seed=4)(x)
    np.testing.assert_array_equal(first, to_numpy(again))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"probability": 1.5}, "probability"),
        ({"sigma": (0.0, 1.0)}, "sigma"),
        ({"sigma": (2.0, 1.0)}, "sigma"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": 3.5}, "kernel_size"),
        ({"padding": "same"}, "padding"),
        ({"value_range": None}, "value_range"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}="):
        RandomGaussianBlur(**kwargs)


def test_get_config_round_trip():
    layer = RandomGaussianBlur(
        probability=0.4,
        sigma=(0.2, 1.0),
        kernel_size=5,
        padding="zeros",
        value_range=(0, 1),
        seed=8,
    )
    revived = run_serialization_test(layer)
    assert revived.seed == 8 and revived.kernel_size == 5


def test_runs_in_tf_data():
    x = random_images((6, 20, 20, 3))
    layer = RandomGaussianBlur(probability=0.5)
    batched = tf.data.Dataset.from_tensor_slices(x).batch(3).map(layer)
    assert [b.shape for b in batched] == [(3, 20, 20, 3)] * 2
    single = tf.data.Dataset.from_tensor_slices(x).map(layer)
    assert next(iter(single)).shape == (20, 20, 3)


def test_runs_in_tf_data_with_dynamic_sizes():
    # The default kernel size then comes from a height known at run time.
    sizes = [(40, 24), (20, 36)]
    x = [random_images(size + (3,), seed=i) for i, size in enumerate(sizes)]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(x),
        output_signature=tf.TensorSpec((None, None, 3), tf.float32),
    )
    layer = RandomGaussianBlur(probability=1.0, padding="edge", seed=5)
    outputs = [image.numpy() for image in dataset.map(layer)]
    assert [o.shape for o in outputs] == [(40, 24, 3), (20, 36, 3)]
    # Radius 2 for the 40-pixel image, 1 for the 20-pixel one.
    for image, output, radius in zip(x, outputs, (2, 1)):
        errors = [
            np.abs(reference_blur(image, sigma, radius, "edge") - output).max()
            for sigma in np.linspace(0.1, 2.0, 400)
        ]
        assert min(errors) < 0.5


def test_runs_in_a_compiled_training_step():
    inputs = keras.Input((20, 20, 3))
    blurred = RandomGaussianBlur(value_range=(0, 1))(inputs)
    features = keras.layers.GlobalAveragePooling2D()(blurred)
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    model.compile(
        optimizer="sgd",
        loss="mse",
        jit_compile=keras.backend.backend() != "torch",
    )
    x = random_images((4, 20, 20, 3)) / 255.0
    history = model.fit(x, np.zeros((4, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
