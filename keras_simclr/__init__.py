"""keras_simclr: SimCLR v1/v2 self-supervised learning for Keras 3.

Runs unchanged on the TensorFlow, JAX and PyTorch backends.
"""

# Before anything imports TensorFlow: it reads this setting once, at import.
from keras_simclr import cpu_defaults as _cpu_defaults

_cpu_defaults.enable_onednn()

from keras_simclr import callbacks  # noqa: E402
from keras_simclr import config
from keras_simclr import distribute
from keras_simclr import evaluation
from keras_simclr import layers
from keras_simclr import losses
from keras_simclr import models
from keras_simclr import objectives
from keras_simclr import optimizers
from keras_simclr import visualization
from keras_simclr.version import __version__
from keras_simclr.export import export_saved_model


def __getattr__(name):
    # `keras_simclr.data` builds tf.data pipelines; it is imported on first
    # use, so that `import keras_simclr` needs no TensorFlow on JAX or PyTorch.
    if name == "data":
        import importlib

        return importlib.import_module("keras_simclr.data")
    raise AttributeError(f"module 'keras_simclr' has no attribute {name!r}")
