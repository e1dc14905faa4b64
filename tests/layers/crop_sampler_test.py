"""The `sampler="simclr"` boxes of `RandomResizedCrop` against a NumPy
re-implementation of `tf.image.sample_distorted_bounding_box`, as the
official SimCLR code calls it (`data_util.crop_and_resize`)."""

import collections

import keras
import numpy as np
import pytest

from keras_simclr.layers.random_resized_crop import RandomResizedCrop

DRAWS = 10_000
# Two-sample Kolmogorov-Smirnov distance allowed between 10,000 draws of the
# layer and 10,000 of the reference: the 0.1% critical value is
# 1.95 * sqrt(2 / 10,000) = 0.028.
KS_THRESHOLD = 0.03


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def reference_boxes(
    count,
    image_height,
    image_width,
    aspect_ratio_range,
    area_range,
    rng,
    max_attempts=100,
    min_object_covered=0.1,
):
    """`(heights, widths)` of `count` boxes as TensorFlow's
    `GenerateRandomCrop` and its overlap check with the whole-image box draw
    them, one attempt at a time, in float32 like the C++ kernel."""
    f32 = np.float32
    image_area = f32(image_height) * f32(image_width)
    min_area = f32(area_range[0]) * image_area
    max_area = f32(area_range[1]) * image_area
    heights = np.full(count, float(image_height))
    widths = np.full(count, float(image_width))
    for n in range(count):
        for _ in range(max_attempts):
            ratio = f32(rng.uniform(*aspect_ratio_range))
            height = int(np.rint(np.sqrt(min_area / ratio)))
            max_height = int(np.rint(np.sqrt(max_area / ratio)))
            if np.rint(max_height * ratio) > image_width:
                max_height = int((image_width + 0.5 - 1e-7) / ratio)
                if np.rint(max_height * ratio) > image_width:
                    max_height -= 1
            max_height = min(max_height, image_height)
            height = min(height, max_height)
            if height < max_height:
                height += int(rng.integers(0, max_height - height + 1))
            width = int(np.rint(f32(height) * ratio))
            if width * height < min_area:
                height += 1
                width = int(np.rint(f32(height) * ratio))
            if width * height > max_area:
                height -= 1
                width = int(np.rint(f32(height) * ratio))
            area = width * height
            rejected = (
                area < min_area
                or area > max_area
                or width > image_width
                or height > image_height
                or width <= 0
                or height <= 0
                or area / (image_height * image_width) < min_object_covered
            )
            if not rejected:
                heights[n], widths[n] = height, width
                break
    return heights, widths


