"""A `tf.data.Dataset` of NumPy images and labels."""

import numpy as np
import tensorflow as tf


def _shape_text(array):
    return f"array of shape {array.shape} and dtype {array.dtype}"


def validate_images(images, argument="images"):
    """Returns `images` as a NumPy array `(N, H, W, C)`, C 1 or 3, N > 0."""
    array = np.asarray(images)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"`{argument}` must hold numbers (uint8 0-255, or floats). "
            f"Received: {argument}={_shape_text(array)}"
        )
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(
            f"`{argument}` must have shape (num_images, height, width, "
            f"channels) with 1 or 3 channels (channels last). Received: "
            f"{argument}={_shape_text(array)}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(
            f"`{argument}` holds no image, or images of zero size. Received: "
            f"{argument}={_shape_text(array)}"
        )
    return array


def validate_labels(labels, count=None, argument="labels"):
    """Returns `labels` as a 1-D int32 array of non-negative class ids.

    A column `(N, 1)`, as `keras.datasets` gives, is flattened.
    """
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`{argument}` must be integer class ids. Received: "
            f"{argument}={_shape_text(array)}"
        )
    if array.ndim != 1:
        raise ValueError(
            f"`{argument}` must have shape (num_images,) (or "
            f"(num_images, 1)). Received: {argument}={_shape_text(array)}"
        )
    if count is not None and len(array) != count:
        raise ValueError(
            f"`{argument}` must have one entry per image: {count} images, but "
            f"{argument} has {len(array)}. Received: "
            f"{argument}={_shape_text(array)}"
        )
    if len(array) and (array.min() < 0 or array.max() > np.iinfo(np.int32).max):
        raise ValueError(
            f"`{argument}` must be class ids from 0 to 2**31 - 1. Received: "
            f"{argument} with values from {array.min()} to {array.max()}"
        )
    return array.astype("int32")


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
    images = validate_images(images)
    example = {"image": images}
    if labels is not None:
        example["label"] = validate_labels(labels, count=len(images))
    return tf.data.Dataset.from_tensor_slices(example)
