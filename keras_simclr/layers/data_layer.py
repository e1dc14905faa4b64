"""The augmentation layers' base class, and the images' value-range rule.

Keras's own image-augmentation layers run eagerly, inside a compiled model on
any backend, and inside a `tf.data` pipeline on any backend. They do it through
the base class `DataLayer`: inside a `tf.data` graph its `__call__` switches
`self.backend` to TensorFlow, so a layer whose `call` uses `self.backend.numpy`
/ `self.backend.random` (instead of `keras.ops` / `keras.random`) works there
too. `keras.ops` itself fails inside `tf.data.Dataset.map` on the JAX and torch
backends.

`DataLayer` is not exported by Keras: it comes from `keras_simclr._keras_compat`,
the one place that reaches into Keras's private API, as does the layer call
context, read to tell a call by the user (whose input range is checked) from
a call inside a model. `tests/keras_compat_test.py` and
`tests/layers/data_layer_test.py` guard them on every backend.

The images' value-range check lives here too (`check_value_range`, and
`check_input_range` for the data given to a model): the augmentation layers,
the ResNet, the models and the kNN evaluation all apply this one rule.
"""

import contextlib
import math
import sys
import threading

import keras
import numpy as np

from keras_simclr import _graph_checks
from keras_simclr import _keras_compat
from keras_simclr import _data_checks
from keras_simclr import _validation

DataLayer = _keras_compat.data_layer_class()


# Values this far outside `value_range`, as a fraction of its width, are
# float rounding (a resize or a colour change of in-range images), not images
# in another range.
VALUE_RANGE_TOLERANCE = 1e-3


def check_value_range(images, value_range, argument, owner=None):
    """Raises ValueError if a batch of images is not in `value_range`.

    The one rule for the images' range, applied by every entry point of the
    library (the models' `fit`, `evaluate` and `predict`, the ResNet's call,
    the kNN evaluation, the augmentation layers). It catches the mistakes
    that otherwise run silently on wrong images:

    - images scaled down, to `[0, 1]` or `[-1, 1]`, given with a range whose
      upper bound is above 1, such as the default `(0, 255)`: the model
      would read them as nearly black. The rule: the range's upper bound is
      above 1, every value of the batch is at or below 1, and the batch is
      not constant. Images really in `[0, 255]` never pass it: a
      non-constant batch with every pixel at or below 1 of 255 is black
      frames, every pixel 0 or 1, which no camera or dataset gives, whereas
      every batch of scaled-down images does (whatever its dtype). A
      constant batch (such as zeros, used to build or warm up a model)
      says nothing about the range and is let through;
    - values outside `value_range`, beyond a tolerance of 0.1% of its width
      for float rounding.

    The message reports the batch's minimum and maximum as they are: a
    batch in `[-1, 1]` is named so, with its own remedy.

    It costs one minimum and one maximum over the batch. Symbolic tensors
    (a `KerasTensor`, a tensor of a TensorFlow graph, a JAX tracer, a tensor
    that `torch.compile` traces) have no values and are not checked; an
    empty batch passes.

    Args:
        images: a concrete batch of images: a NumPy array, or an eager
            tensor of TensorFlow, JAX or PyTorch (whatever the backend).
        value_range: tuple `(low, high)`, the range the images are declared
            to be in.
        argument: str, the name of the images in the error message, such as
            `"x"`.
        owner: str or None, what declares `value_range`, in the user's
            words (`"the encoder"`, `"the augmentation"`): the message says
            where the range comes from and where to pass another.

    Raises:
        ValueError: if the images look scaled down for a range above 1, or
            fall outside `value_range`; the message names `value_range`,
            gives the batch's minimum and maximum and the remedy.

    Example:

    ```python
    images = np.random.uniform(0, 1, (8, 32, 32, 3))
    check_value_range(images, (0, 255), "x")  # ValueError: ... value_range
    check_value_range(images * 255, (0, 255), "x")  # passes
    ```
    """
    low, high = _validation.check_value_range(value_range)
    if _is_symbolic(images):
        return
    extrema = _extrema(images)
    if extrema is None:
        return
    message = _value_range_problem(low, high, *extrema, argument, owner)
    if message is not None:
        raise ValueError(message)


def _value_range_problem(low, high, minimum, maximum, argument, owner=None):
    """The error message for a batch with these extrema, or None."""
    received = (
        f"Received: value_range={(low, high)}, {argument}.min()="
        f"{minimum:.6g}, {argument}.max()={maximum:.6g}"
    )
    if high > 1.0 and maximum <= 1.0 and maximum > minimum:
        return (
            _scaled_down_message(low, high, argument, _scale_of(minimum), owner)
            + received
        )
    tolerance = VALUE_RANGE_TOLERANCE * (high - low)
    if minimum < low - tolerance or maximum > high + tolerance:
        return _outside_message(low, high, argument, owner) + received
    return None


