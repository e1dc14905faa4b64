"""What momentum methods share: a target network moved by an exponential
moving average of the online one, and a queue of its keys.

MoCo, BYOL, UniGrad and SimCLR v2's memory keep a copy of the encoder and
the projection head, the *target*, that the optimizer never touches; before
every training step it moves towards the online network,

    target <- m * target + (1 - m) * online,

with `m` constant or rising to 1 along BYOL's cosine schedule. The target's
projections of the views are the `target_projection` output, without
gradient.
"""

import copy

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr import distribute
from keras_simclr.losses.byol import cosine_momentum
from keras_simclr.losses.moco import update_queue
from keras_simclr.objectives.base import NonContrastiveObjective


class _Untracked:
    """Holds references that must not become the objective's own: the
    online networks (the pretrainer's) and the (online, target) variable
    pairs of the EMA."""

    def __init__(self):
        self.online = ()
        self.pairs = []


def clone_layer(layer, name):
    """A fresh copy of `layer` (same config, new weights) named `name`."""
    config = copy.deepcopy(keras.saving.serialize_keras_object(layer))
    config["config"]["name"] = name
    return keras.saving.deserialize_keras_object(config)


class MomentumMixin:
    """The momentum target: made by `attach`, built by `build`, moved by
    `before_step`, run by `add_outputs`.

    Set up by `_init_momentum(momentum, momentum_schedule_steps, default)`
    in the constructor; `uses_target` may be switched off by a subclass for
    which the target is optional (SimCLR without its memory).
    """

    # How many steps the cosine schedule of `m` trails the number of target
    # updates so far. 0: the move before step `k` mixes in the online
    # weights with the schedule at `k`, as MoCo v3 and UniGrad update their
    # target before the step's forward pass. BYOL's code moves its target
    # after the optimizer instead, and sets 1 (see `BYOL`).
    momentum_schedule_lag = 0

    def _init_momentum(self, momentum, momentum_schedule_steps, default):
        if momentum is None:
            momentum = default
        self.momentum = _validation.check_number(
            momentum, "momentum", minimum=0, maximum=1, include_maximum=False
        )
        self.momentum_schedule_steps = _validation.check_int(
            momentum_schedule_steps, "momentum_schedule_steps", allow_none=True
        )
        self._untracked = _Untracked()
        self.target_encoder = None
        self.target_projection_head = None

    @property
    def uses_target(self):
        return True

    def attach(self, encoder, projection_head):
        super().attach(encoder, projection_head)
        if not self.uses_target:
            return
        self._untracked.online = (encoder, projection_head)
        self.target_encoder = clone_layer(encoder, "target_encoder")
        self.target_projection_head = clone_layer(
            projection_head, "target_projection_head"
        )

    def networks(self):
        return [
            layer
            for layer in (self.target_encoder, self.target_projection_head)
            if layer is not None
        ]

    def _build_target(self, view_shape, feature_shape):
        """Builds the target as a copy of the online networks' weights."""
        encoder, projection_head = self._untracked.online
        if not self.target_encoder.built:
            self.target_encoder.build(view_shape)
        if not self.target_projection_head.built:
            self.target_projection_head.build(feature_shape)
        pairs = []
        for online_layer, target_layer in (
            (encoder, self.target_encoder),
            (projection_head, self.target_projection_head),
        ):
            online_weights, target_weights = online_layer.weights, target_layer.weights
            if [w.shape for w in online_weights] != [w.shape for w in target_weights]:
                raise ValueError(
                    "The momentum target could not be made as a copy of "
                    f"{online_layer.name}: its weights differ. Received: "
                    f"{online_layer.name} of type {type(online_layer).__name__}"
                )
            for online, target in zip(online_weights, target_weights):
                # Moved by EMA only, never by the optimizer; its layers stay
                # trainable so that its batch norm uses batch statistics in
                # training, as BYOL's and MoCo's targets do.
                target.trainable = False
                # A copy: on JAX two variables sharing one buffer cannot
                # both be donated to the compiled step.
                target.assign(ops.copy(online))
                if online.trainable:
                    pairs.append((online, target))
        self._untracked.pairs = pairs
        self.target_updates = self.add_weight(
            shape=(), initializer="zeros", trainable=False, dtype="float32",
            name="target_updates",
        )

    def target_pairs(self):
        """The (online, target) variables that the EMA ties together."""
        return list(self._untracked.pairs)

    def target_momentum(self):
        """This step's `m`: constant, or BYOL's cosine schedule of the
        number of updates so far, less `momentum_schedule_lag` (at least
        0)."""
        if self.momentum_schedule_steps is None:
            return self.momentum
        return cosine_momentum(
            self.target_updates - float(self.momentum_schedule_lag),
            self.momentum_schedule_steps,
            self.momentum,
        )

    def before_step(self):
        """One EMA step of the target towards the online network."""
        if not self.uses_target:
            return
        momentum = self.target_momentum()
        for online, target in self._untracked.pairs:
            value = ops.stop_gradient(ops.cast(online, target.dtype))
            target.assign(momentum * target + (1.0 - momentum) * value)
        self.target_updates.assign(self.target_updates + 1.0)

    def add_outputs(self, views, outputs, training):
        outputs = super().add_outputs(views, outputs, training)
        if not self.uses_target:
            return outputs
        target = self.target_projection_head(
            self.target_encoder(views, training=training), training=training
        )
        return {**outputs, "target_projection": ops.stop_gradient(target)}

    def _momentum_config(self):
        return {
            "momentum": self.momentum,
            "momentum_schedule_steps": self.momentum_schedule_steps,
        }


class QueueMixin:
    """A FIFO queue of `queue_size` L2-normalised keys (MoCo; SimCLR v2's
    memory), a non-trainable variable updated inside the compiled step."""

    def _build_queue(self, dim):
        initial = ops.normalize(
            keras.random.normal((self.queue_size, dim), seed=0), axis=-1
        )
        self.queue = self.add_weight(
            shape=(self.queue_size, dim),
            initializer=keras.initializers.Constant(ops.convert_to_numpy(initial)),
            trainable=False,
            dtype="float32",
            name="queue",
        )

    def queue_snapshot(self):
        """The queue as this step reads it (a copy: it is overwritten after
        this step's use)."""
        return ops.stop_gradient(ops.copy(ops.convert_to_tensor(self.queue)))

    def enqueue(self, keys):
        """Puts the target keys `(2N, D)` of this step's views in the queue.

        Every replica enqueues the keys of the global batch, all first views
        then all second views, so the replicas' queues stay identical.
        """
        k_a, k_b = ops.split(keys, 2, axis=0)
        self.queue.assign(
            update_queue(
                ops.convert_to_tensor(self.queue),
                ops.concatenate(
                    [
                        distribute.cross_replica_concat(k_a),
                        distribute.cross_replica_concat(k_b),
                    ],
                    axis=0,
                ),
            )
        )


class MomentumObjective(MomentumMixin, NonContrastiveObjective):
    """Base of the momentum methods other than SimCLR's memory (MoCo, BYOL,
    UniGrad): a target network, `<key>_loss` and `positive_similarity`."""

    default_momentum = 0.996

    def __init__(self, momentum=None, momentum_schedule_steps=None, **kwargs):
        super().__init__(**kwargs)
        self._init_momentum(momentum, momentum_schedule_steps, self.default_momentum)

    def build(self, view_shape, feature_shape, projection_shape):
        self._build_target(view_shape, feature_shape)

    def get_config(self):
        return {**super().get_config(), **self._momentum_config()}
