"""BYOL (Grill et al., 2020): the online network predicts the momentum
target's projection of the other view."""

import keras

from keras_simclr.losses.byol import byol
from keras_simclr.objectives._prediction import PredictionMixin
from keras_simclr.objectives.momentum import MomentumObjective


@keras.saving.register_keras_serializable(package="keras_simclr.objectives")
class BYOL(PredictionMixin, MomentumObjective):
    """BYOL, as its Algorithm 1:

    1. before the step, the target (encoder and head's momentum copy)
       moves: `target = m * target + (1 - m) * online`, `m` rising from
       `momentum` to 1 along a cosine schedule when
       `momentum_schedule_steps` is set (below);
    2. the online branch projects each view and predicts with the
       prediction head `q`; the target projects each view, without
       gradient;
    3. the loss is the symmetrised `2 - 2 cos(q(z_a), t_b) + 2 - 2 cos(q(z_b), t_a)`,
       averaged over the images (`keras_simclr.losses.byol`).

    The schedule is the official code's, step for step. With `K =
    momentum_schedule_steps` it is `tau_k = 1 - (1 - momentum) * (cos(pi *
    k / K) + 1) / 2`, and BYOL's code (`byol_experiment.py`,
    `_update_fn`) moves the target after the optimizer's update of step
    `k` (counting from 0), with `tau_k`, towards the updated online
    weights. Here the target moves at the start of the next step, towards
    the same weights, so the move before step `k` uses `tau_(k - 1)` (and
    `tau_0` before step 0, where the target is still a copy of the online
    network and does not move): every step reads the target the official
    code would.

    Args:
        momentum: base `m`; `None` for 0.996 (the paper's).
        momentum_schedule_steps: if set, the number of steps of the cosine
            schedule (usually all training steps).
        prediction_head: the predictor `q`; `None` for
            `PredictionHead(hidden_dim=4096)`, the paper's.

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), BYOL.
    """

    key = "byol"
    loss_metric_name = "byol_loss"
    # Each image's loss is the agreement of its own two views.
    couples_images = False
    default_predictor_dim = 4096
    # BYOL's code moves the target after the step, with that step's tau.
    momentum_schedule_lag = 1

    def __init__(
        self, momentum=None, momentum_schedule_steps=None, prediction_head=None, **kwargs
    ):
        super().__init__(
            momentum=momentum, momentum_schedule_steps=momentum_schedule_steps, **kwargs
        )
        self._init_prediction_head(prediction_head)

    def compute_loss(self, outputs, labels=None, training=True):
        loss = byol(outputs["prediction"], outputs["target_projection"])
        return self.record(loss, outputs)
