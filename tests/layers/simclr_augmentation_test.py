import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers import RandomColorDistortion
from keras_simclr.layers import RandomGaussianBlur
from keras_simclr.layers import RandomResizedCrop
from keras_simclr.layers import ProjectionHead
from keras_simclr.layers import SimCLRAugmentation
from keras_simclr.layers.center_crop import CenterCrop
from keras_simclr.models import SimCLRPretrainer
from tests import center_crop_reference as reference
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
    assert cifar.crop.sampler == "torchvision"
    assert cifar.crop.interpolation == "bilinear"
    assert cifar.color_distortion.impl == "v2"
    assert cifar.color_distortion.jitter_ranges() == (0.4, 0.4, 0.4, 0.1)
    assert cifar.solarization is None
    assert cifar.center_crop.crop_proportion == 1.0
    assert cifar.center_crop.interpolation == "bilinear"
    imagenet = SimCLRAugmentation(224)
    assert imagenet.color_distortion.strength == 1.0
    assert imagenet.color_distortion.jitter_ranges() == (0.8, 0.8, 0.8, 0.2)
    assert imagenet.color_distortion.impl == "v2"
    assert imagenet.color_distortion.jitter_probability == 0.8
    assert imagenet.color_distortion.grayscale_probability == 0.2
    assert imagenet.blur.probability == 0.5
    assert imagenet.blur.sigma == (0.1, 2.0)
    assert imagenet.solarization is None
    assert imagenet.crop.sampler == "simclr"
    assert imagenet.crop.interpolation == "bicubic"
    assert imagenet.center_crop.crop_proportion == 0.875
    assert imagenet.center_crop.interpolation == "bicubic"
    # The second view of a SimCLR preset is the same distribution.
    second = SimCLRAugmentation(224, view=2)
    assert second.blur.probability == 0.5 and second.solarization is None
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
    custom = SimCLRAugmentation(
        32,
        solarization_probability=0.3,
        crop_sampler="torchvision",
        crop_interpolation="bilinear",
        eval_crop_proportion=0.5,
    )
    assert custom.solarization.probability == 0.3
    assert custom.solarization.solarization_threshold() == 0.5
    assert custom.crop.sampler == "torchvision"
    assert custom.crop.interpolation == "bilinear"
    assert custom.center_crop.crop_proportion == 0.5
    assert custom.center_crop.interpolation == "bilinear"


def test_sublayers_get_derived_seeds():
    layer = SimCLRAugmentation(32, seed=10, solarization_probability=0.1)
    assert layer.crop.seed == 10
    assert layer.color_distortion.seed == 11
    assert layer.blur.seed == 12
    assert layer.solarization.seed == 13
    layer = SimCLRAugmentation(32)
    assert layer.crop.seed is None and layer.color_distortion.seed is None


def test_equals_the_three_layers_in_sequence():
    x = uint8_images((4, 24, 24, 3))
    layer = SimCLRAugmentation(16, seed=3)
    crop = RandomResizedCrop(
        16,
        16,
        horizontal_flip_probability=0.5,
        sampler="simclr",
        interpolation="bicubic",
        seed=3,
    )
    distort = RandomColorDistortion(strength=1.0, seed=4)
    blur = RandomGaussianBlur(probability=0.5, seed=5)
    expected = to_numpy(blur(distort(crop(x))))
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=2e-3)
    x = uint8_images((4, 24, 24, 3), seed=1)
    layer = SimCLRAugmentation(16, preset="cifar", seed=3)
    crop = RandomResizedCrop(16, 16, horizontal_flip_probability=0.5, seed=3)
    distort = RandomColorDistortion(strength=0.5, seed=4)
    np.testing.assert_allclose(
        to_numpy(layer(x)), to_numpy(distort(crop(x))), atol=2e-3
    )


# === Evaluation transform (training=False) ===


def official_center_crop(images, size, proportion=0.875):
    """The official SimCLR `center_crop` of square views, clipped to the
    range (`tests/center_crop_reference.py`)."""
    return reference.official_center_crop(images, size, size, proportion)


