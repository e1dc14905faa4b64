"""The checks of the data given to the library's models and evaluation
functions, in one place.

What kind of data it is (arrays, a `tf.data` dataset, a `tf.distribute`
dataset), its first batch, label arrays (`class_ids`, `check_labels`,
`check_fit_labels`), images given as arrays (`check_images`), and the
in-pipeline check that every batch of a `tf.data` dataset holds two images
(`check_batches_hold_two_images`). Each refuses bad data with a
`ValueError` naming the argument and what was received, before any
training step.
"""

import keras
import numpy as np

from keras_simclr import _graph_checks


def is_tf_dataset(x):
    """A `tf.data.Dataset`; not a `tf.distribute` distributed dataset, which
    cannot be peeked at and is passed to Keras as it is."""
    module = type(x).__module__
    return (
        module.startswith("tensorflow")
        and hasattr(x, "element_spec")
        and hasattr(x, "take")
    )


def is_distributed_dataset(x):
    module = type(x).__module__
    return module.startswith("tensorflow") and hasattr(x, "element_spec") and (
        not hasattr(x, "take")
    )


def is_array_like(x):
    return isinstance(x, (np.ndarray, list)) or (
        hasattr(x, "shape") and hasattr(x, "dtype") and not is_tf_dataset(x)
    )


def to_numpy(array):
    """`array` (a NumPy array, a list or a tensor of any backend) in NumPy."""
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, (list, tuple)) or np.isscalar(array):
        return np.asarray(array)
    try:
        return np.asarray(keras.ops.convert_to_numpy(array))
    except Exception:
        return np.asarray(array)


def as_numpy(array, name):
    """`array` as a NumPy array of numbers; refuses strings and objects."""
    result = to_numpy(array)
    if result.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must hold numbers (integers or floats). "
            f"Received: {name}.dtype={result.dtype}"
        )
    return result


# The largest class id: labels are int32 in the datasets and the models.
MAX_CLASS_ID = 2**31 - 1


def class_ids(labels, name, num_images=None, num_classes=None, dataset=False):
    """`labels` as an int64 NumPy array `(N,)` of class ids, or raises.

    The one check of label arrays: of `fit` data, of the evaluation
    functions and of the dataset sources. A column `(N, 1)`, as
    `keras.datasets` gives, is flattened.

    Args:
        labels: the labels: a NumPy array, a list or a tensor.
        name: the argument's name in messages (`"y"`, `"labels"`).
        num_images: how many images they go with, or None if unknown.
        num_classes: the number of classes, or None to check only that the
            ids are non-negative int32 values.
        dataset: whether the labels are given to a dataset source
            (`from_arrays`...), whose int32 labels must come as integers
            (not floats nor booleans), and whose messages describe the
            array by its shape and dtype, of `num_images` images.

    Returns:
        The labels, int64, shape `(N,)`.

    Raises:
        ValueError: naming `name`, for values that are not integers (a
            one-hot array gets a hint), another shape, a count other than
            `num_images`, or ids out of range.
    """
    labels = to_numpy(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    array = f"{name}=array of shape {labels.shape} and dtype {labels.dtype}"
    if labels.dtype.kind not in ("iu" if dataset else "biuf"):
        raise ValueError(
            f"`{name}` must hold integer class ids. Received: "
            + (array if dataset else f"{name}.dtype={labels.dtype}")
        )
    shape = array if dataset else f"{name}.shape={labels.shape}"
    if labels.ndim != 1:
        raise ValueError(
            f"`{name}` must hold one integer class id per image, shape "
            f"({'num_images' if dataset else 'N'},).{_one_hot_hint(labels)} "
            f"Received: {shape}"
        )
    if num_images is not None and len(labels) != num_images:
        raise ValueError(
            f"`{name}` must have one entry per image: {num_images} images, "
            f"but {name} has {len(labels)} labels for {num_images} images. "
            f"Received: {shape}"
        )
    if labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0):
        raise ValueError(
            f"`{name}` must hold integer class ids. Received: "
            f"{name}.dtype={labels.dtype} with non-integer values"
        )
    check_class_id_range(labels, name, num_classes)
    return labels.astype("int64")


def _one_hot_hint(labels):
    """A remedy for labels `(N, C)` that look one-hot, else ""."""
    if labels.ndim == 2 and len(labels) and np.all(
        (labels == 0) | (labels == 1)
    ) and np.all(labels.sum(axis=1) == 1):
        return " These look one-hot: pass `np.argmax(labels, axis=-1)`."
    return ""


def check_class_id_range(labels, name, num_classes):
    """Checks that class ids (a NumPy array) are in `[0, num_classes)`, or
    in `[0, 2**31 - 1]` if `num_classes` is None."""
    if not len(labels):
        return
    low, high = labels.min(), labels.max()
    if num_classes is None:
        if low < 0 or high > MAX_CLASS_ID:
            raise ValueError(
                f"`{name}` must hold non-negative class ids, from 0 to "
                f"2**31 - 1. Received: {name} with values from {low} to {high}"
            )
    elif low < 0 or high >= num_classes:
        raise ValueError(
            f"`{name}` must hold class ids in [0, {num_classes}) "
            f"(num_classes={num_classes}). Received: labels from "
            f"{low} to {high}"
        )


