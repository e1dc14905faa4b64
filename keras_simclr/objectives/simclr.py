"""SimCLR (Chen et al., 2020): NT-Xent between the two views' projections,
with SimCLR v2's optional memory of negatives."""

import keras

from keras_simclr import _validation
from keras_simclr.losses.nt_xent import contrastive_metrics
from keras_simclr.objectives.base import Objective
from keras_simclr.objectives.moco import check_queue_size
from keras_simclr.objectives.momentum import MomentumMixin
from keras_simclr.objectives.momentum import QueueMixin


@keras.saving.register_keras_serializable(package="keras_simclr.objectives")
class SimCLR(MomentumMixin, QueueMixin, Objective):
    """NT-Xent: each view's positive is its image's other view, its
    negatives every other view of the global batch.

    For the projections `z` of the `2N` views, L2-normalised, and `t` the
    temperature, the loss of view `i` with positive `p(i)` is

        l(i) = -log( exp(z_i . z_p(i) / t) / sum_{k != i} exp(z_i . z_k / t) )

    averaged over the `2N` views (`keras_simclr.losses.nt_xent`), the
    paper's formula. That is half the official code's `loss_a + loss_b`, so
    gradients are half as large: with LARS the trust ratio cancels the
    factor for the adapted kernels, but not for the variables it leaves to
    plain momentum SGD (batch-norm parameters, biases) nor against weight
    decay; with plain SGD every step is half the official one. The official
    learning rates carry over exactly only with the loss doubled (or, for
    SGD, the rate doubled). Logs
    `contrastive_loss`, `contrastive_accuracy` (the share of views whose
    positive is their most similar view) and `contrastive_entropy`.

    SimCLR v2's memory (its Section 2, after MoCo), with
    `memory_queue=True`: a momentum copy of encoder and head, moved before
    each step by `target = m * target + (1 - m) * online`, projects both
    views into a queue of `queue_size` keys, which are extra negatives of
    every view. The paper reports about 1% in linear evaluation at batch
    4096.

    Args:
        temperature: positive float; `None` for 0.1 (the paper's value for
            large batches; its CIFAR-10 runs use 0.5).
        memory_queue: whether to keep SimCLR v2's memory of negatives.
        queue_size: keys in the memory (with `memory_queue` only); `None`
            for 65536. Each step enqueues both views of the global batch,
            so it must be at least twice the global batch.
        momentum: `m` of the memory's momentum encoder (with `memory_queue`
            only); `None` for 0.996.
        momentum_schedule_steps: if set, `m` rises to 1 along BYOL's cosine
            schedule over this many steps (with `memory_queue` only).

    References:
        - [Chen et al., 2020a](https://arxiv.org/abs/2002.05709), SimCLR.
        - [Chen et al., 2020b](https://arxiv.org/abs/2006.10029), SimCLR v2.
    """

    key = "simclr"
    loss_metric_name = "contrastive_loss"
    # Arguments that apply only with the memory (for error messages).
    conditional_arguments = {
        "queue_size": "memory_queue",
        "momentum": "memory_queue",
        "momentum_schedule_steps": "memory_queue",
    }

    def __init__(
        self,
        temperature=None,
        memory_queue=False,
        queue_size=None,
        momentum=None,
        momentum_schedule_steps=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.temperature = _validation.check_positive_number(
            0.1 if temperature is None else temperature, "temperature"
        )
        self.memory_queue = _validation.check_bool(memory_queue, "memory_queue")
        if not self.memory_queue:
            given = {
                "queue_size": queue_size,
                "momentum": momentum,
                "momentum_schedule_steps": momentum_schedule_steps,
            }
            for name in self.conditional_arguments:
                value = given[name]
                if value is not None:
                    raise ValueError(
                        f"`{name}` is not used by objective='simclr' without "
                        "memory_queue; it applies to SimCLR v2's memory "
                        f"(memory_queue=True). Leave it unset. Received: {name}={value!r}"
                    )
        self.queue_size = None
        if self.memory_queue:
            self.queue_size = _validation.check_int(
                65536 if queue_size is None else queue_size, "queue_size"
            )
        self._init_momentum(momentum, momentum_schedule_steps, 0.996)
        if not self.memory_queue:
            self.momentum = None
        self.contrastive_loss_tracker = keras.metrics.Mean(name=self.loss_metric())
        self.contrastive_accuracy_tracker = keras.metrics.Mean(
            name="contrastive_accuracy"
        )
        self.contrastive_entropy_tracker = keras.metrics.Mean(
            name="contrastive_entropy"
        )

    @property
    def uses_target(self):
        return self.memory_queue

    def build(self, view_shape, feature_shape, projection_shape):
        if self.memory_queue:
            self._build_target(view_shape, feature_shape)
            self._build_queue(projection_shape[-1])

    def check_batch_size(self, batch_size):
        if self.memory_queue:
            check_queue_size(self.queue_size, batch_size, "SimCLR's memory")

    def compute_loss(self, outputs, labels=None, training=True):
        z_a, z_b = self.split_views(outputs["projection"])
        negatives = self.queue_snapshot() if self.memory_queue else None
        loss, accuracy, entropy = contrastive_metrics(
            z_a, z_b, self.temperature, cross_replica=True, negatives=negatives
        )
        if self.memory_queue and training:
            self.enqueue(outputs["target_projection"])
        weight = self.batch_weight(z_a)
        self.contrastive_loss_tracker.update_state(loss, sample_weight=weight)
        self.contrastive_accuracy_tracker.update_state(accuracy, sample_weight=weight)
        self.contrastive_entropy_tracker.update_state(entropy, sample_weight=weight)
        return loss

    def get_config(self):
        config = {
            **super().get_config(),
            "temperature": self.temperature,
            "memory_queue": self.memory_queue,
        }
        if self.memory_queue:
            config.update(queue_size=self.queue_size, **self._momentum_config())
        return config
