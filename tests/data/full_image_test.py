"""The full-image mode: sources at their own size, augmentation per image."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.data.arrays import from_arrays
from keras_simclr.data.image_folder import from_image_files
from keras_simclr.data.image_folder import from_image_folder
from keras_simclr.data.pipeline import evaluation_dataset
from keras_simclr.data.pipeline import pretraining_dataset
from keras_simclr.layers.random_resized_crop import RandomResizedCrop
from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
from tests.data.image_files import solid
from tests.data.image_files import write_image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# Label k is drawn in colour COLOURS[k], so a view shows its label.
COLOURS = np.array(
    [(250, 10, 10), (10, 250, 10), (10, 10, 250), (200, 200, 30)], "uint8"
)
SIZES = [(10, 14), (13, 9), (16, 16), (11, 21)]


def batches_of(dataset):
    return list(dataset.as_numpy_iterator())


def three_stripes(height=12, width=36):
    """Left third red, middle green, right third blue."""
    image = solid(height, width, GREEN)
    image[:, : width // 3] = RED
    image[:, 2 * width // 3 :] = BLUE
    return image


def colour_fraction(views, colour):
    """Per view, the fraction of pixels within 30 of `colour` in every channel."""
    close = np.all(np.abs(views.astype("float32") - colour) < 30, axis=-1)
    return close.mean(axis=(1, 2))


@pytest.fixture
def striped_folder(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", three_stripes())
    return tmp_path


@pytest.fixture
def coloured_files(tmp_path):
    """Images of different sizes, each a solid colour that names its label."""
    paths, labels = [], []
    for i in range(12):
        label = i % 4
        height, width = SIZES[(i // 4 + label) % 4]
        path = tmp_path / f"{i:02d}.png"
        write_image(path, solid(height, width, COLOURS[label]))
        paths.append(str(path))
        labels.append(label)
    return paths, labels


def test_sources_keep_each_image_at_its_own_size(coloured_files):
    paths, labels = coloured_files
    dataset = from_image_files(paths, labels=labels)
    assert dataset.element_spec["image"] == tf.TensorSpec((None, None, 3), tf.uint8)
    got = batches_of(dataset)
    for example, label, i in zip(got, labels, range(len(got))):
        height, width = SIZES[(i // 4 + label) % 4]
        # PNG: the decoded image is the written one, pixel for pixel.
        np.testing.assert_array_equal(
            example["image"], solid(height, width, COLOURS[label])
        )


def test_full_image_crops_reach_the_sides_resized_crops_never_do(striped_folder):
    # Crops only (no colour change), so a view's colours are the image's.
    def views(image_size, augment_per_image):
        dataset = pretraining_dataset(
            from_image_folder(striped_folder, image_size),
            4,
            augmentation=RandomResizedCrop(8, 8, seed=3),
            augment_per_image=augment_per_image,
            repeat=True,
            seed=0,
        )
        got = batches_of(dataset.take(16))
        return np.concatenate(
            [batch[key] for batch in got for key in ("view_a", "view_b")]
        )

    full = views(None, "auto")
    assert full.shape == (128, 8, 8, 3)
    red, blue = colour_fraction(full, RED), colour_fraction(full, BLUE)
    # The side thirds hold 2/3 of the image: most crops show some of them,
    # and many lie wholly outside the central square.
    assert (red > 0).mean() > 0.3 and (blue > 0).mean() > 0.3
    assert (red == 1).any() and (blue == 1).any()
    # The old way: centre-cropped to a 12 x 12 square first, which is the
    # green middle third, so no crop ever reaches a side.
    resized = views(12, False)
    assert resized.shape == (128, 8, 8, 3)
    np.testing.assert_array_equal(colour_fraction(resized, GREEN), 1.0)


@pytest.mark.parametrize("deterministic", [True, False])
def test_per_image_views_have_the_view_size_and_keep_their_labels(
    coloured_files, deterministic
):
    paths, labels = coloured_files
    dataset = pretraining_dataset(
        from_image_files(paths, labels=labels),
        4,
        augmentation=RandomResizedCrop(6, 5, seed=1),
        seed=0 if deterministic else None,
        deterministic=deterministic,
    )
    assert dataset.element_spec[0]["view_a"].shape == (4, 6, 5, 3)
    assert dataset.element_spec[1].shape == (4,)
    got = batches_of(dataset)
    assert len(got) == 3
    seen = []
    for views, batch_labels in got:
        for key in ("view_a", "view_b"):
            assert views[key].shape == (4, 6, 5, 3)
            # A crop of a solid image is that colour, exactly.
            expected = COLOURS[batch_labels][:, None, None, :].astype("float32")
            np.testing.assert_allclose(
                views[key], np.broadcast_to(expected, views[key].shape), atol=0.5
            )
        seen.extend(batch_labels)
    assert sorted(seen) == sorted(labels)


def test_a_layer_returning_a_pair_gives_both_views(coloured_files):
    paths, labels = coloured_files
    crop = RandomResizedCrop(4, 4, seed=2)

    def pair(image):
        # Offset, so view_b shows it came from the pair's second view.
        return crop(image), tf.cast(crop(image), tf.float32) + 1000.0

    dataset = pretraining_dataset(
        from_image_files(paths, labels=labels), 3, augmentation=pair, seed=0
    )
    views, batch_labels = batches_of(dataset)[0]
    colours = COLOURS[batch_labels][:, None, None, :].astype("float32")
    np.testing.assert_allclose(
        views["view_a"], np.broadcast_to(colours, (3, 4, 4, 3)), atol=0.5
    )
    np.testing.assert_allclose(
        views["view_b"], np.broadcast_to(colours + 1000, (3, 4, 4, 3)), atol=0.5
    )


class RecordingResize:
    """Resizes to `image_size` and records the rank of what it was given."""

    def __init__(self, image_size):
        self.image_size = image_size
        self.ranks = []

    def __call__(self, images):
        self.ranks.append(images.shape.rank)
        size = (self.image_size, self.image_size)
        return tf.image.resize(tf.cast(images, tf.float32), size)


@pytest.mark.parametrize(
    "view_size, one_size, augment_per_image, per_image",
    [
        (65, True, "auto", True),  # large views: crops from the whole image
        (64, True, "auto", False),  # small views of resized images: batched
        (32, False, "auto", True),  # images of many sizes cannot be batched
        (65, True, False, False),
        (32, True, True, True),
    ],
)
def test_default_switch(view_size, one_size, augment_per_image, per_image):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 20, 20, 3)).astype("uint8")
    dataset = from_arrays(images, np.arange(6) % 2)
    if not one_size:
        # Heights of 10 or 11 rows: no size known before iterating.
        dataset = dataset.map(
            lambda e: {"image": e["image"][: 10 + e["label"]], "label": e["label"]}
        )
        assert dataset.element_spec["image"].shape == (None, 20, 3)
    augmentation = RecordingResize(view_size)
    batches = pretraining_dataset(
        dataset, 3, augmentation=augmentation,
        augment_per_image=augment_per_image, seed=0,
    )
    assert set(augmentation.ranks) == {3 if per_image else 4}
    views, labels = batches_of(batches)[0]
    assert views["view_a"].shape == (3, view_size, view_size, 3)
    assert labels.shape == (3,)


def test_arrays_without_augmentation_keep_raw_batches():
    images = np.zeros((4, 100, 100, 3), "uint8")
    dataset = pretraining_dataset(from_arrays(images), 2)
    assert dataset.element_spec == tf.TensorSpec((2, 100, 100, 3), tf.uint8)


def test_images_of_their_own_size_that_cannot_be_batched_are_refused(
    coloured_files,
):
    paths, labels = coloured_files
    full = from_image_files(paths, labels=labels)
    with pytest.raises(ValueError, match=r"augmentation=None.*image_size"):
        pretraining_dataset(full, 2)
    with pytest.raises(ValueError, match="Received: augment_per_image=False"):
        pretraining_dataset(
            full, 2, augmentation=RecordingResize(8), augment_per_image=False
        )
    with pytest.raises(ValueError, match="Received: augment_per_image=True"):
        pretraining_dataset(full, 2, augment_per_image=True)
    with pytest.raises(ValueError, match="Received: augment_per_image='yes'"):
        pretraining_dataset(full, 2, augment_per_image="yes")
    with pytest.raises(ValueError, match="Received: transform=None"):
        evaluation_dataset(full, 2)
    with pytest.raises(ValueError, match="Received: transform='centre'"):
        evaluation_dataset(full, 2, transform="centre")


def central_square_bicubic(image, size):
    """Reference: the central square (integer offsets), bicubic resize."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side].astype("float32")
    return tf.image.resize(square, (size, size), method="bicubic").numpy()


