"""The prediction head that BYOL and SimSiam put on the online branch."""

import keras

from keras_simclr import _validation
from keras_simclr.layers.prediction_head import PredictionHead


class PredictionMixin:
    """An online prediction head `q` on the projections: made at `attach`
    (default width `default_predictor_dim`), its output is `prediction`."""

    default_predictor_dim = None

    def _init_prediction_head(self, prediction_head):
        self.prediction_head = _validation.check_layer(
            prediction_head, "prediction_head", allow_none=True
        )

    def attach(self, encoder, projection_head):
        super().attach(encoder, projection_head)
        if self.prediction_head is None:
            self.prediction_head = PredictionHead(
                hidden_dim=self.default_predictor_dim, name="prediction_head"
            )

    def networks(self):
        return super().networks() + [self.prediction_head]

    def build(self, view_shape, feature_shape, projection_shape):
        super().build(view_shape, feature_shape, projection_shape)
        if not self.prediction_head.built:
            self.prediction_head.build(projection_shape)

    def add_outputs(self, views, outputs, training):
        outputs = super().add_outputs(views, outputs, training)
        prediction = self.prediction_head(outputs["projection"], training=training)
        return {**outputs, "prediction": prediction}

    def get_config(self):
        return {
            **super().get_config(),
            "prediction_head": keras.saving.serialize_keras_object(
                self.prediction_head
            ),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("prediction_head") is not None:
            config["prediction_head"] = keras.saving.deserialize_keras_object(
                config["prediction_head"]
            )
        return cls(**config)
