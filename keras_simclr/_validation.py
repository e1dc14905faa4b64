"""The checks of what users give to keras_simclr, in one place.

Every public entry point checks its arguments through these functions, so
that one kind of bad input gets one error everywhere, before any work
starts and on every backend:

- the data given to `fit()` and `evaluate()` (`check_fit_labels`,
  `check_batches_hold_two_images`) and label arrays anywhere
  (`class_ids`);
- arguments (`check_int`, `check_number`, `check_choice`,
  `check_interval`, `check_image_size`...), each refused with the message
  "`name` must be ... Received: name=value";
- the tensors given to the losses (`check_matrix`, `check_branches`,
  `check_stacked_views`, `check_dict_call`).
"""

import math
import numbers
import os
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


# === Arguments ===
#
# One message format for every public argument: what it must be, then
# "Received: name=value". Each check returns the value it accepted, as a
# plain Python value (a NumPy integer becomes an int, a number a float).


def is_integer(value):
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _or_none(allow_none):
    return " or None" if allow_none else ""


def _is_finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _format_bound(bound):
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def _interval_text(minimum, maximum, include_minimum, include_maximum):
    """`[0, 1)`, `(0, inf)`...: the interval of the bounds, None unbounded."""
    left = "[" if include_minimum and minimum is not None else "("
    right = "]" if include_maximum and maximum is not None else ")"
    low = "-inf" if minimum is None else _format_bound(minimum)
    high = "inf" if maximum is None else _format_bound(maximum)
    return f"{left}{low}, {high}{right}"


def _within(value, minimum, maximum, include_minimum, include_maximum):
    """Whether a number lies between the bounds (None: unbounded)."""
    if minimum is not None and not (
        value >= minimum if include_minimum else value > minimum
    ):
        return False
    return maximum is None or (
        value <= maximum if include_maximum else value < maximum
    )