def test_evaluation_dataset_transforms_each_image_in_order(tmp_path):
    rng = np.random.default_rng(4)
    # Even size differences, so the central square has integer offsets.
    sizes = [(12, 20), (18, 10), (14, 14), (16, 24), (20, 12)]
    images = [rng.integers(0, 256, size + (3,)).astype("uint8") for size in sizes]
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        write_image(paths[-1], image)
    labels = [3, 1, 4, 1, 5]
    source = from_image_files(paths, labels=labels)
    # A Keras layer (called with training=False) and a plain function.
    resizing = keras.layers.Resizing(
        8, 8, interpolation="bicubic", crop_to_aspect_ratio=True
    )
    as_function = lambda image: tf.image.resize(  # noqa: E731
        tf.cast(image, tf.float32), (8, 8), method="area"
    )
    expected = np.stack([central_square_bicubic(image, 8) for image in images])
    for transform, reference in [
        (resizing, expected),
        (as_function, np.stack(
            [tf.image.resize(i.astype("float32"), (8, 8), method="area").numpy()
             for i in images]
        )),
    ]:
        got = batches_of(evaluation_dataset(source, 2, transform=transform))
        assert [len(x) for x, _ in got] == [2, 2, 1]
        np.testing.assert_allclose(
            np.concatenate([x for x, _ in got]), reference, atol=1e-3
        )
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels)


