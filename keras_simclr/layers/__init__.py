"""Keras layers: SimCLR augmentations and heads."""

from keras_simclr.layers.prediction_head import PredictionHead
from keras_simclr.layers.projection_head import ProjectionHead
from keras_simclr.layers.random_color_distortion import RandomColorDistortion
from keras_simclr.layers.random_gaussian_blur import RandomGaussianBlur
from keras_simclr.layers.random_resized_crop import RandomResizedCrop
from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