def check_bool(value, name):
    """Refuses anything but True or False (NumPy booleans included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_int(value, name, minimum=1, maximum=None, allow_none=False):
    """Refuses anything but an integer in `[minimum, maximum]` (or None if
    allowed); a bound of None is no bound.

    The message names the range: "a positive integer" (`minimum=1`), "a
    non-negative integer" (`minimum=0`), "an integer" (no bounds), "an
    integer in [2, 8]"...
    """
    if value is None and allow_none:
        return None
    if not is_integer(value) or not _within(value, minimum, maximum, True, True):
        if maximum is not None:
            what = "an integer in " + _interval_text(minimum, maximum, True, True)
        elif minimum is None:
            what = "an integer"
        elif minimum in (0, 1):
            what = "a non-negative integer" if minimum == 0 else "a positive integer"
        else:
            what = f"an integer >= {minimum}"
        raise ValueError(
            f"`{name}` must be {what}{_or_none(allow_none)}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_number(
    value,
    name,
    minimum=None,
    maximum=None,
    include_minimum=True,
    include_maximum=True,
    allow_none=False,
):
    """Refuses anything but a finite number in the given interval (or None
    if allowed); bools, NaN and infinities are refused.

    The message names the interval: "a positive number" for `(0, inf)`, "a
    non-negative number" for `[0, inf)`, else "a number in [0, 1)"...
    """
    if value is None and allow_none:
        return None
    if not (
        is_number(value)
        and _is_finite(value)
        and _within(value, minimum, maximum, include_minimum, include_maximum)
    ):
        if minimum == 0 and maximum is None:
            what = "a non-negative number" if include_minimum else "a positive number"
        elif minimum is None and maximum is None:
            what = "a finite number"
        else:
            what = "a number in " + _interval_text(
                minimum, maximum, include_minimum, include_maximum
            )
        raise ValueError(
            f"`{name}` must be {what}{_or_none(allow_none)}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_positive_number(value, name, allow_none=False):
    """A finite number > 0."""
    return check_number(
        value, name, minimum=0, include_minimum=False, allow_none=allow_none
    )


def check_non_negative_number(value, name, allow_none=False):
    """A finite number >= 0, such as the weight of a loss term."""
    return check_number(value, name, minimum=0, allow_none=allow_none)


def check_probability(value, name, allow_none=False):
    """A number in [0, 1]."""
    return check_number(value, name, minimum=0, maximum=1, allow_none=allow_none)


def check_num_classes(value, name="num_classes", allow_none=False):
    """A class count: an integer >= 2."""
    return check_int(value, name, minimum=2, allow_none=allow_none)


def check_seed(seed, name="seed"):
    """A random seed: an integer or None."""
    return check_int(seed, name, minimum=None, allow_none=True)


def _same_choice(value, choice):
    """Whether `value` is `choice`: True, False and None match only
    themselves, an int any integer equal to it, a string an equal string."""
    if isinstance(choice, bool) or choice is None:
        if isinstance(value, np.bool_):
            value = bool(value)
        return value is choice
    if isinstance(choice, int):
        return is_integer(value) and value == choice
    return type(value) is type(choice) and value == choice


def check_choice(value, name, choices):
    """Refuses anything but one of `choices`; returns that choice."""
    for choice in choices:
        if _same_choice(value, choice):
            return choice
    allowed = ", ".join(repr(choice) for choice in choices)
    raise ValueError(
        f"`{name}` must be one of {allowed}. Received: {name}={value!r}"
    )


def check_interval(
    value,
    name,
    minimum=None,
    maximum=None,
    include_minimum=True,
    strictly_increasing=False,
    allow_none=False,
):
    """Refuses anything but a pair `(low, high)` of finite numbers with
    `low <= high` (`low < high` if `strictly_increasing`), both in
    `[minimum, maximum]` (`(minimum, maximum]` without `include_minimum`);
    a bound of None is no bound.

    Returns:
        `(low, high)` as floats, or None where allowed.
    """
    if value is None and allow_none:
        return None
    valid = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(is_number(v) and _is_finite(v) for v in value)
    )
    if valid:
        low, high = value
        valid = (low < high if strictly_increasing else low <= high) and all(
            _within(v, minimum, maximum, include_minimum, True) for v in value
        )
    if not valid:
        order = "<" if strictly_increasing else "<="
        bounds = ""
        if minimum is not None or maximum is not None:
            bounds = " inside " + _interval_text(
                minimum, maximum, include_minimum, True
            )
        none = "None or " if allow_none else ""
        raise ValueError(
            f"`{name}` must be {none}a tuple `(low, high)` of two numbers with "
            f"low {order} high{bounds}. Received: {name}={value!r}"
        )
    return (float(value[0]), float(value[1]))


def check_value_range(value_range, allow_none=False):
    """The `value_range` of images: `(low, high)` with `low < high`, as
    floats (or None where allowed: no rescaling)."""
    return check_interval(
        value_range, "value_range", strictly_increasing=True, allow_none=allow_none
    )


def check_image_size(value, name="image_size", allow_none=False):
    """An image size: a positive integer (a square) or a pair of them.

    Returns:
        `(height, width)` as ints, or None where allowed.
    """
    if value is None and allow_none:
        return None
    size = (value, value) if is_integer(value) else value
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(is_integer(s) and s > 0 for s in size)
    ):
        none = "None, " if allow_none else ""
        raise ValueError(
            f"`{name}` must be {none}a positive integer or a tuple "
            f"`(height, width)` of two. Received: {name}={value!r}"
        )
    return (int(size[0]), int(size[1]))


def check_path(value, name="path", allow_none=False):
    """A path: a non-empty string or `os.PathLike`; returned as a str."""
    if value is None and allow_none:
        return None
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"`{name}` must be a non-empty path (str or os.PathLike)"
            f"{_or_none(allow_none)}. Received: {name}={value!r}"
        )
    return path


def check_layer(value, name, allow_none=False, description="a Keras layer"):
    """Refuses anything but a Keras layer (or None if allowed).

    `description` says what the layer is for in the message, such as "a
    Keras model or layer that maps images to feature vectors".
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, keras.layers.Layer):
        raise ValueError(
            f"`{name}` must be {description}{_or_none(allow_none)}. "
            f"Received: {name}={value!r}"
        )
    return value


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


