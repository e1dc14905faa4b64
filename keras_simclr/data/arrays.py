"""A `tf.data.Dataset` of NumPy images and labels."""

import tensorflow as tf

from keras_simclr import _data_checks


def validate_labels(labels, count=None):
    """The labels of a dataset source as a 1-D int32 array of class ids,
    `count` of them if given (a column `(N, 1)` is flattened)."""
    labels = _data_checks.class_ids(labels, "labels", num_images=count, dataset=True)
    return labels.astype("int32")


def from_arrays(images, labels=None):
    """A dataset of in-memory images and (optionally) labels.

    The images keep their dtype (uint8 is the compact choice; floats are
    expected in 0-255, as every source here gives). The arrays are copied
    into the dataset; for arrays larger than about 2 GB prefer an image
    folder or tfds.

    Args:
        images: array-like `(num_images, height, width, channels)` with 1
            or 3 channels, integer or float.
        labels: None, or integer class ids `(num_images,)` (a column
            `(num_images, 1)` is flattened), non-negative.

    Returns:
        A `tf.data.Dataset` of dicts `{"image": (height, width, channels),
        "label": int32 scalar}` (no `"label"` without labels), in the order
        of the arrays.

    Raises:
        ValueError: naming the argument and what it received, if the images
            are not a non-empty batch of 1- or 3-channel images, or the
            labels are not non-negative integers, one per image.

    Example:

    ```python
    (x, y), _ = keras.datasets.cifar10.load_data()
    dataset = keras_simclr.data.from_arrays(x, y)
    batches = keras_simclr.data.pretraining_dataset(dataset, batch_size=512)
    ```
    """
    images = _data_checks.check_images(images)
    example = {"image": images}
    if labels is not None:
        example["label"] = validate_labels(labels, count=len(images))
    return tf.data.Dataset.from_tensor_slices(example)