# How images at or below 1 were scaled, told by their minimum: "[0, 1]",
# "[-1, 1]", or neither. The tolerance is that of `value_range` for a width
# of 1.
def _scale_of(minimum):
    if minimum >= -VALUE_RANGE_TOLERANCE:
        return "[0, 1]"
    if minimum >= -1.0 - VALUE_RANGE_TOLERANCE:
        return "[-1, 1]"
    return None


def _declared(low, high, owner):
    declared = f"`value_range` is {(low, high)}"
    return f"{declared} (declared by {owner})" if owner else declared


def _scaled_down_message(low, high, argument, scale, owner=None):
    to = f" to {owner}" if owner else ""
    if scale == "[0, 1]":
        observed, remedy = "holds images in [0, 1]", f"Pass `value_range=(0, 1)`{to}"
        rescale = (
            "multiply the images by 255"
            if (low, high) == (0.0, 255.0)
            else f"rescale the images to {(low, high)}"
        )
    elif scale == "[-1, 1]":
        observed, remedy = "holds images in [-1, 1]", f"Pass `value_range=(-1, 1)`{to}"
        rescale = (
            "map the images to [0, 255] with `(images + 1) * 127.5`"
            if (low, high) == (0.0, 255.0)
            else f"rescale the images to {(low, high)}"
        )
    else:
        observed = "has all its values at or below 1"
        remedy = f"Pass the range the images are in as `value_range`{to}"
        rescale = f"rescale the images to {(low, high)}"
    return (
        f"`{argument}` {observed} but {_declared(low, high, owner)}, so they "
        f"would be read as nearly black images. {remedy}, or {rescale}. "
    )


def _outside_message(low, high, argument, owner=None):
    to = f" to {owner}" if owner else ""
    where = f" (declared by {owner})" if owner else ""
    return (
        f"`{argument}` has values outside `value_range`={(low, high)}{where}. "
        f"Pass the range the images are in as `value_range`{to}, or rescale "
        "them to it. "
    )


def _is_symbolic(images):
    if isinstance(images, keras.KerasTensor):
        return True
    tf = sys.modules.get("tensorflow")
    if tf is not None and _is_graph_tensor(tf, images):
        return True
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(images, jax.core.Tracer):
        return True
    torch = sys.modules.get("torch")
    return (
        torch is not None
        and isinstance(images, torch.Tensor)
        and torch.compiler.is_compiling()
    )


def _is_graph_tensor(tf, images):
    return tf.is_tensor(images) and tf.is_symbolic_tensor(images)


def _extrema(images):
    """`(min, max)` of a concrete batch as floats, computed where it lives;
    None when it is empty."""
    package = type(images).__module__.split(".")[0]
    if package not in ("tensorflow", "torch", "jax", "jaxlib"):
        images = np.asarray(images)
    if math.prod(tuple(images.shape)) == 0:
        return None
    if package == "tensorflow":
        tf = sys.modules["tensorflow"]
        return float(tf.reduce_min(images)), float(tf.reduce_max(images))
    return float(images.min()), float(images.max())


def assert_value_range_in_graph(images, value_range, argument):
    """`check_value_range` for a tensor of a TensorFlow graph.

    Adds the two checks as `tf.debugging.Assert` ops that the returned
    tensor depends on, so a `tf.data` pipeline or a `tf.function` fails on
    the first batch out of range with the message of `check_value_range`
    followed by the batch's minimum and maximum. TensorFlow raises it as a
    `tf.errors.InvalidArgumentError` (errors inside a graph have no Python
    type), which `keras_simclr._graph_checks.as_value_errors` turns into the
    `ValueError` of arrays. Under XLA the assertions compile to nothing.

    Args:
        images: a `tf.Tensor` of a graph.
        value_range: tuple `(low, high)`.
        argument: str, the name of the images in the message.

    Returns:
        `images`, with the assertions as control dependencies.
    """
    import tensorflow as tf

    low, high = _validation.check_value_range(value_range)
    minimum = tf.cast(tf.reduce_min(images), "float32")
    maximum = tf.cast(tf.reduce_max(images), "float32")
    empty = tf.equal(tf.size(images), 0)
    received = f"Received: value_range={(low, high)}, "
    reported = ((f"{argument}.min()", minimum), (f"{argument}.max()", maximum))
    assertions = []
    if high > 1.0:
        scaled_down = tf.logical_and(maximum <= 1.0, maximum > minimum)
        # One assertion per scale, so that the message names the one seen.
        in_unit = minimum >= -VALUE_RANGE_TOLERANCE
        in_signed = minimum >= -1.0 - VALUE_RANGE_TOLERANCE
        scales = {
            "[0, 1]": in_unit,
            "[-1, 1]": tf.logical_and(tf.logical_not(in_unit), in_signed),
            None: tf.logical_not(in_signed),
        }
        for scale, condition in scales.items():
            failed = tf.logical_and(scaled_down, condition)
            assertions.append(
                _graph_checks.assertion(
                    tf.logical_or(empty, tf.logical_not(failed)),
                    _scaled_down_message(low, high, argument, scale) + received,
                    reported,
                )
            )
    tolerance = VALUE_RANGE_TOLERANCE * (high - low)
    outside = tf.logical_or(
        minimum < low - tolerance, maximum > high + tolerance
    )
    assertions.append(
        _graph_checks.assertion(
            tf.logical_or(empty, tf.logical_not(outside)),
            _outside_message(low, high, argument) + received,
            reported,
        )
    )
    with tf.control_dependencies(assertions):
        return tf.identity(images)


