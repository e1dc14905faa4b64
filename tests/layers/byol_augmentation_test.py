"""The `"byol"` preset of SimCLRAugmentation: BYOL's two different views."""

import math

import keras
import numpy as np
import pytest

from keras_simclr.layers.random_color_distortion import RandomColorDistortion
from keras_simclr.layers.random_gaussian_blur import RandomGaussianBlur
from keras_simclr.layers.random_resized_crop import RandomResizedCrop
from keras_simclr.layers.random_solarization import RandomSolarization
from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
from keras_simclr.layers.simclr_augmentation import preset_settings

TRIALS = 4000


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def binomial_bound(probability, trials=TRIALS, sigmas=4.0):
    """4 binomial standard deviations of a frequency: 0.0190 for p = 0.1
    and 0.0253 for p = 0.2 over 4,000 images."""
    return sigmas * math.sqrt(probability * (1 - probability) / trials)


def test_settings_of_the_two_views():
    for view in (1, 2):
        layer = SimCLRAugmentation(224, preset="byol", view=view)
        # BYOL's own sampler (`_decode_and_random_crop`), not SimCLR's.
        assert layer.crop.sampler == "byol"
        assert layer.crop.interpolation == "bicubic"
        assert layer.crop.horizontal_flip_probability == 0.5
        assert layer.crop.scale == (0.08, 1.0)
        colour = layer.color_distortion
        # BYOL's official jitter: brightness a delta in [-0.4, 0.4],
        # contrast and saturation factors in [0.6, 1.4] and [0.8, 1.2], hue
        # a rotation in [-0.1, 0.1].
        assert colour.impl == "v1"
        assert colour.jitter_ranges() == (0.4, 0.4, 0.2, 0.1)
        assert colour.jitter_probability == 0.8
        assert colour.grayscale_probability == 0.2
        assert layer.blur.sigma == (0.1, 2.0)
        assert layer.blur.kernel_radius(224) == 11  # 23 taps, 10% of 224
        assert layer.center_crop.crop_proportion == 0.875
    view_1 = SimCLRAugmentation(224, preset="byol", view=1)
    view_2 = SimCLRAugmentation(224, preset="byol", view=2)
    assert view_1.blur.probability == 1.0 and view_1.solarization is None
    assert view_2.blur.probability == 0.1
    assert view_2.solarization.probability == 0.2
    assert view_2.solarization.solarization_threshold() == 0.5
    assert preset_settings("byol", 2)["solarization_probability"] == 0.2
    # A strength scales BYOL's ranges.
    half = SimCLRAugmentation(224, preset="byol", color_jitter_strength=0.5)
    assert half.color_distortion.jitter_ranges() == (0.2, 0.2, 0.1, 0.05)
    # Overrides apply to either view.
    custom = SimCLRAugmentation(
        224, preset="byol", view=2, blur_probability=0.0, impl="v2"
    )
    assert custom.blur is None and custom.color_distortion.impl == "v2"


def bright_gray_images(trials, size=8):
    """Constant gray images at 95% of the range: a crop keeps them
    constant, the jitter moves them by at most 0.4 of the range (brightness;
    contrast, saturation and hue leave a constant gray image alone), and a
    reflect-padded blur keeps them constant. So an unsolarized view stays at
    or above 55% of the range (above the threshold), and a solarized one,
    inverted, at or below 45%."""
    return np.full((trials, size, size, 3), 0.95 * 255, "float32")


@pytest.mark.parametrize("view, probability", [(1, 0.0), (2, 0.2)])
def test_solarization_frequency_per_view(view, probability):
    layer = SimCLRAugmentation(8, preset="byol", view=view, seed=17)
    views = to_numpy(layer(bright_gray_images(TRIALS)))
    means = views.mean(axis=(1, 2, 3)) / 255
    spread = (views.max(axis=(1, 2, 3)) - views.min(axis=(1, 2, 3))) / 255
    assert spread.max() < 1e-3
    solarized = means <= 0.45 + 1e-4
    assert np.all(solarized | (means >= 0.55 - 1e-4))
    frequency = solarized.mean()
    if probability == 0.0:
        assert frequency == 0.0
    else:
        assert abs(frequency - probability) < binomial_bound(probability)


def spy_on_blur(layer):
    """Records the per-image blur choices the blur sublayer applies."""
    recorded = []
    transform = layer.blur.transform_images

    def recording(images, transformation):
        recorded.append(to_numpy(transformation["blur"]))
        return transform(images, transformation)

    layer.blur.transform_images = recording
    return recorded


@pytest.mark.parametrize("view, probability", [(1, 1.0), (2, 0.1)])
def test_blur_frequency_per_view(view, probability):
    # A blur of sigma near 0.1 changes no pixel measurably (its outer taps
    # weigh exp(-50)), so blurred views cannot all be told from the output;
    # the choices the blur sublayer applies are recorded instead, and
    # `test_view_equals_its_sublayers_in_sequence` shows that its output is
    # that of those choices.
    layer = SimCLRAugmentation(8, preset="byol", view=view, seed=23)
    recorded = spy_on_blur(layer)
    images = np.random.default_rng(0).uniform(0, 255, (TRIALS, 8, 8, 3))
    layer(images.astype("float32"))
    (blurred,) = recorded
    assert blurred.shape == (TRIALS,)
    if probability == 1.0:
        assert blurred.all()
    else:
        assert abs(blurred.mean() - probability) < binomial_bound(probability)


