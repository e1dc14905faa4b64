"""Supervised contrastive learning (Khosla et al., 2020)."""

import keras

from keras_simclr import _validation
from keras_simclr.losses.supervised_contrastive import supervised_contrastive
from keras_simclr.objectives.base import SimilarityTrackingObjective


@keras.saving.register_keras_serializable(package="keras_simclr.objectives")
class SupCon(SimilarityTrackingObjective):
    """SupCon: every view of the anchor's class is a positive.

    NT-Xent with labels: for anchor `i` among the `2N` views of the global
    batch, `P(i)` the other views whose image has its label,

        l(i) = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip / t) / sum_{a != i} exp(s_ia / t) )

    with `s` the cosine of the projections
    (`keras_simclr.losses.supervised_contrastive`, the paper's L_out^sup).
    `fit()` needs `(images, labels)`.

    Args:
        temperature: positive float; `None` for 0.1.

    References:
        - [Khosla et al., 2020](https://arxiv.org/abs/2004.11362).
    """

    key = "supcon"
    loss_metric_name = "supcon_loss"
    needs_labels = True

    def __init__(self, temperature=None, **kwargs):
        super().__init__(**kwargs)
        self.temperature = _validation.check_positive_number(
            0.1 if temperature is None else temperature, "temperature"
        )

    def compute_loss(self, outputs, labels=None, training=True):
        if labels is None:
            raise ValueError(
                "objective='supcon' needs labels: fit on (images, labels). "
                "Received: no labels"
            )
        z_a, z_b = self.split_views(outputs["projection"])
        loss = supervised_contrastive(
            z_a, z_b, labels, temperature=self.temperature, cross_replica=True
        )
        return self.record(loss, outputs)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