def validate_image_shape(layer_name, shape):
    """Checks that a (static) shape is a batch of images `(N, H, W, C)`."""
    if len(shape) not in (3, 4):
        raise ValueError(
            f"{layer_name} expects images of shape (batch, height, width, "
            f"channels) or (height, width, channels). Received: "
            f"inputs.shape={tuple(shape)}"
        )


_INPUTS_CHECKED = threading.local()


@contextlib.contextmanager
def inputs_checked():
    """Within it, the layers and the ResNet skip their own input check.

    For a caller that checked the batch itself: the model step that runs the
    augmentation as an XLA cluster checks the images outside it, because
    XLA drops assertions (with a warning per assertion); `predict` and the
    kNN evaluation check the first batch of their data, and the PyTorch
    backend, which runs them eagerly, would otherwise check every batch.
    """
    previous = getattr(_INPUTS_CHECKED, "value", False)
    _INPUTS_CHECKED.value = True
    try:
        yield
    finally:
        _INPUTS_CHECKED.value = previous


def inputs_are_checked():
    """Whether the caller runs inside `inputs_checked()`."""
    return getattr(_INPUTS_CHECKED, "value", False)


def is_outermost_call(layer):
    """Whether `layer` is being called by the user (eagerly, or in a
    `tf.data` map), not from inside a model or another layer: then its
    input is what the user gave."""
    context = _keras_compat.current_call_context()
    return context is None or context.entry_layer is layer


class InputRangeChecks:
    """Checks the images a layer is called on against its `value_range`,
    where the user gives them: the one rule for when a layer checks.

    Mixed into every layer of the library that reads images in a declared
    range (the augmentation layers, `AugmentationPair`, `ResNet`), which
    call `_check_value_range(inputs)` on their input. The check runs:

    - only in the outermost call: a call by the user (eagerly, or in a
      `tf.data` map), not one from inside a model or another layer, so that
      a compiled training step pays nothing (the data reaching a model is
      checked by the model's `fit`);
    - not inside `inputs_checked()`, whose caller checked the batch itself;
    - only when `_depends_on_value_range()` (by default, when the layer
      declares a `value_range`).

    Concrete inputs go through `check_value_range` (a `ValueError`); a tensor
    of a TensorFlow graph, such as a `tf.data` map on any backend, gets the
    same checks as assertions where `checks_graph_inputs` (they become the
    same `ValueError` through `keras_simclr._graph_checks`). JAX tracers are
    not checked.
    """

    # What messages say declares the range (None: the layer's argument).
    value_range_owner = None
    # Layers that run in `tf.data` maps check graph tensors there.
    checks_graph_inputs = True

    def _depends_on_value_range(self):
        """Whether the output changes with `value_range` (then the input's
        range is checked)."""
        return getattr(self, "value_range", None) is not None

    def _checks_inputs(self):
        """Whether a call of this layer checks its input at all now."""
        return not inputs_are_checked() and self._depends_on_value_range()

    def _check_value_range(self, inputs):
        """`inputs`, checked against `value_range` when the rule above says
        so (for a graph tensor, with the assertions as dependencies)."""
        if not self._checks_inputs() or not is_outermost_call(self):
            return inputs
        tf = sys.modules.get("tensorflow")
        if tf is not None and _is_graph_tensor(tf, inputs):
            if not self.checks_graph_inputs:
                return inputs
            return assert_value_range_in_graph(inputs, self.value_range, "inputs")
        check_value_range(
            inputs, self.value_range, "inputs", owner=self.value_range_owner
        )
        return inputs


