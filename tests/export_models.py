"""Registered models for tests/export_test.py.

They live in a module of their own because `export_saved_model` loads the
model again in a TensorFlow subprocess on the JAX and PyTorch backends: the
subprocess imports this module (named in the saved config) to find them.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_simclr_tests")
class TinyClassifier(keras.Model):
    """A convnet whose `export_outputs` gives features and logits.

    Its input size is open, so exporting it needs `image_size`.
    """

    def __init__(self, num_classes=3, filters=4, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.filters = filters
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", name="conv")
        self.norm = keras.layers.BatchNormalization(name="norm")
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.classifier = keras.layers.Dense(num_classes, name="classifier")

    def _forward(self, images, training):
        hidden = self.conv(ops.cast(images, self.compute_dtype) / 255.0)
        hidden = ops.relu(self.norm(hidden, training=training))
        features = self.pool(hidden)
        return {"features": features, "logits": self.classifier(features)}

    def call(self, images, training=None):
        return self._forward(images, training)["logits"]

    def export_outputs(self, images):
        return self._forward(images, training=False)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "filters": self.filters})
        return config


@keras.saving.register_keras_serializable(package="keras_simclr_tests")
class Unloadable(keras.layers.Layer):
    """Saves a config that its constructor refuses, so it cannot be loaded."""

    def call(self, inputs):
        return inputs

    def get_config(self):
        config = super().get_config()
        config["not_an_argument"] = True
        return config
