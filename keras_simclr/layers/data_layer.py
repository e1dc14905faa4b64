"""The one place that reaches into Keras's private API.

Keras's own image-augmentation layers run eagerly, inside a compiled model on
any backend, and inside a `tf.data` pipeline on any backend. They do it through
the base class `DataLayer`: inside a `tf.data` graph its `__call__` switches
`self.backend` to TensorFlow, so a layer whose `call` uses `self.backend.numpy`
/ `self.backend.random` (instead of `keras.ops` / `keras.random`) works there
too. `keras.ops` itself fails inside `tf.data.Dataset.map` on the JAX and torch
backends.

`DataLayer` is not exported by Keras, so it is imported here alone; the Keras
version range in `pyproject.toml` is the one this was tested with, and
`tests/layers/data_layer_test.py` guards it on every backend. So is the
layer call context (`global_state`'s `"current_call_ctx"`), read to tell a
call by the user (whose input range is checked) from a call inside a model.
"""

import contextlib
import math
import re
import sys
import threading

import keras
import numpy as np

from keras_simclr import _validation

try:
    from keras.src.backend.common import global_state
    from keras.src.layers.preprocessing.data_layer import DataLayer
except ImportError as error:  # pragma: no cover - depends on the Keras version
    raise ImportError(
        "keras_simclr's augmentation layers need Keras's `DataLayer` "
        "(keras.src.layers.preprocessing.data_layer) and its call context "
        "(keras.src.backend.common.global_state), present in Keras 3.15. "
        f"Installed: keras=={keras.__version__}. Install a supported version "
        "with `pip install 'keras>=3.15,<3.16'`."
    ) from error


# Values this far outside `value_range`, as a fraction of its width, are
# float rounding (a resize or a colour change of in-range images), not images
# in another range.
VALUE_RANGE_TOLERANCE = 1e-3


def check_value_range(images, value_range, argument):
    """Raises ValueError if a batch of images is not in `value_range`.

    Catches the two mistakes that otherwise train silently on wrong images:

    - images in `[0, 1]` given with a range whose upper bound is above 1,
      such as the default `(0, 255)`: the layers would read them as nearly
      black. Real images in `[0, 255]` never have all their values at or
      below 1, except a constant batch (such as zeros), which is let
      through;
    - values outside `value_range`, beyond a tolerance of 0.1% of its width
      for float rounding.

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

    Raises:
        ValueError: if the images look like `[0, 1]` images for a range
            above 1, or fall outside `value_range`; the message names
            `value_range`, gives the batch's minimum and maximum and the
            remedy.

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
    message = _value_range_problem(low, high, *extrema, argument)
    if message is not None:
        raise ValueError(message)


def _value_range_problem(low, high, minimum, maximum, argument):
    """The error message for a batch with these extrema, or None."""
    received = (
        f"Received: value_range={(low, high)}, {argument}.min()="
        f"{minimum:.6g}, {argument}.max()={maximum:.6g}"
    )
    if high > 1.0 and maximum <= 1.0 and maximum > minimum:
        return _unit_range_message(low, high, argument) + received
    tolerance = VALUE_RANGE_TOLERANCE * (high - low)
    if minimum < low - tolerance or maximum > high + tolerance:
        return _outside_message(low, high, argument) + received
    return None


def _unit_range_message(low, high, argument):
    scale = (
        "multiply the images by 255"
        if (low, high) == (0.0, 255.0)
        else f"rescale the images to {(low, high)}"
    )
    return (
        f"`{argument}` holds images in [0, 1] but `value_range` is "
        f"{(low, high)}, so they would be read as nearly black images. "
        f"Pass `value_range=(0, 1)`, or {scale}. "
    )


def _outside_message(low, high, argument):
    return (
        f"`{argument}` has values outside `value_range`={(low, high)}. "
        "Pass the range the images are in as `value_range`, or rescale "
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
    type). Under XLA the assertions compile to nothing.

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
    received = (
        f"Received: value_range={(low, high)}, {argument}.min() and "
        f"{argument}.max():"
    )
    assertions = []
    if high > 1.0:
        in_unit_range = tf.logical_and(maximum <= 1.0, maximum > minimum)
        assertions.append(
            tf.debugging.Assert(
                tf.logical_or(empty, tf.logical_not(in_unit_range)),
                [
                    _unit_range_message(low, high, argument) + received,
                    minimum,
                    maximum,
                ],
            )
        )
    tolerance = VALUE_RANGE_TOLERANCE * (high - low)
    outside = tf.logical_or(
        minimum < low - tolerance, maximum > high + tolerance
    )
    assertions.append(
        tf.debugging.Assert(
            tf.logical_or(empty, tf.logical_not(outside)),
            [
                _outside_message(low, high, argument) + received,
                minimum,
                maximum,
            ],
        )
    )
    with tf.control_dependencies(assertions):
        return tf.identity(images)


# What TensorFlow reports for a failed assertion of
# `assert_value_range_in_graph`: the message, then the minimum and maximum.
_GRAPH_ASSERTION = re.compile(
    r"assertion failed: \[(?P<message>`(?P<argument>[^`]+)` "
    r"(?:holds images|has values).*?)"
    r"(?P=argument)\.min\(\) and (?P=argument)\.max\(\):\] "
    r"\[(?P<min>[^\]]+)\] \[(?P<max>[^\]]+)\]",
    re.DOTALL,
)


def value_range_error_from_graph(error):
    """The ValueError of `check_value_range` for a TensorFlow error raised by
    `assert_value_range_in_graph`, or None for any other error.

    A `tf.data` pipeline whose map calls an augmentation layer on images out
    of range fails with a `tf.errors.InvalidArgumentError` when it is
    iterated; code that reads the first batch itself (such as a model's
    `fit`) can raise this ValueError instead, as for arrays.

    Args:
        error: an exception.

    Returns:
        A ValueError with the message `check_value_range` gives for the same
        batch, or None.
    """
    match = _GRAPH_ASSERTION.search(str(error))
    if match is None:
        return None
    argument = match.group("argument")
    return ValueError(
        f"{match.group('message')}{argument}.min()={match.group('min')}, "
        f"{argument}.max()={match.group('max')}"
    )


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
    """Within it, the layers skip their own input check.

    For a caller that checked the batch itself: the model step that runs the
    augmentation as an XLA cluster checks the images outside it, because
    XLA drops assertions (with a warning per assertion).
    """
    previous = getattr(_INPUTS_CHECKED, "value", False)
    _INPUTS_CHECKED.value = True
    try:
        yield
    finally:
        _INPUTS_CHECKED.value = previous


class ImageDataLayer(DataLayer):
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
        return self._get_seed_generator(self.backend._backend)

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

    def _depends_on_value_range(self):
        """Whether the output changes with `value_range` (then the input's
        range is checked)."""
        return True

    def _check_value_range(self, inputs):
        """Checks that `inputs` lie in `value_range`, when it matters.

        Only in the outermost layer call: a call by the user (eagerly, or in
        a `tf.data` map), not one from inside a model or another layer, so
        that a compiled training step pays nothing; the data reaching a
        model is checked by the model's `fit`. Concrete inputs go through
        `check_value_range` (ValueError); a TensorFlow graph, such as a
        `tf.data` map on any backend, gets the same checks as assertions.
        JAX tracers are not checked.
        """
        if (
            getattr(_INPUTS_CHECKED, "value", False)
            or not self._depends_on_value_range()
            or not self._is_outermost_call()
        ):
            return inputs
        tf = sys.modules.get("tensorflow")
        if tf is not None and _is_graph_tensor(tf, inputs):
            return assert_value_range_in_graph(
                inputs, self.value_range, "inputs"
            )
        check_value_range(inputs, self.value_range, "inputs")
        return inputs

    def _is_outermost_call(self):
        context = global_state.get_global_attribute("current_call_ctx")
        return context is None or context.entry_layer is self

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
