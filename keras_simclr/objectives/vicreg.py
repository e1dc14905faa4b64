"""VICReg (Bardes et al., 2022): invariance, variance and covariance terms."""

import keras

from keras_simclr import _validation
from keras_simclr.losses.vicreg import vicreg
from keras_simclr.objectives.base import SimilarityTrackingObjective


@keras.saving.register_keras_serializable(package="keras_simclr.objectives")
class VICReg(SimilarityTrackingObjective):
    """VICReg, as its Algorithm 1 (eq. 6):

        L = invariance_weight * mse(z_a, z_b)
            + variance_weight * (v(z_a) + v(z_b))
            + covariance_weight * (c(z_a) + c(z_b))

    with `v` the hinge on each dimension's standard deviation over the
    global batch and `c` the squared off-diagonal covariances
    (`keras_simclr.losses.vicreg`).

    Args:
        invariance_weight: weight of the invariance term (the paper's 25).
        variance_weight: weight of the variance term (the paper's 25).
        covariance_weight: weight of the covariance term (the paper's 1).

    References:
        - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906).
    """

    key = "vicreg"
    loss_metric_name = "vicreg_loss"

    def __init__(
        self,
        invariance_weight=25.0,
        variance_weight=25.0,
        covariance_weight=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.invariance_weight = _validation.check_number(
            invariance_weight, "invariance_weight", minimum=0
        )
        self.variance_weight = _validation.check_number(
            variance_weight, "variance_weight", minimum=0
        )
        self.covariance_weight = _validation.check_number(
            covariance_weight, "covariance_weight", minimum=0
        )

    def compute_loss(self, outputs, labels=None, training=True):
        z_a, z_b = self.split_views(outputs["projection"])
        loss = vicreg(
            z_a,
            z_b,
            invariance_weight=self.invariance_weight,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
            cross_replica=True,
        )
        return self.record(loss, outputs)

    def get_config(self):
        return {
            **super().get_config(),
            "invariance_weight": self.invariance_weight,
            "variance_weight": self.variance_weight,
            "covariance_weight": self.covariance_weight,
        }