# === What range a model reads its images in ===


def declared_value_range(layer):
    """The `value_range` that `layer` declares, as `(low, high)` floats, or
    None: the library's augmentation layers and ResNet declare one, and so
    do Keras's own colour layers; a `value_range` of None (no rescaling) or
    of another form declares nothing."""
    value_range = getattr(layer, "value_range", None)
    if value_range is None:
        return None
    try:
        return _validation.check_value_range(value_range)
    except ValueError:
        return None


def inference_value_range(model, name):
    """The range `model` reads images in outside training, and what
    declares it, in the user's words.

    A model that declares a `value_range` itself (the library's ResNet);
    else its `encoder`'s (a pretrainer, a classifier); else that of its
    evaluation transform, the augmentation it was trained with, whose
    inference call keeps the range (a pretrainer's augmentation, a
    classifier's `evaluation_transform`).

    Args:
        model: a Keras layer or model.
        name: what the user calls it in messages (`"the encoder"`,
            `"the teacher"`).

    Returns:
        `(value_range, owner)`: `(low, high)` and a phrase such as
        `"the teacher's encoder"`, or `(None, None)` when nothing declares
        a range.
    """
    own = declared_value_range(model)
    if own is not None:
        return own, name
    encoder = getattr(model, "encoder", None)
    augmentation = getattr(model, "augmentation", None)
    augmentation_range = None
    if isinstance(augmentation, keras.layers.Layer):
        augmentation_range = declared_value_range(augmentation)
    if isinstance(encoder, keras.layers.Layer):
        declared = declared_value_range(encoder)
        if declared is not None:
            # A pretrainer's two ranges agree (checked when it is made); a
            # new range goes to both.
            both = " and augmentation" if augmentation_range == declared else ""
            return declared, f"{name}'s encoder{both}"
    if augmentation_range is not None:
        return augmentation_range, f"{name}'s augmentation"
    transform = getattr(model, "evaluation_transform", None)
    if isinstance(transform, keras.layers.Layer):
        declared = declared_value_range(transform)
        if declared is not None:
            return declared, f"{name}'s evaluation_transform"
    return None, None


def check_input_range(x, value_range, argument, owner=None, batch_size=None):
    """`check_value_range` on the first batch of what a model is given.

    The entry points that take images (`predict`, `fit` and `evaluate` of
    the models, the kNN evaluation) check their data through it before any
    work starts: arrays and tensors on their first `batch_size` images
    (32 when None), a `tf.data` dataset on its first element (which it
    reads), a dict of views view by view. Other inputs (generators, a
    `keras.utils.PyDataset`, a `tf.distribute` dataset) are not checked.

    Args:
        x: the data: an array, a tensor, a dict of them, or a `tf.data`
            dataset (yielding images, `(images, labels)`...).
        value_range: `(low, high)`, or None to check nothing.
        argument: the name of `x` in messages (`"x"`, `"train_data[0]"`).
        owner: what declares `value_range`, in the user's words.
        batch_size: images checked of an array, None for 32.

    Raises:
        ValueError: as `check_value_range`; for a `tf.data` pipeline whose
            augmentation layers refused the first batch, that layer's
            message as a ValueError.
    """
    if value_range is None or x is None:
        return
    if _data_checks.is_tf_dataset(x):
        with _graph_checks.as_value_errors():
            element = _data_checks.first_batch(x)
        if element is None:
            return
        x = _data_checks.split_element(element)[0]
    if isinstance(x, dict):
        for key, images in x.items():
            check_input_range(
                images, value_range, f"{argument}['{key}']", owner, batch_size
            )
        return
    if not _data_checks.is_array_like(x):
        return
    images = x[: batch_size or 32]
    if isinstance(images, list):
        images = np.asarray(images)
    dtype = keras.backend.standardize_dtype(images.dtype)
    if not ("float" in dtype or "int" in dtype):
        return
    check_value_range(images, value_range, argument, owner)