def ks_distance(a, b):
    """Largest gap between the empirical CDFs of two samples."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return np.abs(cdf_a - cdf_b).max()


def sampled_boxes(sampler, image_size, output_size=(224, 224), **kwargs):
    layer = RandomResizedCrop(*output_size, sampler=sampler, seed=1, **kwargs)
    shape = (DRAWS,) + tuple(image_size) + (1,)
    boxes = layer.get_random_transformation(shape)
    return {k: to_numpy(v) for k, v in boxes.items()}


@pytest.mark.parametrize("image_size", [(224, 224), (200, 300)])
def test_simclr_sampler_matches_tensorflow_op_rules(image_size):
    image_height, image_width = image_size
    image_area = image_height * image_width
    heights, widths = reference_boxes(
        DRAWS,
        *image_size,
        (3 / 4, 4 / 3),
        (0.08, 1.0),
        np.random.default_rng(0),
    )
    expected_area = heights * widths / image_area
    expected_ratio = widths / heights
    summary = {}
    distances = {}
    for sampler in ("simclr", "torchvision"):
        boxes = sampled_boxes(sampler, image_size)
        h, w = boxes["crop_height"], boxes["crop_width"]
        area = h * w / image_area
        summary[sampler] = (area.mean(), np.median(area))
        distances[sampler] = (
            ks_distance(area, expected_area),
            ks_distance(w / h, expected_ratio),
        )
    print(
        f"{image_size}: mean / median area fraction: reference "
        f"{expected_area.mean():.3f} / {np.median(expected_area):.3f}, "
        + ", ".join(f"{k} {m:.3f} / {d:.3f}" for k, (m, d) in summary.items())
        + f"; KS (area, ratio): {distances}"
    )
    assert max(distances["simclr"]) < KS_THRESHOLD
    # The same check tells the torchvision sampler apart: it can fail.
    assert distances["torchvision"][0] > 2 * KS_THRESHOLD
    assert abs(summary["simclr"][0] - expected_area.mean()) < 0.01


def test_simclr_sampler_boxes_are_whole_pixels_inside_the_image():
    boxes = sampled_boxes(
        "simclr", (200, 300), horizontal_flip_probability=0.3
    )
    h, w = boxes["crop_height"], boxes["crop_width"]
    top, left = boxes["top"], boxes["left"]
    for values in (h, w, top, left):
        np.testing.assert_array_equal(values, np.round(values))
    assert top.min() >= 0 and left.min() >= 0
    assert np.all(top + h <= 200) and np.all(left + w <= 300)
    area = h * w / (200 * 300)
    # The overlap constraint: 10% of the image at least, not 8%. The
    # largest box, 200 x rint(200 * 4/3) = 200 x 267, covers 0.89 of it.
    assert area.min() >= 0.1 and area.min() < 0.11
    assert 0.85 < area.max() <= 200 * 267 / (200 * 300) + 1e-6
    # Ratios uniform in [3/4, 4/3] (up to rounding of the width).
    ratio = w / h
    assert ratio.min() > 0.74 and ratio.max() < 1.34
    assert abs(ratio.mean() - (3 / 4 + 4 / 3) / 2) < 0.01
    assert abs(boxes["flip"].mean() - 0.3) < 0.02


def test_simclr_offsets_are_uniform_below_the_free_room():
    # TensorFlow draws the offset in [0, room), room = image size - box size,
    # so the last position (room itself) never occurs, unless room is 0.
    image_height, image_width = 9, 7
    boxes = sampled_boxes("simclr", (image_height, image_width))
    for offset, size, image_size in (
        (boxes["top"], boxes["crop_height"], image_height),
        (boxes["left"], boxes["crop_width"], image_width),
    ):
        room = image_size - size
        for free in np.unique(room):
            seen = offset[room == free]
            expected = np.arange(max(int(free), 1))
            assert set(seen.astype(int)) == set(expected), (free, seen)
            if free >= 2:
                counts = np.bincount(seen.astype(int), minlength=int(free))
                frequencies = counts / counts.sum()
                assert np.abs(frequencies - 1 / free).max() < 0.06


@pytest.mark.parametrize(
    "image_size, output_size, scale",
    [
        ((9, 7), (8, 8), (0.08, 1.0)),
        # A non-square output widens the aspect ratio range by its own
        # width / height (here 2), as the official code.
        ((6, 11), (4, 8), (0.08, 1.0)),
        ((13, 10), (8, 8), (0.3, 0.5)),
    ],
)
def test_simclr_box_frequencies_on_small_images(
    image_size, output_size, scale
):
    # On small images the rounding corrections decide which boxes exist:
    # the layer must give the same boxes as the reference, as often.
    # As many draws as the other tests: one shape keeps JAX's eager op
    # compilations few.
    count = DRAWS
    output_ratio = output_size[1] / output_size[0]
    aspect_ratio_range = (3 / 4 * output_ratio, 4 / 3 * output_ratio)
    heights, widths = reference_boxes(
        count, *image_size, aspect_ratio_range, scale, np.random.default_rng(2)
    )
    layer = RandomResizedCrop(*output_size, scale=scale, sampler="simclr")
    boxes = layer.get_random_transformation((count,) + image_size + (1,))
    boxes = {k: to_numpy(v) for k, v in boxes.items()}
    expected = collections.Counter(zip(heights, widths))
    actual = collections.Counter(
        zip(boxes["crop_height"], boxes["crop_width"])
    )
    assert set(actual) == set(expected)
    total_variation = 0.5 * sum(
        abs(actual[box] - expected[box]) / count for box in expected
    )
    # Sampling noise of 10,000 draws each: measured 0.01-0.03.
    assert total_variation < 0.05


def test_simclr_falls_back_to_the_whole_image():
    # No box of the whole area with aspect ratio 2..3 fits a square image.
    layer = RandomResizedCrop(
        8, 8, scale=(1.0, 1.0), aspect_ratio=(2, 3), sampler="simclr"
    )
    boxes = layer.get_random_transformation((DRAWS, 32, 32, 3))
    boxes = {k: to_numpy(v) for k, v in boxes.items()}
    heights, widths = reference_boxes(
        4, 32, 32, (2, 3), (1.0, 1.0), np.random.default_rng(0)
    )
    np.testing.assert_array_equal(heights, 32)
    np.testing.assert_array_equal(widths, 32)
    np.testing.assert_array_equal(boxes["crop_height"], 32)
    np.testing.assert_array_equal(boxes["crop_width"], 32)
    np.testing.assert_array_equal(boxes["top"], 0)
    np.testing.assert_array_equal(boxes["left"], 0)
