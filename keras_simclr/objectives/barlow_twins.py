"""Barlow Twins (Zbontar et al., 2021): the cross-correlation of the two
views' projections driven to the identity."""

import keras

from keras_simclr import _validation
from keras_simclr.losses.barlow_twins import barlow_twins
from keras_simclr.objectives.base import SimilarityTrackingObjective


@keras.saving.register_keras_serializable(package="keras_simclr.objectives")
class BarlowTwins(SimilarityTrackingObjective):
    """Barlow Twins, as its Algorithm 1: each branch's projections are
    standardised over the global batch, `C` is their `(D, D)`
    cross-correlation, and

        L = sum_i (1 - C_ii)^2 + lambda_offdiag * sum_{i != j} C_ij^2

    (`keras_simclr.losses.barlow_twins`; under several replicas the
    statistics are those of the global batch). The loss is the official
    code's; its gradient is the true gradient of the global loss, where the
    official multi-GPU gradient is `1 / world_size` of it (its `all_reduce`
    of `C` is not differentiated and DDP averages the processes'
    gradients; see `keras_simclr.losses.barlow_twins`).

    Args:
        lambda_offdiag: weight of the redundancy term; 5e-3, the paper's.

    References:
        - [Zbontar et al., 2021](https://arxiv.org/abs/2103.03230).
    """

    key = "barlow_twins"
    loss_metric_name = "barlow_twins_loss"

    def __init__(self, lambda_offdiag=5e-3, **kwargs):
        super().__init__(**kwargs)
        self.lambda_offdiag = _validation.check_number(
            lambda_offdiag, "lambda_offdiag", minimum=0
        )

    def compute_loss(self, outputs, labels=None, training=True):
        z_a, z_b = self.split_views(outputs["projection"])
        loss = barlow_twins(
            z_a, z_b, lambda_offdiag=self.lambda_offdiag, cross_replica=True
        )
        return self.record(loss, outputs)

    def get_config(self):
        return {**super().get_config(), "lambda_offdiag": self.lambda_offdiag}