# === Loss inputs ===
#
# What the loss functions and `keras.losses.Loss` classes check of the
# tensors they are given. Dimensions unknown while tracing (None) pass.


def check_matrix(name, x):
    """`x` as a tensor; it must be 2D `(batch, dim)`."""
    x = keras.ops.convert_to_tensor(x)
    if len(x.shape) != 2:
        raise ValueError(
            f"`{name}` must be a 2D tensor. Received: {name}.shape={tuple(x.shape)}"
        )
    return x


def check_same_shape(**tensors):
    """Checks that the tensors, given by name, have the same static shape."""
    shapes = {name: tuple(x.shape) for name, x in tensors.items()}
    if len(set(shapes.values())) > 1:
        names = [f"`{name}`" for name in shapes]
        names = ", ".join(names[:-1]) + " and " + names[-1]
        received = ", ".join(f"{name}.shape={shape}" for name, shape in shapes.items())
        raise ValueError(f"{names} must have the same shape. Received: {received}")


def check_branches(z_a, z_b, min_batch=2):
    """Two `(N, D)` projections of the same shape, N >= `min_batch` (a loss
    of batch statistics needs 2), as float32 tensors: float16 / bfloat16
    projections are computed on in float32, as 8 or 11 bits lose too much
    in a batch statistic or a softmax."""
    z_a = keras.ops.convert_to_tensor(z_a)
    z_b = keras.ops.convert_to_tensor(z_b)
    shape_a, shape_b = tuple(z_a.shape), tuple(z_b.shape)
    received = f"Received: z_a.shape={shape_a}, z_b.shape={shape_b}"
    if len(shape_a) != 2 or len(shape_b) != 2:
        raise ValueError(f"`z_a` and `z_b` must be 2D tensors (batch, dim). {received}")
    if any(
        a is not None and b is not None and a != b for a, b in zip(shape_a, shape_b)
    ):
        raise ValueError(
            "`z_a` and `z_b` must have the same shape: row n of each is a view "
            f"of image n. {received}"
        )
    if shape_a[0] is not None and shape_a[0] < min_batch:
        raise ValueError(
            f"`z_a` and `z_b` must hold at least {min_batch} images: the loss "
            f"uses statistics over the batch. Received: z_a.shape={shape_a}"
        )
    return keras.ops.cast(z_a, "float32"), keras.ops.cast(z_b, "float32")


def check_no_sample_weight(loss_name, sample_weight, reason=None):
    """Refuses the per-sample weights of a Loss class that takes none;
    `reason` says why in the message."""
    if sample_weight is not None:
        reason = f": {reason}" if reason else ""
        raise ValueError(
            f"{loss_name} has no per-sample weights{reason}. Received: "
            f"sample_weight of shape {getattr(sample_weight, 'shape', None)}"
        )


def check_stacked_views(loss_name, y_pred, sample_weight):
    """What a Loss class whose `y_pred` stacks both views accepts: `(2N, D)`
    with N >= 2, and no per-sample weights."""
    check_no_sample_weight(
        loss_name, sample_weight, "each image's term depends on the whole batch"
    )
    shape = getattr(y_pred, "shape", None)
    if shape is not None and len(shape) == 2 and shape[0] is not None:
        if shape[0] % 2 or shape[0] < 4:
            raise ValueError(
                "`y_pred` must stack the two views of at least 2 images, "
                f"shape (2N, D) with N >= 2. Received: y_pred.shape={tuple(shape)}"
            )


def check_dict_call(loss_name, y_pred, sample_weight, keys):
    """What a Loss class whose `y_pred` is a dict of tensors accepts: those
    `keys`, and no per-sample weights."""
    check_no_sample_weight(loss_name, sample_weight)
    if not isinstance(y_pred, dict) or set(y_pred) != set(keys):
        received = sorted(y_pred) if isinstance(y_pred, dict) else type(y_pred).__name__
        expected = ", ".join(f'"{key}"' for key in keys)
        raise ValueError(
            f"`y_pred` must be a dict with keys {expected}. "
            f"Received: y_pred={received}"
        )