@pytest.mark.parametrize("preset", ["imagenet", "byol"])
@pytest.mark.parametrize("shape", [(4, 24, 24, 3), (4, 24, 32, 3)])
def test_training_false_is_the_official_center_crop(preset, shape):
    x = uint8_images(shape)
    layer = SimCLRAugmentation(16, preset=preset, seed=1)
    y = to_numpy(layer(x, training=False))
    # 24 px: a 21 px box at offset 2 (and 6 across 32 px).
    expected = official_center_crop(x, 16)
    np.testing.assert_allclose(y, expected, atol=2e-3)
    # Not the whole image resized: the test can tell the two apart.
    whole = tf.image.resize(x.astype("float32"), (16, 16), "bicubic").numpy()
    assert np.abs(np.clip(whole, 0, 255) - expected).mean() > 5
    # The same in [0, 1].
    unit = SimCLRAugmentation(16, preset=preset, value_range=(0, 1))
    np.testing.assert_allclose(
        to_numpy(unit(x / 255.0, training=False)), expected / 255.0, atol=1e-5
    )


def test_training_false_resizes_whole_image_for_cifar():
    x = uint8_images((4, 24, 24, 3))
    layer = SimCLRAugmentation(16, preset="cifar", seed=1)
    expected = tf.image.resize(x.astype("float32"), (16, 16), "bilinear")
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)), expected.numpy(), atol=1e-3
    )
    # As the bilinear resize of RandomResizedCrop without training.
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)),
        to_numpy(RandomResizedCrop(16, 16)(x, training=False)),
        atol=1e-3,
    )


def test_eval_crop_proportion_overrides_the_preset():
    x = uint8_images((4, 24, 24, 3))
    layer = SimCLRAugmentation(16, preset="cifar", eval_crop_proportion=0.875)
    expected = to_numpy(
        CenterCrop(16, 16, crop_proportion=0.875, interpolation="bilinear")(x)
    )
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)), expected, atol=1e-3
    )
    layer = SimCLRAugmentation(16, eval_crop_proportion=1.0)
    whole = tf.image.resize(x.astype("float32"), (16, 16), "bicubic").numpy()
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)), np.clip(whole, 0, 255), atol=2e-3
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
        ({"solarization_probability": 1.5}, "solarization_probability"),
        ({"view": 3}, "view"),
        ({"view": "1"}, "view"),
        ({"crop_sampler": "inception"}, "crop_sampler"),
        ({"crop_interpolation": "nearest"}, "crop_interpolation"),
        ({"eval_crop_proportion": 0.0}, "eval_crop_proportion"),
        ({"eval_crop_proportion": 1.5}, "eval_crop_proportion"),
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
    layer = SimCLRAugmentation(
        16,
        preset="byol",
        view=2,
        solarization_probability=0.3,
        crop_sampler="torchvision",
        crop_interpolation="bilinear",
        eval_crop_proportion=0.9,
        seed=5,
    )
    revived = run_serialization_test(layer)
    assert revived.view == 2 and revived.solarization.probability == 0.3
    assert revived.solarization.seed == 8
    assert revived.center_crop.crop_proportion == 0.9
    assert revived.crop.sampler == "torchvision"
    config = SimCLRAugmentation(16).get_config()
    for key in ("impl", "crop_sampler", "crop_interpolation", "eval_crop_proportion"):
        assert config[key] is None


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


# === Grayscale images ===


def test_grayscale_views_are_the_rgb_views_of_the_gray_image():
    gray = uint8_images((4, 24, 24, 1))
    view = SimCLRAugmentation(16, seed=3)(gray)
    assert tuple(view.shape) == (4, 16, 16, 1)
    rgb_view = to_numpy(SimCLRAugmentation(16, seed=3)(np.repeat(gray, 3, -1)))
    # Saturation and hue leave a gray image gray ...
    np.testing.assert_allclose(rgb_view[..., 1], rgb_view[..., 0], atol=1e-3)
    np.testing.assert_allclose(rgb_view[..., 2], rgb_view[..., 0], atol=1e-3)
    # ... so the one-channel view is the same image (the luma weights sum to
    # 0.9999, hence the tolerance in 0-255 units).
    np.testing.assert_allclose(to_numpy(view)[..., 0], rgb_view[..., 0], atol=0.05)
    assert np.std(to_numpy(view)) > 1


