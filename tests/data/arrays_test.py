import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.data import from_arrays


def test_images_and_labels():
    images = np.arange(4 * 2 * 3 * 3, dtype="uint8").reshape(4, 2, 3, 3)
    labels = np.array([[3], [1], [0], [2]])
    dataset = from_arrays(images, labels)
    assert dataset.element_spec["image"] == tf.TensorSpec((2, 3, 3), tf.uint8)
    assert dataset.element_spec["label"] == tf.TensorSpec((), tf.int32)
    got = list(dataset.as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([e["image"] for e in got]), images)
    assert [int(e["label"]) for e in got] == [3, 1, 0, 2]


def test_unlabelled_grayscale_float_images():
    images = np.random.default_rng(0).uniform(0, 255, (3, 4, 4, 1)).astype("float32")
    dataset = from_arrays(images)
    assert set(dataset.element_spec) == {"image"}
    assert dataset.element_spec["image"].dtype == tf.float32
    assert dataset.cardinality().numpy() == 3


@pytest.mark.parametrize(
    "images, message",
    [
        (
            np.zeros((4, 4, 3), "uint8"),
            r"shape \(num_images, height, width, channels\).*shape \(4, 4, 3\)",
        ),
        (np.zeros((2, 4, 4, 4), "uint8"), r"1 or 3 channels.*shape \(2, 4, 4, 4\)"),
        (np.zeros((2, 4, 4, 2), "uint8"), r"1 or 3 channels.*shape \(2, 4, 4, 2\)"),
        (np.zeros((0, 4, 4, 3), "uint8"), r"no image.*shape \(0, 4, 4, 3\)"),
        (np.zeros((2, 4, 4, 3), bool), r"must hold numbers.*dtype bool"),
        (np.full((2, 4, 4, 3), "x"), r"must hold numbers.*dtype <U1"),
    ],
)
def test_invalid_images(images, message):
    with pytest.raises(ValueError, match=r"`images`.*" + message):
        from_arrays(images)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.zeros(3, "int64"), r"one entry per image: 4 images, but labels has 3"),
        (np.zeros(4, "float32"), r"integer class ids.*dtype float32"),
        (np.zeros((4, 2), "int64"), r"shape \(num_images,\).*shape \(4, 2\)"),
        (np.array([0, 1, -1, 2]), r"from 0 to.*values from -1 to 2"),
        (np.array([True, False, True, False]), r"integer class ids.*dtype bool"),
    ],
)
def test_invalid_labels(labels, message):
    images = np.zeros((4, 2, 2, 3), "uint8")
    with pytest.raises(ValueError, match=r"`labels`.*" + message):
        from_arrays(images, labels)
