from keras_simclr.models.resnet import ResNet
from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer
from keras_simclr.models.simclr_classifier import SimCLRClassifier
from keras_simclr.models.simclr_distiller import SimCLRDistiller
from keras_simclr.models.task import Task
from keras_simclr.models import official
from keras_simclr.models.official import load_official
