"""Class-balanced fractions of labelled data, for semi-supervised learning."""

import numpy as np
import tensorflow as tf

from keras_simclr import _validation
from keras_simclr.data.arrays import validate_labels


def _check_fraction_and_seed(fraction, seed):
    """`(fraction, seed)`: a number in `(0, 1]` and a non-negative int."""
    fraction = _validation.check_number(
        fraction, "fraction", minimum=0, maximum=1, include_minimum=False
    )
    return fraction, _validation.check_int(seed, "seed", minimum=0)


def label_fraction_indices(labels, fraction, seed=0):
    """Indices of a class-balanced fraction of labelled examples.

    Each class keeps `round(fraction * class_count)` of its examples (half
    rounds up), and at least one: the stratified sampling behind the
    SimCLR (v1 and v2) 1% and 10% ImageNet subsets, about 13 and 128 images
    per class. The examples of a class are ranked by a random permutation
    drawn from `(seed, class id)` alone, and the first ones are kept, so:

    - the same labels and seed give the same indices;
    - with one seed, a smaller fraction gives a subset of a larger one;
    - adding or removing other classes does not change a class's choice.

    Args:
        labels: integer class ids, shape `(num_examples,)` (or
            `(num_examples, 1)`), non-negative.
        fraction: float in `(0, 1]`, the fraction of each class to keep.
        seed: non-negative int. Defaults to 0.

    Returns:
        A sorted int64 NumPy array of indices into `labels`.

    Raises:
        ValueError: if `fraction` is not in `(0, 1]`, the seed is not a
            non-negative integer, or the labels are not non-negative
            integers (or empty).

    Example:

    ```python
    indices = keras_simclr.data.label_fraction_indices(train_labels, 0.01)
    images, labels = train_images[indices], train_labels[indices]
    ```
    """
    fraction, seed = _check_fraction_and_seed(fraction, seed)
    labels = validate_labels(labels)
    if len(labels) == 0:
        raise ValueError("`labels` is empty: there is nothing to take a fraction of.")
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(np.floor(fraction * len(members) + 0.5)))
        ranking = np.random.default_rng([seed, int(label)]).permutation(len(members))
        chosen.append(members[ranking[:count]])
    return np.sort(np.concatenate(chosen)).astype("int64")


def _dataset_labels(dataset):
    spec = dataset.element_spec
    if isinstance(spec, dict) and "label" in spec:
        return dataset.map(lambda example: example["label"]), lambda e: e["label"]
    if isinstance(spec, tuple) and len(spec) == 2:
        return dataset.map(lambda image, label: label), lambda e: e[1]
    raise ValueError(
        "take_label_fraction() needs labelled examples: dicts with a 'label' "
        f"or tuples (image, label). Received a dataset with element_spec={spec}"
    )


def take_label_fraction(data, fraction, seed=0):
    """A class-balanced fraction of a labelled dataset or of arrays.

    Selects the examples of `label_fraction_indices(labels, fraction,
    seed)`.

    For a `tf.data.Dataset`, the labels are read in one pass first (for an
    image folder or tfds dataset, that decodes every image once; the
    official ImageNet subsets avoid it, see `read_subset_file` and
    `from_tfds("imagenet2012_subset/1pct")`). The dataset must give its
    examples in the same order on every pass (not shuffled: shuffle the
    result instead); each later pass checks its labels against the first
    and fails if they differ.

    Args:
        data: a tuple `(images, labels)` of arrays, or a `tf.data.Dataset`
            of unbatched labelled examples (dicts with `"label"` or tuples
            `(image, label)`).
        fraction: float in `(0, 1]`.
        seed: non-negative int. Defaults to 0.

    Returns:
        For arrays, `(images[indices], labels[indices])` as NumPy arrays;
        for a dataset, a dataset of the selected examples in their order,
        with known cardinality.

    Raises:
        ValueError: if `fraction` or `seed` is invalid, the data have no
            labels, or the arrays' lengths differ.

    Example:

    ```python
    train = keras_simclr.data.from_tfds("cifar10", split="train")
    labelled = keras_simclr.data.take_label_fraction(train, 0.1, seed=0)
    ```
    """
    fraction, seed = _check_fraction_and_seed(fraction, seed)
    if isinstance(data, tf.data.Dataset):
        return _take_from_dataset(data, fraction, seed)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            "`data` must be a tuple (images, labels) of arrays or a labelled "
            f"tf.data.Dataset. Received: data of type {type(data).__name__}"
        )
    images, labels = np.asarray(data[0]), data[1]
    labels = validate_labels(labels, count=len(images))
    indices = label_fraction_indices(labels, fraction, seed)
    return images[indices], labels[indices]


def _take_from_dataset(dataset, fraction, seed):
    label_dataset, label_of = _dataset_labels(dataset)
    labels = np.fromiter(
        (int(label) for label in label_dataset.as_numpy_iterator()), dtype="int64"
    )
    indices = label_fraction_indices(labels, fraction, seed)
    keep = np.zeros(len(labels), dtype=bool)
    keep[indices] = True
    count = len(labels)
    all_labels = tf.constant(labels)
    all_keep = tf.constant(keep)

    def selected(position, example):
        index = tf.minimum(position, count - 1)
        same = tf.logical_and(
            position < count,
            tf.equal(tf.cast(label_of(example), tf.int64), all_labels[index]),
        )
        checked = tf.debugging.Assert(
            same,
            [
                "take_label_fraction(): the dataset gave other examples than "
                "when its labels were read. It must give the same examples in "
                "the same order on every pass: do not shuffle it before "
                "taking the fraction. Example position:",
                position,
            ],
        )
        with tf.control_dependencies([checked]):
            return tf.identity(all_keep[index])

    subset = dataset.enumerate().filter(selected)
    subset = subset.map(lambda position, example: example)
    return subset.apply(tf.data.experimental.assert_cardinality(len(indices)))