def official_center_crop(image, size, crop_proportion=0.875):
    """Reference of SimCLR's `center_crop` for a square view: a central
    square of 87.5% of the shorter side, bicubic resize, no antialiasing.
    Sizes here make the crop and its offsets whole numbers."""
    height, width = image.shape[:2]
    side = int(round(crop_proportion * min(height, width)))
    top, left = (height - side + 1) // 2, (width - side + 1) // 2
    crop = image[top : top + side, left : left + side].astype("float32")
    return tf.image.resize(crop, (size, size), method="bicubic").numpy()


@pytest.mark.skipif(
    "crop_interpolation"
    not in inspect.signature(SimCLRAugmentation.__init__).parameters,
    reason="SimCLRAugmentation has no official evaluation transform yet",
)
def test_evaluation_dataset_with_the_imagenet_evaluation_transform(tmp_path):
    rng = np.random.default_rng(5)
    # 87.5% of 16 is 14: offsets (2 + 1) // 2 = 1 and (10 + 1) // 2 = 5.
    images = [
        rng.integers(0, 256, size + (3,)).astype("uint8")
        for size in [(16, 24), (24, 16), (16, 16)]
    ]
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        write_image(paths[-1], image)
    augmentation = SimCLRAugmentation(8, preset="imagenet", seed=0)
    got = batches_of(
        evaluation_dataset(
            from_image_files(paths), 3, transform=augmentation, with_labels=False
        )
    )
    expected = np.stack([official_center_crop(image, 8) for image in images])
    np.testing.assert_allclose(
        got[0], np.clip(expected, 0, 255), atol=0.05
    )


def test_tfds_images_of_many_sizes_give_full_image_views():
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_simclr.data.tfds import from_tfds

    with tfds.testing.mock_data(num_examples=4):
        source = from_tfds("imagenet2012")
        assert source.element_spec["image"].shape == (None, None, 3)
        dataset = pretraining_dataset(
            source, 2, augmentation=RandomResizedCrop(8, 8, seed=0), seed=0
        )
        got = batches_of(dataset)
    assert len(got) == 2
    views, labels = got[0]
    assert views["view_a"].shape == views["view_b"].shape == (2, 8, 8, 3)
    assert labels.shape == (2,)
