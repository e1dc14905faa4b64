"""Checks of what users give to `fit()` and `evaluate()`, shared by models.

The pretrainer, the classifier and the distiller check labels through the
same functions, so that one kind of bad input gets one error everywhere,
before training starts and on every backend.
"""

import re

import keras
import numpy as np

# In the message of the assertion that a `tf.data` batch holds two images,
# so that the error it raises can be told from others and reraised.
SINGLE_IMAGE_BATCH = "a batch of a single image"


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


def as_numpy(array, name):
    """`array` as a NumPy array of numbers; refuses strings and objects."""
    if isinstance(array, np.ndarray):
        result = array
    elif isinstance(array, list):
        result = np.asarray(array)
    else:
        try:
            result = np.asarray(keras.ops.convert_to_numpy(array))
        except Exception:
            result = np.asarray(array)
    if result.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must hold numbers (integers or floats). "
            f"Received: {name}.dtype={result.dtype}"
        )
    return result


def check_labels(labels, num_images, name, num_classes):
    """Checks integer class ids, one per image, in `[0, num_classes)`.

    Args:
        labels: the labels, as a NumPy array.
        num_images: how many images they go with, or None if unknown.
        name: the argument's name in messages (`"y"`, `"validation_data[1]"`).
        num_classes: the number of classes, or None to check only that the
            ids are non-negative integers.

    Raises:
        ValueError: naming `name`, for one-hot or otherwise shaped labels,
            a count that differs from `num_images`, non-integer values or
            ids out of range.
    """
    labels = as_numpy(labels, name)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        one_hot = ""
        if labels.ndim == 2 and len(labels) and np.all(
            (labels == 0) | (labels == 1)
        ) and np.all(labels.sum(axis=1) == 1):
            one_hot = (
                " These look one-hot: pass `np.argmax(labels, axis=-1)`."
            )
        raise ValueError(
            f"`{name}` must hold one integer class id per image, shape "
            f"(N,).{one_hot} Received: {name}.shape={labels.shape}"
        )
    if num_images is not None and len(labels) != num_images:
        raise ValueError(
            f"`{name}` has {len(labels)} labels for {num_images} images. "
            f"Received: {name}.shape={labels.shape}"
        )
    if labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0):
        raise ValueError(
            f"`{name}` must hold integer class ids. Received: "
            f"{name}.dtype={labels.dtype} with non-integer values"
        )
    if not len(labels):
        return
    if num_classes is None:
        if labels.min() < 0:
            raise ValueError(
                f"`{name}` must hold non-negative class ids. Received: "
                f"labels from {labels.min()} to {labels.max()}"
            )
    elif labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"`{name}` must hold class ids in [0, {num_classes}) "
            f"(num_classes={num_classes}). Received: labels from "
            f"{labels.min()} to {labels.max()}"
        )


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
                    f"{name} needs a label per image: the dataset must yield "
                    f"(images, labels). Received: {x_name} with element_spec="
                    f"{x.element_spec}"
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
            raise ValueError(
                f"{name} needs a label per image: fit on (images, labels). "
                f"Received: {y_name}=None"
            )
        return
    if not is_array_like(y):
        return
    first = keras.tree.flatten(x)[0]
    num_images = len(first) if is_array_like(first) else None
    check_labels(y, num_images, y_name, num_classes)


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
            [tf.debugging.assert_greater_equal(tf.shape(first)[0], 2, message=message)]
        ):
            element = tf.nest.map_structure(tf.identity, element)
        return element if len(element) > 1 else element[0]

    return dataset.map(check)


def single_image_batch_message(name):
    return (
        f"`{name}` yielded {SINGLE_IMAGE_BATCH}, which has no negatives "
        "(each image is contrasted with the others of its batch). Batch the "
        "dataset with `.batch(batch_size, drop_remainder=True)`, or change "
        "`batch_size` so that no batch holds one image."
    )


def reraise_single_image_batch(error):
    """The `ValueError` for the pipeline assertion above, or None."""
    match = re.search(f"`([^`]+)` yielded {SINGLE_IMAGE_BATCH}", str(error))
    if match is None:
        return None
    return ValueError(single_image_batch_message(match.group(1)))
