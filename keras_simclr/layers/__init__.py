"""Keras layers: SimCLR augmentations and heads."""

from keras_simclr.layers.augmentation_pair import AugmentationPair
from keras_simclr.layers.center_crop import CenterCrop
from keras_simclr.layers.channels_last_conv2d import ChannelsLastConv2D
from keras_simclr.layers.fast_layers import with_fast_layers
from keras_simclr.layers.fused_batch_normalization import (
    FusedBatchNormalization,
)
from keras_simclr.layers.prediction_head import PredictionHead
from keras_simclr.layers.projection_head import ProjectionHead
from keras_simclr.layers.random_color_distortion import RandomColorDistortion
from keras_simclr.layers.random_gaussian_blur import RandomGaussianBlur
from keras_simclr.layers.random_resized_crop import RandomResizedCrop
from keras_simclr.layers.random_solarization import RandomSolarization
from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