def check_views_match(augmentation, readers):
    """Refuses an augmentation whose views are in another range than the
    models that read them.

    An augmentation layer returns its views in its own `value_range`; the
    library's ResNet maps its `value_range` to `[0, 1]`. With
    `SimCLRAugmentation(value_range=(0, 1))` in front of a
    `ResNet(value_range=(0, 255))`, the encoder would train on views in
    `[0, 0.0039]`. Checked where both ranges are declared, when the model
    is made.

    Args:
        augmentation: the augmentation layer (or pair), or None.
        readers: dict from the argument that reads the views (`"encoder"`,
            `"teacher"`) to `(value_range, owner)`, as
            `inference_value_range` gives.

    Raises:
        ValueError: naming both arguments and both ranges.
    """
    views = declared_value_range(augmentation) if augmentation is not None else None
    if views is None:
        return
    for value_range, owner in readers.values():
        if value_range is None or tuple(value_range) == views:
            continue
        low, high = value_range
        span = tuple((v - low) / (high - low) for v in views)
        if span[1] - span[0] < 0.1:
            effect = "nearly constant, black images"
        elif span[0] < -0.1 or span[1] > 1.1:
            effect = "values far outside the range it was built for"
        else:
            effect = "images on another scale"
        # "the teacher's encoder" is received as "teacher's encoder".
        received = owner[len("the "):] if owner.startswith("the ") else owner
        raise ValueError(
            f"`augmentation` makes views in value_range={views}, but "
            f"{owner} reads images in value_range={value_range}: mapped to "
            f"that range, the views would span [{span[0]:.3g}, "
            f"{span[1]:.3g}] instead of [0, 1], {effect}. Pass the same "
            f"`value_range` to both: `value_range={views}` to {owner} too, "
            f"or `value_range={value_range}` to the augmentation, and give "
            "images in that range. Received: augmentation "
            f"value_range={views}, {received} value_range={value_range}"
        )


class ImageDataLayer(InputRangeChecks, DataLayer):
    """Base of the augmentation layers: a `DataLayer` with a seed and range.

    Subclasses implement `augment(images)` on a 4D float32 batch with values in
    `[0, 1]`, using only `self.backend` ops; this base class handles unbatched
    inputs, the `value_range`, `training=False` and dtype. Images are
    channels-last, `(batch, height, width, channels)` or
    `(height, width, channels)`.

    A subclass whose output shape differs from its input, or which does
    something with `training=False`, overrides `call` and reuses
    `_map_batch(inputs, fn)`. The layers name `self.backend.numpy` `bnp`.

    In training mode, a layer called directly (not from inside a model or
    another layer) checks that its input lies in `value_range`: with
    `check_value_range` on concrete inputs, with graph assertions in a
    `tf.data` map. A subclass whose output does not depend on `value_range`
    returns False from `_depends_on_value_range` and skips the check.
    """

    # False for a deterministic layer (`CenterCrop`): it then has no seed
    # generator, so it holds no random state and, being made, draws no seed
    # from the global random state (which would change the initial weights
    # of the layers made after it).
    draws_at_random = True

    def __init__(self, value_range=(0, 255), seed=None, **kwargs):
        value_range = _validation.check_value_range(value_range)
        seed = _validation.check_seed(seed)
        super().__init__(**kwargs)
        self.value_range = value_range
        self.seed = seed
        if self.draws_at_random:
            self.generator = keras.random.SeedGenerator(seed)

    def _random_seed(self):
        return _keras_compat.data_layer_seed(self)

    def _uniform(self, shape, minval=0.0, maxval=1.0):
        """Float32 uniform draws in `[minval, maxval)` from the layer's seed."""
        return self.backend.random.uniform(
            shape,
            minval=minval,
            maxval=maxval,
            dtype="float32",
            seed=self._random_seed(),
        )

    def call(self, inputs, training=True):
        if not training:
            return self.backend.cast(inputs, self.compute_dtype)
        inputs = self._check_value_range(inputs)
        return self._map_batch(inputs, self._augment_in_unit_range)

    def _map_batch(self, inputs, fn):
        """Applies `fn` to `inputs` as a 4D float32 batch.

        Adds and removes the batch axis of a single image, and casts back to
        the layer's compute dtype. The input goes to float32 directly (not
        through a `bfloat16` compute dtype, which would round it).
        """
        validate_image_shape(self.__class__.__name__, inputs.shape)
        unbatched = len(inputs.shape) == 3
        images = inputs
        if unbatched:
            images = self.backend.numpy.expand_dims(inputs, 0)
        # Colour arithmetic runs in float32 whatever the layer's dtype policy.
        images = self.backend.cast(images, "float32")
        images = fn(images)
        images = self.backend.cast(images, self.compute_dtype)
        if unbatched:
            images = self.backend.numpy.squeeze(images, 0)
        return images

    def _augment_in_unit_range(self, images):
        low, high = self.value_range
        if (low, high) != (0.0, 1.0):
            images = (images - low) / (high - low)
        images = self.augment(images)
        if (low, high) != (0.0, 1.0):
            images = images * (high - low) + low
        return images

    def augment(self, images):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"value_range": self.value_range, "seed": self.seed})
        return config