def test_view_equals_its_sublayers_in_sequence():
    """View 2 is crop, colour, blur and solarization, with BYOL's settings,
    one after the other (the order of BYOL's code)."""
    # The same batch shape as the other tests (JAX compiles each op once
    # per shape); a seed whose draws blur and solarize some of the 8 images
    # on every backend.
    batch, seed = 8, 55
    images = np.random.default_rng(1).uniform(0, 255, (batch, 12, 12, 3))
    images = images.astype("float32")
    layer = SimCLRAugmentation(8, preset="byol", view=2, seed=seed)
    crop = RandomResizedCrop(
        8,
        8,
        horizontal_flip_probability=0.5,
        sampler="byol",
        interpolation="bicubic",
        seed=seed,
    )
    colour = RandomColorDistortion(
        brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, impl="v1",
        seed=seed + 1,
    )
    blur = RandomGaussianBlur(probability=0.1, seed=seed + 2)
    solarization = RandomSolarization(probability=0.2, seed=seed + 3)
    # The draws of this seed blur and solarize some images, not all.
    blurred = to_numpy(
        RandomGaussianBlur(probability=0.1, seed=seed + 2)
        .get_random_transformation(batch)["blur"]
    )
    solarized = to_numpy(
        RandomSolarization(probability=0.2, seed=seed + 3)
        .get_random_transformation(batch)["solarize"]
    )
    assert 0 < blurred.sum() < batch and 0 < solarized.sum() < batch
    before_solarization = to_numpy(blur(colour(crop(images))))
    expected = to_numpy(solarization(before_solarization))
    np.testing.assert_allclose(to_numpy(layer(images)), expected, atol=2e-3)
    # The solarization step shows: leaving it out would fail the test.
    assert np.abs(expected - before_solarization).max() > 50


def test_views_differ_from_each_other():
    images = np.random.default_rng(2).uniform(0, 255, (8, 12, 12, 3))
    images = images.astype("float32")
    view_1 = SimCLRAugmentation(8, preset="byol", view=1, seed=0)(images)
    view_2 = SimCLRAugmentation(8, preset="byol", view=2, seed=4)(images)
    assert np.abs(to_numpy(view_1) - to_numpy(view_2)).mean() > 5


def test_preset_crops_have_byol_area_distribution():
    """The preset's boxes against BYOL's `_decode_and_random_crop`: area
    fraction uniform in [0.08, 1] and log-uniform aspect ratio in
    [3/4, 4/3], clamped to the image. On a square image a box is clamped
    when `s * r > 1` or `s / r > 1`, which gives the closed form of its
    mean area fraction, E[min(sqrt(s r), 1) * min(sqrt(s / r), 1)]
    (0.534 at any large square size; 0.421 with SimCLR's sampler)."""
    rng = np.random.default_rng(0)
    s = rng.uniform(0.08, 1.0, 2_000_000)
    r = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), s.shape))
    expected = np.mean(np.minimum(np.sqrt(s * r), 1) * np.minimum(np.sqrt(s / r), 1))
    for view in (1, 2):
        layer = SimCLRAugmentation(224, preset="byol", view=view, seed=view)
        boxes = layer.crop.get_random_transformation((TRIALS, 224, 224, 3))
        area = to_numpy(boxes["crop_height"]) * to_numpy(boxes["crop_width"])
        area = area / 224**2
        # Standard error of 4,000 areas: 0.0043; SimCLR's sampler is 0.11
        # below.
        assert abs(area.mean() - expected) < 0.02, area.mean()


def test_saved_byol_config_loads_with_byol_sampler():
    """A `"byol"` layer saved before the preset had its own sampler stored
    `crop_sampler=None`: it loads, and crops with BYOL's sampler, as the
    preset now means; SimCLR's is kept by naming it."""
    saved = {
        "name": "view_b",
        "trainable": True,
        "dtype": "float32",
        "value_range": [0.0, 255.0],
        "seed": 4,
        "image_size": 224,
        "preset": "byol",
        "color_jitter_strength": None,
        "blur_probability": None,
        "crop_scale": [0.08, 1.0],
        "impl": None,
        "solarization_probability": None,
        "view": 2,
        "crop_sampler": None,
        "crop_interpolation": None,
        "eval_crop_proportion": None,
    }
    layer = SimCLRAugmentation.from_config(saved)
    assert layer.crop.sampler == "byol"
    assert layer.get_config()["crop_sampler"] is None
    assert layer.solarization.probability == 0.2
    kept = SimCLRAugmentation.from_config(dict(saved, crop_sampler="simclr"))
    assert kept.crop.sampler == "simclr"
    assert kept.get_config()["crop_sampler"] == "simclr"
    pair = SimCLRAugmentation.pair(16, preset="byol", seed=0)
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(pair)
    )
    assert revived.view_a.crop.sampler == revived.view_b.crop.sampler == "byol"
