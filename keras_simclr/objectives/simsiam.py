"""SimSiam (Chen & He, 2021): a prediction head and a stop-gradient, no
negatives and no momentum encoder."""

import keras

from keras_simclr.losses.simsiam import simsiam
from keras_simclr.objectives._prediction import PredictionMixin
from keras_simclr.objectives.base import SimilarityTrackingObjective


@keras.saving.register_keras_serializable(package="keras_simclr.objectives")
class SimSiam(PredictionMixin, SimilarityTrackingObjective):
    """SimSiam, as its Algorithm 1: the prediction `p` of each view
    regresses onto the projection `z` of the other, with the gradient
    stopped on `z`:

        L = D(p_a, stopgrad(z_b)) / 2 + D(p_b, stopgrad(z_a)) / 2,
        D(p, z) = -cos(p, z)

    (`keras_simclr.losses.simsiam`).

    Args:
        prediction_head: the predictor; `None` for
            `PredictionHead(hidden_dim=512)`, the paper's bottleneck.

    References:
        - [Chen & He, 2021](https://arxiv.org/abs/2011.10566), SimSiam.
    """

    key = "simsiam"
    loss_metric_name = "simsiam_loss"
    # Each image's loss is the agreement of its own two views.
    couples_images = False
    default_predictor_dim = 512

    def __init__(self, prediction_head=None, **kwargs):
        super().__init__(**kwargs)
        self._init_prediction_head(prediction_head)

    def compute_loss(self, outputs, labels=None, training=True):
        loss = simsiam(outputs["prediction"], outputs["projection"])
        return self.record(loss, outputs)
