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
`tests/layers/data_layer_test.py` guards it on every backend.
"""

import numbers

import keras

try:
    from keras.src.layers.preprocessing.data_layer import DataLayer
except ImportError as error:  # pragma: no cover - depends on the Keras version
    raise ImportError(
        "keras_simclr's augmentation layers need Keras's `DataLayer` "
        "(keras.src.layers.preprocessing.data_layer), present in Keras 3.15. "
        f"Installed: keras=={keras.__version__}. Install a supported version "
        "with `pip install 'keras>=3.15,<3.16'`."
    ) from error


def validate_value_range(value_range, allow_none=False):
    """Returns `value_range` as a tuple of two floats, or raises ValueError.

    With `allow_none=True`, `None` (no range, no rescaling) is returned as is.
    """
    if allow_none and value_range is None:
        return None
    if (
        not isinstance(value_range, (tuple, list))
        or len(value_range) != 2
        or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool)
            for v in value_range
        )
        or not value_range[0] < value_range[1]
    ):
        none = "None or " if allow_none else ""
        raise ValueError(
            f"`value_range` must be {none}a tuple `(low, high)` of two numbers "
            f"with low < high. Received: value_range={value_range}"
        )
    return (float(value_range[0]), float(value_range[1]))


def validate_probability(name, value):
    """Returns `value` as a float in [0, 1], or raises ValueError."""
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(
            f"`{name}` must be a probability in [0, 1]. "
            f"Received: {name}={value}"
        )
    return float(value)


def validate_interval(name, value, lower=None, upper=None, strict_lower=False):
    """Returns `value` as a tuple `(low, high)` of floats, or raises ValueError.

    `low <= high` is required, and both ends must lie in `[lower, upper]`
    (`(lower, upper]` with `strict_lower=True`); `None` means unbounded.
    """
    valid = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for v in value
        )
        and value[0] <= value[1]
    )
    if valid and lower is not None:
        valid = value[0] > lower if strict_lower else value[0] >= lower
    if valid and upper is not None:
        valid = value[1] <= upper
    if not valid:
        opening = "(" if strict_lower else "["
        bounds = (
            f" inside {opening}{'-inf' if lower is None else lower}, "
            f"{'inf' if upper is None else upper}]"
        )
        raise ValueError(
            f"`{name}` must be a tuple `(low, high)` of two numbers with "
            f"low <= high{bounds}. Received: {name}={value}"
        )
    return (float(value[0]), float(value[1]))


def validate_seed(seed):
    """Returns `seed` (an int or None), or raises ValueError."""
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(
            f"`seed` must be an integer or None. Received: seed={seed}"
        )
    return seed


def validate_image_shape(layer_name, shape):
    """Checks that a (static) shape is a batch of images `(N, H, W, C)`."""
    if len(shape) not in (3, 4):
        raise ValueError(
            f"{layer_name} expects images of shape (batch, height, width, "
            f"channels) or (height, width, channels). Received: "
            f"inputs.shape={tuple(shape)}"
        )


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
    """

    def __init__(self, value_range=(0, 255), seed=None, **kwargs):
        value_range = validate_value_range(value_range)
        seed = validate_seed(seed)
        super().__init__(**kwargs)
        self.value_range = value_range
        self.seed = seed
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
