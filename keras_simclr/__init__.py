"""keras_simclr: SimCLR v1/v2 self-supervised learning for Keras 3.

Runs unchanged on the TensorFlow, JAX and PyTorch backends.
"""

from keras_simclr import callbacks
from keras_simclr import distribute
from keras_simclr import layers
from keras_simclr import losses
from keras_simclr import models
from keras_simclr import optimizers
from keras_simclr.version import __version__
