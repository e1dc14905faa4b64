"""The boxes of `RandomResizedCrop`'s samplers against their references.

`sampler="simclr"`: the real `tf.image.stateless_sample_distorted_bounding_box`
(the kernel of the `sample_distorted_bounding_box` that the official SimCLR
code calls in `data_util.crop_and_resize`, with a stateless seed), and a NumPy
re-implementation of its C++ rules beside it. `sampler="byol"`: a NumPy
re-implementation of BYOL's `_decode_and_random_crop`
(deepmind-research, `byol/utils/dataset.py`). The random streams differ, so
the comparisons are of distributions over many draws, tight enough that the
other samplers fail them.
"""

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


def tensorflow_boxes(
    count,
    image_height,
    image_width,
    aspect_ratio_range,
    area_range,
    seed=0,
    max_attempts=100,
    min_object_covered=0.1,
):
    """`(tops, lefts, heights, widths)` of `count` boxes drawn by TensorFlow's
    own op, with the whole image as the object, as the official SimCLR code
    calls it (one stateless seed per box)."""
    import tensorflow as tf

    whole_image = tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32)

    def one(box_seed):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.constant([image_height, image_width, 1], tf.int32),
            bounding_boxes=whole_image,
            seed=box_seed,
            min_object_covered=min_object_covered,
            aspect_ratio_range=aspect_ratio_range,
            area_range=area_range,
            max_attempts=max_attempts,
            use_image_if_no_bounding_boxes=True,
        )
        return tf.concat([begin[:2], size[:2]], axis=0)

    seeds = np.stack(
        [np.full(count, seed), np.arange(count)], axis=1
    ).astype("int64")
    # A `tf.data` map runs the op in a graph, traced once.
    dataset = tf.data.Dataset.from_tensor_slices(seeds).map(one).batch(count)
    boxes = next(iter(dataset)).numpy().astype("float64")
    return boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]


def byol_reference_boxes(
    count,
    image_height,
    image_width,
    rng,
    area_range=(0.08, 1.0),
    aspect_ratio_range=(3 / 4, 4 / 3),
):
    """`(tops, lefts, heights, widths)` of `count` boxes as BYOL's
    `_decode_and_random_crop` draws them, one image at a time, in float32
    as its TensorFlow ops:

        area = float32(W * H)
        target_area = uniform(0.08, 1.0) * area
        aspect_ratio = exp(uniform(log(3/4), log(4/3)))
        w = int(round(sqrt(target_area * aspect_ratio)))   # half to even
        h = int(round(sqrt(target_area / aspect_ratio)))
        w, h = min(w, W), min(h, H)
        offset_w = uniform integer in [0, W - w + 1)
        offset_h = uniform integer in [0, H - h + 1)
    """
    f32 = np.float32
    area = f32(image_height * image_width)
    log_low = f32(np.log(f32(aspect_ratio_range[0])))
    log_high = f32(np.log(f32(aspect_ratio_range[1])))
    boxes = np.zeros((count, 4))
    for n in range(count):
        target_area = f32(rng.uniform(*area_range)) * area
        aspect_ratio = np.exp(f32(rng.uniform(log_low, log_high)))
        width = int(np.round(np.sqrt(f32(target_area * aspect_ratio))))
        height = int(np.round(np.sqrt(f32(target_area / aspect_ratio))))
        width = min(width, image_width)
        height = min(height, image_height)
        left = int(rng.integers(0, image_width - width + 1))
        top = int(rng.integers(0, image_height - height + 1))
        boxes[n] = (top, left, height, width)
    return boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]


def total_variation(first, second):
    """Half the L1 distance between the frequencies of two samples of
    boxes (tuples)."""
    first, second = collections.Counter(first), collections.Counter(second)
    count_1, count_2 = sum(first.values()), sum(second.values())
    return 0.5 * sum(
        abs(first[box] / count_1 - second[box] / count_2)
        for box in set(first) | set(second)
    )


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
    # float64, as the references: the same ratio of whole pixels must be
    # the same number in both samples.
    return {
        k: to_numpy(v).astype("float64" if k != "flip" else "bool")
        for k, v in boxes.items()
    }


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


# === The real TensorFlow op ===


