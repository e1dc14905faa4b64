import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers import RandomColorDistortion
from keras_simclr.layers import RandomGaussianBlur
from keras_simclr.layers import RandomResizedCrop
from keras_simclr.layers import SimCLRAugmentation
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def uint8_images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape).astype("uint8")


def test_output_shape_range_and_dtype():
    x = uint8_images((4, 24, 24, 3))
    y = SimCLRAugmentation(16, seed=0)(x)
    assert tuple(y.shape) == (4, 16, 16, 3)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    y = to_numpy(y)
    assert y.min() >= 0 and y.max() <= 255 and y.std() > 1
    y = SimCLRAugmentation((12, 20), preset="cifar")(x[0])
    assert tuple(y.shape) == (12, 20, 3)
    assert SimCLRAugmentation((12, 20)).compute_output_shape(
        (None, 40, 40, 3)
    ) == (None, 12, 20, 3)
    y = to_numpy(SimCLRAugmentation(16, value_range=(0, 1))(x / 255.0))
    assert y.min() >= 0 and y.max() <= 1


def test_mixed_precision_policy():
    x = uint8_images((4, 24, 24, 3))
    y = SimCLRAugmentation(16, dtype="mixed_bfloat16", seed=0)(x)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    y = to_numpy(keras.ops.cast(y, "float32"))
    assert y.min() >= 0 and y.max() <= 256


def test_presets_and_overrides():
    cifar = SimCLRAugmentation(32, preset="cifar")
    assert cifar.color_distortion.strength == 0.5
    assert cifar.blur is None
    assert cifar.crop.horizontal_flip_probability == 0.5
    assert cifar.crop.scale == (0.08, 1.0)
    imagenet = SimCLRAugmentation(224)
    assert imagenet.color_distortion.strength == 1.0
    assert imagenet.blur.probability == 0.5
    assert imagenet.blur.sigma == (0.1, 2.0)
    custom = SimCLRAugmentation(
        32,
        preset="cifar",
        color_jitter_strength=0.25,
        blur_probability=0.3,
        crop_scale=(0.2, 1.0),
        impl="v1",
    )
    assert custom.color_distortion.strength == 0.25
    assert custom.color_distortion.impl == "v1"
    assert custom.blur.probability == 0.3
    assert custom.crop.scale == (0.2, 1.0)
    assert SimCLRAugmentation(32, blur_probability=0.0).blur is None


def test_sublayers_get_derived_seeds():
    layer = SimCLRAugmentation(32, seed=10)
    assert layer.crop.seed == 10
    assert layer.color_distortion.seed == 11
    assert layer.blur.seed == 12
    layer = SimCLRAugmentation(32)
    assert layer.crop.seed is None and layer.color_distortion.seed is None


def test_equals_the_three_layers_in_sequence():
    x = uint8_images((4, 24, 24, 3))
    layer = SimCLRAugmentation(16, seed=3)
    crop = RandomResizedCrop(16, 16, horizontal_flip_probability=0.5, seed=3)
    distort = RandomColorDistortion(strength=1.0, seed=4)
    blur = RandomGaussianBlur(probability=0.5, seed=5)
    expected = to_numpy(blur(distort(crop(x))))
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=2e-3)


def test_training_false_resizes_whole_image():
    x = uint8_images((4, 24, 24, 3))
    layer = SimCLRAugmentation(16, seed=1)
    expected = RandomResizedCrop(16, 16)(x, training=False)
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)), to_numpy(expected), atol=1e-4
    )


def test_views_differ_per_image_and_per_call_and_seeds_reproduce():
    x = np.repeat(uint8_images((1, 24, 24, 3)), 4, axis=0)
    layer = SimCLRAugmentation(16, preset="cifar", seed=7)
    view_a, view_b = to_numpy(layer(x)), to_numpy(layer(x))
    assert not np.allclose(view_a, view_b)
    assert len({view_a[i].round(1).tobytes() for i in range(4)}) == 4
    again = to_numpy(SimCLRAugmentation(16, preset="cifar", seed=7)(x))
    np.testing.assert_array_equal(view_a, again)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": (32,)}, "image_size"),
        ({"image_size": (32, 2.5)}, "image_size"),
        ({"preset": "stl10"}, "preset"),
        ({"color_jitter_strength": -0.5}, "color_jitter_strength"),
        ({"blur_probability": 2.0}, "blur_probability"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"impl": "simclrv2"}, "impl"),
        ({"value_range": (255, 0)}, "value_range"),
        ({"seed": "seven"}, "seed"),
    ],
)
def test_bad_arguments(kwargs, name):
    arguments = dict({"image_size": 32}, **kwargs)
    with pytest.raises(ValueError, match=f"{name}="):
        SimCLRAugmentation(**arguments)


def test_get_config_round_trip():
    revived = run_serialization_test(SimCLRAugmentation(32, seed=4))
    assert revived.get_config()["color_jitter_strength"] is None
    layer = SimCLRAugmentation(
        (24, 32),
        preset="cifar",
        color_jitter_strength=0.7,
        blur_probability=0.1,
        crop_scale=(0.3, 0.9),
        impl="v1",
        value_range=(0, 1),
        seed=21,
    )
    revived = run_serialization_test(layer)
    assert revived.seed == 21 and revived.blur.seed == 23


def test_model_saving_round_trip(tmp_path):
    inputs = keras.Input((24, 24, 3))
    views = SimCLRAugmentation(16, preset="cifar", seed=1)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(views))
    model = keras.Model(inputs, outputs)
    x = uint8_images((4, 24, 24, 3)).astype("float32")
    restored = run_model_saving_test(model, x, tmp_path, atol=1e-3)
    assert isinstance(restored.layers[1], SimCLRAugmentation)


def test_two_views_in_tf_data():
    x = np.repeat(uint8_images((1, 24, 24, 3)), 8, axis=0)
    augment = SimCLRAugmentation(16, seed=2)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
    dataset = dataset.map(lambda images: (augment(images), augment(images)))
    first_epoch = [(a.numpy(), b.numpy()) for a, b in dataset]
    for view_a, view_b in first_epoch:
        assert view_a.shape == view_b.shape == (4, 16, 16, 3)
        assert view_a.dtype == np.float32
        assert not np.allclose(view_a, view_b)
        assert view_a.min() >= 0 and view_a.max() <= 255
    # The random state moves on between batches and between epochs.
    assert not np.allclose(first_epoch[0][0], first_epoch[1][0])
    second_epoch = next(iter(dataset))[0].numpy()
    assert not np.allclose(first_epoch[0][0], second_epoch)
    single = tf.data.Dataset.from_tensor_slices(x).map(augment)
    assert next(iter(single)).shape == (16, 16, 3)


def test_runs_in_a_compiled_training_step():
    inputs = keras.Input((24, 24, 3))
    views = SimCLRAugmentation(16, value_range=(0, 1))(inputs)
    features = keras.layers.GlobalAveragePooling2D()(views)
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    # XLA on JAX; TensorFlow's default on a CPU (graph mode), whose XLA path
    # the single-layer tests cover.
    model.compile(
        optimizer="sgd",
        loss="mse",
        jit_compile=keras.backend.backend() == "jax",
    )
    x = uint8_images((4, 24, 24, 3)) / 255.0
    history = model.fit(x, np.zeros((4, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(x, verbose=0).shape == (4, 1)