def tiny_encoder(channels, size=16):
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x)


def test_pretrainer_trains_on_grayscale_images():
    pretrainer = SimCLRPretrainer(
        tiny_encoder(channels=1),
        augmentation=SimCLRAugmentation(16, preset="cifar", seed=0),
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
    )
    pretrainer.compile(optimizer="sgd")
    history = pretrainer.fit(
        uint8_images((8, 16, 16, 1)), batch_size=4, epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("channels", [2, 4])
def test_other_channel_counts_are_refused_when_built(channels):
    message = (
        r"SimCLRAugmentation expects channels-last RGB images \(3 channels\) "
        r"or grayscale images \(1 channel\).*"
        rf"Received: inputs.shape=\(None, 24, 24, {channels}\)"
    )
    with pytest.raises(ValueError, match=message):
        SimCLRAugmentation(16).compute_output_shape((None, 24, 24, channels))
    with pytest.raises(ValueError, match="grayscale images"):
        SimCLRAugmentation(16)(keras.Input((24, 24, channels)))
    with pytest.raises(ValueError, match="grayscale images"):
        SimCLRAugmentation(16)(uint8_images((2, 24, 24, channels)))
    # A pretrainer is refused when it is built, before any training step.
    pretrainer = SimCLRPretrainer(
        tiny_encoder(channels),
        augmentation=SimCLRAugmentation(16),
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
    )
    with pytest.raises(ValueError, match="grayscale images"):
        pretrainer.build((None, 16, 16, channels))


# === Value range ===


def unit_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype("float32")


@pytest.mark.parametrize("kind", ["numpy", "backend", "tensorflow"])
def test_images_in_0_1_with_the_default_range_are_refused(kind):
    x = unit_images((4, 24, 24, 3))
    tensors = {
        "numpy": x,
        "backend": keras.ops.convert_to_tensor(x),
        "tensorflow": tf.constant(x),
    }
    augment = SimCLRAugmentation(16, seed=0)
    message = (
        r"holds images in \[0, 1\] but `value_range` is \(0.0, 255.0\).*"
        r"Pass `value_range=\(0, 1\)`, or multiply the images by 255\. "
        rf"Received: value_range=\(0.0, 255.0\), inputs.min\(\)={x.min():.6g}, "
        rf"inputs.max\(\)={x.max():.6g}"
    )
    with pytest.raises(ValueError, match=message):
        augment(tensors[kind])
    with pytest.raises(ValueError, match="outside `value_range`"):
        augment(tensors[kind] * 300.0)
    view = to_numpy(SimCLRAugmentation(16, value_range=(0, 1))(tensors[kind]))
    assert view.min() >= 0 and view.max() <= 1
    view = to_numpy(augment(tensors[kind] * 255.0))
    assert view.min() >= 0 and view.max() <= 255
    # Resizing only: the range plays no part.
    augment(tensors[kind], training=False)


def test_tf_data_pipeline_fails_on_a_first_batch_out_of_range():
    x = unit_images((8, 24, 24, 3))
    augment = SimCLRAugmentation(16, preset="cifar", seed=2)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
    # TensorFlow raises errors of dataset functions as InvalidArgumentError.
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"(?s)holds images in \[0, 1\] but `value_range` is \(0.0, 255.0\)",
    ):
        next(iter(dataset.map(augment)))
    outside = dataset.map(lambda images: augment(images * 300.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside `value_range`"):
        next(iter(outside))
    in_range = dataset.map(
        SimCLRAugmentation(16, preset="cifar", value_range=(0, 1), seed=2)
    )
    assert [b.shape for b in in_range] == [(4, 16, 16, 3)] * 2