@pytest.mark.parametrize("image_size", [(224, 224), (200, 300)])
def test_simclr_sampler_matches_the_real_tensorflow_op(image_size):
    image_height, image_width = image_size
    image_area = image_height * image_width
    _, _, heights, widths = tensorflow_boxes(
        DRAWS, *image_size, (3 / 4, 4 / 3), (0.08, 1.0)
    )
    expected_area = heights * widths / image_area
    # The NumPy rewrite of the op's rules agrees with the op itself.
    rewrite_h, rewrite_w = reference_boxes(
        DRAWS,
        *image_size,
        (3 / 4, 4 / 3),
        (0.08, 1.0),
        np.random.default_rng(5),
    )
    assert ks_distance(rewrite_h * rewrite_w / image_area, expected_area) < (
        KS_THRESHOLD
    )
    assert ks_distance(rewrite_w / rewrite_h, widths / heights) < KS_THRESHOLD
    distances = {}
    for sampler in ("simclr", "torchvision", "byol"):
        boxes = sampled_boxes(sampler, image_size)
        h, w = boxes["crop_height"], boxes["crop_width"]
        distances[sampler] = (
            ks_distance(h * w / image_area, expected_area),
            ks_distance(w / h, widths / heights),
        )
    print(f"{image_size}: KS (area, ratio) against the op: {distances}")
    assert max(distances["simclr"]) < KS_THRESHOLD
    # The other samplers fail the same check.
    assert distances["torchvision"][0] > 2 * KS_THRESHOLD
    assert distances["byol"][0] > 2 * KS_THRESHOLD


@pytest.mark.parametrize(
    "image_size, output_size, scale",
    [
        ((9, 7), (8, 8), (0.08, 1.0)),
        ((6, 11), (4, 8), (0.08, 1.0)),
        ((13, 10), (8, 8), (0.3, 0.5)),
    ],
)
def test_simclr_boxes_and_offsets_on_small_images_match_the_op(
    image_size, output_size, scale
):
    # Whole boxes (offsets included): the rounding rules and the offset
    # range [0, room) of the kernel decide which exist, and how often.
    output_ratio = output_size[1] / output_size[0]
    aspect_ratio_range = (3 / 4 * output_ratio, 4 / 3 * output_ratio)
    expected = list(
        zip(*tensorflow_boxes(DRAWS, *image_size, aspect_ratio_range, scale))
    )
    layer = RandomResizedCrop(
        *output_size, scale=scale, sampler="simclr", seed=3
    )
    boxes = layer.get_random_transformation((DRAWS,) + image_size + (1,))
    boxes = {k: to_numpy(v).astype("float64") for k, v in boxes.items()}
    actual = list(
        zip(
            boxes["top"],
            boxes["left"],
            boxes["crop_height"],
            boxes["crop_width"],
        )
    )
    assert {box[2:] for box in actual} == {box[2:] for box in expected}
    # Sampling noise of 10,000 draws each over 140 to 150 boxes: 0.05 to
    # 0.07 between two seeds of the op itself; an offset range one pixel
    # longer or shorter gives 0.2 or more.
    assert total_variation(actual, expected) < 0.1
    assert total_variation(
        [box[2:] for box in actual], [box[2:] for box in expected]
    ) < 0.05


# === BYOL's sampler ===


@pytest.mark.parametrize("image_size", [(224, 224), (200, 300), (48, 40)])
def test_byol_sampler_matches_byol_code(image_size):
    image_height, image_width = image_size
    image_area = image_height * image_width
    _, _, heights, widths = byol_reference_boxes(
        DRAWS, *image_size, np.random.default_rng(3)
    )
    expected_area = heights * widths / image_area
    expected_ratio = widths / heights
    summary = {}
    distances = {}
    for sampler in ("byol", "simclr", "torchvision"):
        boxes = sampled_boxes(sampler, image_size)
        h, w = boxes["crop_height"], boxes["crop_width"]
        area = h * w / image_area
        summary[sampler] = area.mean()
        distances[sampler] = (
            ks_distance(area, expected_area),
            ks_distance(w / h, expected_ratio),
        )
    print(
        f"{image_size}: mean area fraction: reference "
        f"{expected_area.mean():.3f}, "
        + ", ".join(f"{k} {m:.3f}" for k, m in summary.items())
        + f"; KS (area, ratio): {distances}"
    )
    assert max(distances["byol"]) < KS_THRESHOLD
    # Standard error of a mean of 10,000 areas: 0.003.
    assert abs(summary["byol"] - expected_area.mean()) < 0.01
    # SimCLR's sampler, which the preset used before, fails the same check.
    assert distances["simclr"][0] > 2 * KS_THRESHOLD
    assert summary["byol"] - summary["simclr"] > 0.08


