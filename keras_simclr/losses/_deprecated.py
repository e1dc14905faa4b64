"""The deprecation of the `keras.losses.Loss` classes of this package."""

import warnings


def warn_deprecated_loss(name, objective, function):
    """Warns, at the caller's line, that the loss class `name` is
    deprecated, naming the objective and the loss function to use."""
    warnings.warn(
        f"keras_simclr.losses.{name} is deprecated and will be removed in a "
        "future release: train with SimCLRPretrainer(objective="
        f"keras_simclr.objectives.{objective}(...)), or call the loss "
        f"function keras_simclr.losses.{function}.",
        DeprecationWarning,
        stacklevel=3,
    )