def check_labels(labels, num_images, name, num_classes):
    """`class_ids` of the labels of `fit` data: integer class ids, one per
    image, in `[0, num_classes)` (non-negative if `num_classes` is None).

    Args:
        labels: the labels, as a NumPy array.
        num_images: how many images they go with, or None if unknown.
        name: the argument's name in messages (`"y"`, `"validation_data[1]"`).
        num_classes: the number of classes, or None.

    Returns:
        The labels, an int64 NumPy array `(N,)`.

    Raises:
        ValueError: as `class_ids`.
    """
    return class_ids(labels, name, num_images=num_images, num_classes=num_classes)


def first_batch(dataset):
    """The first element of a `tf.data` dataset, or None if it is empty."""
    for element in dataset.take(1):
        return element
    return None


def split_element(element):
    """`(x, y)` of a dataset element: `x`, `(x,)`, `(x, y)` or `(x, y, w)`."""
    if isinstance(element, tuple):
        return element[0], (element[1] if len(element) > 1 else None)
    return element, None


def check_labelled_data(x, y, num_classes, name, labels_required, prefix=None):
    """Checks the labels of `fit`/`evaluate` inputs of a classifying model.

    Arrays and tensors are checked whole; a `tf.data` dataset by its first
    batch (the others would mean reading it all). A distributed dataset or
    a generator is passed on unchecked.

    Args:
        x, y: what `fit` received.
        num_classes: the number of classes, or None.
        name: the model's name in messages.
        labels_required: whether labels must be given.
        prefix: `"validation_data"` for `validation_data=(x, y)`.
    """
    x_name = f"{prefix}[0]" if prefix else "x"
    y_name = f"{prefix}[1]" if prefix else "y"
    if is_tf_dataset(x):
        element = first_batch(x)
        if element is None:
            return
        x_batch, y_batch = split_element(element)
        if y_batch is None:
            if labels_required:
                raise ValueError(
                    missing_labels_message(
                        name, f"{x_name} with element_spec={x.element_spec}",
                        dataset=True,
                    )
                )
            return
        first = keras.tree.flatten(x_batch)[0]
        check_labels(
            np.asarray(y_batch), int(first.shape[0]), f"{x_name} labels", num_classes
        )
        return
    if x is None or not (is_array_like(x) or isinstance(x, dict)):
        return
    if y is None:
        if labels_required:
            raise ValueError(missing_labels_message(name, f"{y_name}=None"))
        return
    if not is_array_like(y):
        return
    first = keras.tree.flatten(x)[0]
    num_images = len(first) if is_array_like(first) else None
    check_labels(y, num_images, y_name, num_classes)


def missing_labels_message(who, received, dataset=False):
    """The message for data without the labels that `who` needs."""
    remedy = (
        "the dataset must yield (images, labels)"
        if dataset
        else "fit on (images, labels)"
    )
    return f"{who} needs a label per image: {remedy}. Received: {received}"


def check_fit_labels(x, y, validation_data, num_classes, name, labels_required):
    """`check_labelled_data` for what `fit` received, `validation_data`
    included (a tuple `(x, y)` or a `tf.data` dataset)."""
    check_labelled_data(x, y, num_classes, name, labels_required)
    if isinstance(validation_data, (tuple, list)) and len(validation_data) > 1:
        x, y = validation_data[0], validation_data[1]
    elif is_tf_dataset(validation_data):
        x, y = validation_data, None
    else:
        return
    check_labelled_data(
        x, y, num_classes, name, labels_required, prefix="validation_data"
    )


def check_batches_hold_two_images(dataset, name):
    """`dataset` with every batch checked to hold at least two images.

    A contrastive step needs each image's negatives in its batch; arrays
    are checked before training, but a `tf.data` pipeline's last batch is
    only known when it comes: the check runs then, in the pipeline, and
    raises an error naming the remedy (`drop_remainder=True`). A dataset
    whose batch size is fixed at two or more is returned as it is.
    """
    import tensorflow as tf

    x_spec = split_element(dataset.element_spec)[0]
    batch = keras.tree.flatten(x_spec)[0].shape[0]
    if batch is not None and batch >= 2:
        return dataset
    message = single_image_batch_message(name)

    def check(*element):
        first = tf.nest.flatten(element)[0]
        with tf.control_dependencies(
            [_graph_checks.assertion(tf.shape(first)[0] >= 2, message)]
        ):
            element = tf.nest.map_structure(tf.identity, element)
        return element if len(element) > 1 else element[0]

    return dataset.map(check)


def single_image_batch_message(name):
    return (
        f"`{name}` yielded a batch of a single image, which has no negatives "
        "(each image is contrasted with the others of its batch). Batch the "
        "dataset with `.batch(batch_size, drop_remainder=True)`, or change "
        "`batch_size` so that no batch holds one image."
    )


def check_images(images, name="images"):
    """A non-empty batch of images `(num_images, height, width, channels)`
    with 1 or 3 channels, of integers or floats, as a NumPy array."""
    array = to_numpy(images)
    received = f"Received: {name}=array of shape {array.shape} and dtype {array.dtype}"
    if array.dtype.kind not in "iuf":
        raise ValueError(
            f"`{name}` must hold numbers (uint8 0-255, or floats). {received}"
        )
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(
            f"`{name}` must have shape (num_images, height, width, channels) "
            f"with 1 or 3 channels (channels last). {received}"
        )
    if 0 in array.shape[:3]:
        raise ValueError(
            f"`{name}` holds no image, or images of zero size. {received}"
        )
    return array
