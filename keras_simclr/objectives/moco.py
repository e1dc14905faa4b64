"""MoCo (He et al., 2020; Chen et al., 2020): queries against the momentum
encoder's keys and a queue of past keys."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.losses.moco import moco_infonce
from keras_simclr.objectives.momentum import MomentumObjective
from keras_simclr.objectives.momentum import QueueMixin


@keras.saving.register_keras_serializable(package="keras_simclr.objectives")
class MoCo(QueueMixin, MomentumObjective):
    """MoCo v2, symmetrised, as its Algorithm 1:

    1. before the step, the key encoder (encoder and head's momentum copy)
       moves: `target = m * target + (1 - m) * online`;
    2. queries `q` are the online projections of the views, keys `k` the
       target's (no gradient);
    3. each view's query is scored against the key of the image's other
       view (its positive) and the queue's `K` keys (its negatives), by
       InfoNCE at temperature `t` (`keras_simclr.losses.moco_infonce`);
       the loss is the mean of `q_a` against `k_b` and `q_b` against `k_a`;
    4. both views' keys of the global batch are enqueued, the oldest
       dropped.

    Args:
        temperature: positive float; `None` for 0.1 (MoCo v2 uses 0.2).
        queue_size: `K`; `None` for 65536. At least twice the global batch.
        momentum: `m`; `None` for 0.996 (MoCo uses 0.999).
        momentum_schedule_steps: if set, `m` rises to 1 along BYOL's cosine
            schedule over this many steps.

    References:
        - [He et al., 2020](https://arxiv.org/abs/1911.05722), MoCo.
        - [Chen et al., 2020](https://arxiv.org/abs/2003.04297), MoCo v2.
    """

    key = "moco"
    loss_metric_name = "moco_loss"

    def __init__(
        self,
        temperature=None,
        queue_size=None,
        momentum=None,
        momentum_schedule_steps=None,
        **kwargs,
    ):
        super().__init__(
            momentum=momentum, momentum_schedule_steps=momentum_schedule_steps, **kwargs
        )
        self.temperature = _validation.check_positive_number(
            0.1 if temperature is None else temperature, "temperature"
        )
        self.queue_size = _validation.check_int(
            65536 if queue_size is None else queue_size, "queue_size"
        )

    def build(self, view_shape, feature_shape, projection_shape):
        super().build(view_shape, feature_shape, projection_shape)
        self._build_queue(projection_shape[-1])

    def check_batch_size(self, batch_size):
        check_queue_size(self.queue_size, batch_size, "MoCo")

    def compute_loss(self, outputs, labels=None, training=True):
        q_a, q_b = self.split_views(outputs["projection"])
        keys = outputs["target_projection"]
        k_a, k_b = self.split_views(keys)
        queue = self.queue_snapshot()
        loss = 0.5 * (
            moco_infonce(q_a, k_b, queue, temperature=self.temperature)
            + moco_infonce(q_b, k_a, queue, temperature=self.temperature)
        )
        if training:
            self.enqueue(keys)
        return self.record(ops.cast(loss, "float32"), outputs)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "queue_size": self.queue_size,
        }


def check_queue_size(queue_size, batch_size, method):
    """Refuses a queue that cannot take the keys of one step: each step
    enqueues both views' keys of the global batch, `2 * batch_size`."""
    if 2 * batch_size > queue_size:
        raise ValueError(
            f"`queue_size` must hold the keys of both views of a batch, at least "
            f"2 * batch_size = {2 * batch_size}: each step of {method} enqueues "
            "them all. Raise queue_size (the paper's: 65536) or lower "
            f"batch_size. Received: queue_size={queue_size}, "
            f"batch_size={batch_size}"
        )
