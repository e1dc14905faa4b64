"""The deprecation of the `keras.losses.Loss` classes of this package, and
the names that moved to `keras_simclr.objectives.momentum`."""

import importlib
import warnings


def moved_to_momentum(module, names):
    """A module `__getattr__` that finds `names`, which moved to
    `keras_simclr.objectives.momentum`, there on first use (imported late:
    the objectives import the losses)."""

    def __getattr__(name):
        if name in names:
            momentum = importlib.import_module("keras_simclr.objectives.momentum")
            return getattr(momentum, name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


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
