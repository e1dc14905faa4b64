"""What momentum methods share: a target network moved by an exponential
moving average of the online one, and a queue of its keys; and the two
functions they are made of, `cosine_momentum` and `update_queue`.

MoCo, BYOL, UniGrad and SimCLR v2's memory keep a copy of the encoder and
the projection head, the *target*, that the optimizer never touches; before
every training step it moves towards the online network,

    target <- m * target + (1 - m) * online,

with `m` constant or rising to 1 along BYOL's cosine schedule. The target's
projections of the views are the `target_projection` output, without
gradient.
"""

import copy
import math

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr import distribute
from keras_simclr.losses._input_checks import check_matrix
from keras_simclr.objectives.base import SimilarityTrackingObjective


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


class MomentumObjective(MomentumMixin, SimilarityTrackingObjective):
    """Base of the momentum methods other than SimCLR's memory (MoCo, BYOL,
    UniGrad): a target network, the loss metric and `positive_similarity`."""

    default_momentum = 0.996

    def __init__(self, momentum=None, momentum_schedule_steps=None, **kwargs):
        super().__init__(**kwargs)
        self._init_momentum(momentum, momentum_schedule_steps, self.default_momentum)

    def build(self, view_shape, feature_shape, projection_shape):
        self._build_target(view_shape, feature_shape)

    def get_config(self):
        return {**super().get_config(), **self._momentum_config()}


# === Utilities ===


def cosine_momentum(step, total_steps, base_momentum=0.996):
    """BYOL's momentum of the target network at a training step.

    The target weights follow `xi <- tau * xi + (1 - tau) * theta`, with tau
    rising from `base_momentum` at step 0 to 1 at the last step:

        tau = 1 - (1 - base_momentum) * (cos(pi * step / total_steps) + 1) / 2

    Written in `keras.ops`, so `step` may be a tensor (an optimizer's
    iteration counter) inside a compiled step. `step` is clipped to
    `[0, total_steps]`, so training past `total_steps` keeps tau at 1 rather
    than lowering it again along the cosine (BYOL never gets there).

    Args:
        step: the current step, a Python number or a scalar tensor.
        total_steps: positive number, the length of training in steps.
        base_momentum: the momentum at step 0, in `[0, 1]` (0.996 in BYOL,
            0.99 for its small-batch runs).

    Returns:
        A float32 scalar tensor.

    Example:

    ```python
    tau = keras_simclr.objectives.cosine_momentum(
        optimizer.iterations, total_steps=10_000
    )
    ```

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), BYOL,
          section 3.2.
    """
    total_steps = _validation.check_positive_number(total_steps, "total_steps")
    base_momentum = _validation.check_probability(base_momentum, "base_momentum")
    step = ops.clip(ops.cast(step, "float32"), 0.0, total_steps)
    progress = step / total_steps
    cosine = (ops.cos(math.pi * progress) + 1.0) / 2.0
    return 1.0 - (1.0 - base_momentum) * cosine


def update_queue(queue, keys):
    """Enqueues a batch of keys and drops as many of the oldest (FIFO).

    Returns a new queue rather than writing into one, so that it can run
    inside a compiled training step (assign the result to the queue
    variable). The order is newest first:

        new_queue = concatenate([normalize(keys), queue])[:K]

    so rows `0 .. N-1` are this batch's keys in batch order, followed by the
    previous queue without its last (oldest) `N` rows. The official MoCo
    code writes the keys into a ring buffer at a moving pointer instead
    (and requires `N` to divide `K`); once `K / N` updates have replaced
    the initial queue, the two hold the same keys after every update, in
    another order, and the loss does not depend on the order of the
    negatives.

    The keys are L2-normalised (the queue then holds what `moco_infonce`
    compares the queries with), cast to float32 and given no gradient. Under
    a `tf.distribute` strategy with several replicas, gather the keys of all
    replicas first (`keras_simclr.distribute.cross_replica_concat`, as the
    official `concat_all_gather`), so that every replica enqueues the same
    keys and the queues stay identical.

    Args:
        queue: the current queue, shape `(K, D)`.
        keys: the momentum encoder's keys of this batch, shape `(N, D)`
            with `N <= K`.

    Returns:
        The new float32 queue, shape `(K, D)`.

    Example:

    ```python
    queue = keras.Variable(
        keras.ops.normalize(keras.random.normal((4096, 128)), axis=-1)
    )
    keys = keras.random.normal((256, 128))
    queue.assign(keras_simclr.objectives.update_queue(queue, keys))
    ```
    """
    queue = check_matrix("queue", queue)
    keys = check_matrix("keys", keys)
    queue_size = queue.shape[0]
    if queue_size is None:
        raise ValueError(
            "`queue` must have a static size K. "
            f"Received: queue.shape={tuple(queue.shape)}"
        )
    if queue.shape[1] is not None and keys.shape[1] not in (None, queue.shape[1]):
        raise ValueError(
            "`keys` must have the queue's dimension D. Received: "
            f"keys.shape={tuple(keys.shape)}, queue.shape={tuple(queue.shape)}"
        )
    if keys.shape[0] is not None and keys.shape[0] > queue_size:
        raise ValueError(
            "`keys` must not hold more keys than the queue: N <= K. Received: "
            f"keys.shape={tuple(keys.shape)}, queue.shape={tuple(queue.shape)}"
        )
    keys = ops.normalize(ops.cast(keys, "float32"), axis=-1, epsilon=1e-12)
    keys = ops.stop_gradient(keys)
    queue = ops.cast(queue, "float32")
    return ops.concatenate([keys, queue], axis=0)[:queue_size]