@pytest.mark.parametrize(
    "image_size, scale, aspect_ratio",
    [
        ((9, 7), (0.08, 1.0), (3 / 4, 4 / 3)),
        ((6, 11), (0.08, 1.0), (3 / 4, 4 / 3)),
        ((13, 10), (0.3, 0.5), (0.5, 2.0)),
    ],
)
def test_byol_boxes_and_offsets_on_small_images(image_size, scale, aspect_ratio):
    # Rounding, clamping and the offset range [0, room] decide which boxes
    # exist on small images, and how often.
    expected = list(
        zip(
            *byol_reference_boxes(
                DRAWS,
                *image_size,
                np.random.default_rng(4),
                area_range=scale,
                aspect_ratio_range=aspect_ratio,
            )
        )
    )
    layer = RandomResizedCrop(
        8, 8, scale=scale, aspect_ratio=aspect_ratio, sampler="byol", seed=2
    )
    boxes = layer.get_random_transformation((DRAWS,) + image_size + (1,))
    boxes = {k: to_numpy(v).astype("float64") for k, v in boxes.items()}
    actual = list(zip(boxes["crop_height"], boxes["crop_width"]))
    expected_sizes = [box[2:] for box in expected]
    assert set(actual) == set(expected_sizes)
    # Sampling noise of 10,000 draws each: 0.015 to 0.025 measured;
    # SimCLR's sampler gives 0.2 or more.
    assert total_variation(actual, expected_sizes) < 0.05
    # Offsets: uniform integers in [0, room], both included (TensorFlow's
    # op never reaches `room` itself), as often as the reference's.
    for offset, size, image_axis, index in (
        (boxes["top"], boxes["crop_height"], image_size[0], 0),
        (boxes["left"], boxes["crop_width"], image_size[1], 1),
    ):
        room = image_axis - size
        expected_room = np.array([image_axis - box[index + 2] for box in expected])
        expected_offset = np.array([box[index] for box in expected])
        for free in np.unique(room).astype(int):
            positions = set(range(free + 1))
            seen = offset[room == free].astype(int)
            reference_seen = expected_offset[expected_room == free].astype(int)
            assert set(seen) <= positions and set(reference_seen) <= positions
            if len(seen) < 40 * (free + 1):
                continue  # too rare a room to expect every position
            assert set(seen) == positions == set(reference_seen), free
            counts = np.bincount(seen, minlength=free + 1)
            frequencies = counts / counts.sum()
            bound = 4 * np.sqrt(1 / (free + 1) / len(seen))
            assert np.abs(frequencies - 1 / (free + 1)).max() < bound, free


def test_byol_clamps_to_the_image_without_redrawing():
    # No box of the whole area with aspect ratio 2..3 fits a square image:
    # BYOL keeps the drawn height and clamps the width to the image, where
    # SimCLR's sampler falls back to the whole image.
    layer = RandomResizedCrop(
        8, 8, scale=(1.0, 1.0), aspect_ratio=(2, 3), sampler="byol", seed=0
    )
    boxes = layer.get_random_transformation((DRAWS, 32, 32, 3))
    boxes = {k: to_numpy(v) for k, v in boxes.items()}
    tops, lefts, heights, widths = byol_reference_boxes(
        DRAWS,
        32,
        32,
        np.random.default_rng(0),
        area_range=(1.0, 1.0),
        aspect_ratio_range=(2, 3),
    )
    np.testing.assert_array_equal(widths, 32)
    np.testing.assert_array_equal(boxes["crop_width"], 32)
    np.testing.assert_array_equal(boxes["left"], 0)
    # round(sqrt(1024 / r)) for r in [2, 3]: 18 to 23 pixels.
    assert set(boxes["crop_height"]) == set(heights) == set(range(18, 24))
    assert ks_distance(boxes["crop_height"], heights) < KS_THRESHOLD
    np.testing.assert_array_equal(
        boxes["top"] <= 32 - boxes["crop_height"], True
    )
