import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.data import from_arrays
from keras_simclr.data import label_fraction_indices
from keras_simclr.data import take_label_fraction


def unbalanced_labels(seed=0):
    # Classes of 100, 25, 7 and 1 examples, interleaved.
    labels = np.repeat([0, 1, 2, 3], [100, 25, 7, 1])
    return np.random.default_rng(seed).permutation(labels)


def test_each_class_keeps_its_rounded_fraction_and_at_least_one():
    labels = unbalanced_labels()
    indices = label_fraction_indices(labels, 0.1, seed=0)
    assert indices.dtype == np.int64
    assert np.all(np.diff(indices) > 0)
    counts = np.bincount(labels[indices], minlength=4)
    # 10, round(2.5) = 3 (half rounds up), round(0.7) = 1, and at least 1.
    np.testing.assert_array_equal(counts, [10, 3, 1, 1])
    all_indices = label_fraction_indices(labels, 1.0)
    np.testing.assert_array_equal(all_indices, np.arange(len(labels)))


def test_imagenet_like_one_percent_is_about_13_per_class():
    labels = np.repeat(np.arange(5), [1300, 1300, 732, 1000, 1250])
    counts = np.bincount(labels[label_fraction_indices(labels, 0.01)])
    np.testing.assert_array_equal(counts, [13, 13, 7, 10, 13])


def test_deterministic_by_seed_nested_and_stable_per_class():
    labels = unbalanced_labels()
    first = label_fraction_indices(labels, 0.2, seed=3)
    np.testing.assert_array_equal(first, label_fraction_indices(labels, 0.2, seed=3))
    other = label_fraction_indices(labels, 0.2, seed=4)
    assert len(other) == len(first) and not np.array_equal(first, other)
    # A smaller fraction is a subset of a larger one with the same seed.
    smaller = label_fraction_indices(labels, 0.05, seed=3)
    assert set(smaller) <= set(first)
    # Dropping a class does not change the choice within the others.
    kept = np.flatnonzero(labels != 1)
    without = kept[label_fraction_indices(labels[kept], 0.2, seed=3)]
    np.testing.assert_array_equal(without, first[labels[first] != 1])


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.5, True, "0.1", None])
def test_fraction_must_be_in_zero_one(fraction):
    with pytest.raises(ValueError, match=r"`fraction` must be a number in \(0, 1\]"):
        label_fraction_indices(np.arange(4), fraction)


def test_invalid_labels_and_seed():
    with pytest.raises(ValueError, match="labels"):
        label_fraction_indices(np.array([0.0, 1.0]), 0.5)
    with pytest.raises(ValueError, match="labels"):
        label_fraction_indices(np.array([0, -1]), 0.5)
    with pytest.raises(ValueError, match="empty"):
        label_fraction_indices(np.array([], "int64"), 0.5)
    with pytest.raises(ValueError, match="seed"):
        label_fraction_indices(np.arange(4), 0.5, seed=-1)


def test_take_label_fraction_of_arrays():
    labels = unbalanced_labels()
    images = np.arange(len(labels))[:, None, None, None] * np.ones((1, 2, 2, 3))
    taken_images, taken_labels = take_label_fraction((images, labels), 0.1, seed=1)
    indices = label_fraction_indices(labels, 0.1, seed=1)
    np.testing.assert_array_equal(taken_images, images[indices])
    np.testing.assert_array_equal(taken_labels, labels[indices])
    with pytest.raises(ValueError, match="one entry per image"):
        take_label_fraction((images[:5], labels), 0.1)
    with pytest.raises(ValueError, match=r"tuple \(images, labels\)"):
        take_label_fraction(images, 0.1)


def test_take_label_fraction_of_a_dataset_matches_the_arrays():
    labels = unbalanced_labels()[:60]
    images = np.broadcast_to(
        np.arange(60, dtype="uint8")[:, None, None, None], (60, 2, 2, 3)
    ).copy()
    taken = take_label_fraction(from_arrays(images, labels), 0.25, seed=2)
    expected = label_fraction_indices(labels, 0.25, seed=2)
    assert taken.cardinality().numpy() == len(expected)
    got = list(taken.as_numpy_iterator())
    assert [int(e["image"][0, 0, 0]) for e in got] == list(expected)
    assert [int(e["label"]) for e in got] == list(labels[expected])
    # Tuples (image, label) too.
    tuples = tf.data.Dataset.from_tensor_slices((images, labels))
    assert len(list(take_label_fraction(tuples, 0.25, seed=2))) == len(expected)


def test_take_label_fraction_rejects_unlabelled_and_shuffled_datasets():
    images = np.zeros((40, 2, 2, 3), "uint8")
    with pytest.raises(ValueError, match="labelled examples"):
        take_label_fraction(from_arrays(images), 0.5)
    shuffled = from_arrays(images, np.arange(40) % 2).shuffle(40, seed=0)
    taken = take_label_fraction(shuffled, 0.5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same order"):
        list(taken.as_numpy_iterator())
