from keras_simclr.models.resnet import ResNet
from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer
