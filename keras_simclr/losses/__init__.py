"""Self-supervised objectives, each a function and a `keras.losses.Loss`."""

from keras_simclr.losses.nt_xent import NTXent
from keras_simclr.losses.nt_xent import contrastive_metrics
from keras_simclr.losses.nt_xent import nt_xent
