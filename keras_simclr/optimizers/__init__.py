"""SimCLR's optimizer (LARS) and learning rate schedule."""

from keras_simclr.optimizers.lars import DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY
from keras_simclr.optimizers.lars import LARS
from keras_simclr.optimizers.schedules import WarmupCosineDecay
from keras_simclr.optimizers.schedules import scale_learning_rate
