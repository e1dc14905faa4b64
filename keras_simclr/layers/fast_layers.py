"""A copy of a user's encoder with the library's faster layers."""

import keras

from keras_simclr import _keras_compat
from keras_simclr.layers.channels_last_conv2d import ChannelsLastConv2D
from keras_simclr.layers.fused_batch_normalization import FusedBatchNormalization

# Keras's layer -> the subclass that computes the same, faster.
FASTER_LAYERS = {
    keras.layers.BatchNormalization: FusedBatchNormalization,
    keras.layers.Conv2D: ChannelsLastConv2D,
}


def with_fast_layers(model):
    """A copy of `model` with this library's faster layers in place.

    For an encoder that was not built with this library, such as a
    `keras.applications` model: every `keras.layers.BatchNormalization`
    (nested models included) becomes a `FusedBatchNormalization`, every
    `keras.layers.Conv2D` a `ChannelsLastConv2D`, each with the same config;
    every other layer is cloned as it is, and all weights (moving statistics
    included) are copied. `model` itself is left as it was. The copy
    computes the same function, faster on TensorFlow and PyTorch (the
    library's own ResNet is built with these layers already).

    Args:
        model: a functional or `Sequential` Keras model.

    Returns:
        A new functional (or `Sequential`) model with the same weights; a
        subclass of the functional model, such as this library's `ResNet`,
        comes back as a plain functional model.

    Raises:
        ValueError: if `model` is a subclassed model, whose layers cannot be
            replaced from outside; build it with `FusedBatchNormalization`
            instead.

    Example:

    ```python
    encoder = keras.applications.ResNet50(weights=None, include_top=False,
                                          pooling="avg")
    encoder = keras_simclr.layers.with_fast_layers(encoder)
    ```
    """
    if not isinstance(model, keras.Model) or not (
        isinstance(model, keras.Sequential) or _is_functional(model)
    ):
        raise ValueError(
            "`with_fast_layers` takes a functional or Sequential Keras model; "
            "a subclassed model's layers cannot be replaced from outside "
            "(create its layers as `keras_simclr.layers.FusedBatchNormalization` "
            "and `keras_simclr.layers.ChannelsLastConv2D`). Received: "
            f"model of type {type(model).__name__}"
        )

    def clone(layer):
        faster = FASTER_LAYERS.get(type(layer), type(layer))
        return faster.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _is_functional(model):
    # `keras.Model(inputs, outputs)` and its subclasses that keep the
    # functional graph (such as keras_simclr's ResNet).
    return _keras_compat.is_functional(model)
