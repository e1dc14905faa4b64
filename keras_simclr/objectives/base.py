"""What every objective is to the pretrainer: a layer that turns the two
views' outputs into one loss.

`SimCLRPretrainer` does what all objectives share: it makes two views of each
image, encodes both in one batch (`features`, then `projection` by the
projection head), trains the online probe, gathers across replicas and
scales the loss. An objective adds what is its own:

1. `attach(encoder, projection_head)`: once, when the pretrainer is made;
   networks of its own (a prediction head, a momentum copy) are made here.
2. `build(view_shape, feature_shape, projection_shape)`: its state
   variables (a queue, a running statistic), when the pretrainer is built.
   `check_batch_size(batch_size)`: when `fit()` starts, before training,
   with the global batch; refuses one the objective cannot train with.
3. `before_step()`: at the start of every training step, before the
   forward pass (momentum methods move their target here).
4. `add_outputs(views, outputs, training)`: outputs of its own networks,
   added to the dict the pretrainer returns (`prediction`,
   `target_projection`).
5. `compute_loss(outputs, labels, training)`: the loss of the step, from
   the outputs of all `2N` views (first all `view_a`, then all `view_b`);
   it updates its metrics and its state.

Only `compute_loss` must be written; the others default to nothing. An
objective's variables, networks and metrics are the pretrainer's: they are
trained, saved and restored with it, and its metrics appear in `fit()`'s
logs.
"""

import keras
from keras import ops

from keras_simclr import _keras_compat


class Objective(keras.layers.Layer):
    """Base class of the objectives a `SimCLRPretrainer` minimises.

    Subclasses set `key` (the name `SimCLRPretrainer(objective=...)` knows
    them by; the snake-case class name by default), `loss_metric_name` (the
    loss metric's name in `fit()`'s logs; `"<key>_loss"` by default),
    `needs_labels` when the loss takes the images' labels,
    `couples_images = False` when each image's loss depends on that image
    alone, and implement `compute_loss`. Give every constructor argument back in `get_config`.

    Example (docs/objectives.md, "Your own objective", gives it whole, with
    the alignment and uniformity losses of Wang & Isola, 2020):

    ```python
    @keras.saving.register_keras_serializable(package="my_objectives")
    class Align(keras_simclr.objectives.Objective):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.loss_tracker = keras.metrics.Mean(name="align_loss")

        def compute_loss(self, outputs, labels=None, training=True):
            z_a, z_b = self.split_views(ops.normalize(outputs["projection"], axis=-1))
            loss = ops.mean(ops.sum((z_a - z_b) ** 2, axis=-1))
            self.loss_tracker.update_state(loss, sample_weight=self.batch_weight(z_a))
            return loss
    ```
    """

    key = None
    needs_labels = False
    # Whether an image's loss depends on the other images of the batch
    # (negatives, batch statistics): then a batch split into micro-batches
    # (gradient accumulation) is another objective.
    couples_images = True
    # The name of the loss metric in `fit()`'s logs; `None` for
    # `"<key>_loss"`.
    loss_metric_name = None

    def __init__(self, **kwargs):
        kwargs.setdefault("name", self.objective_key())
        super().__init__(**kwargs)
        self._attached = False

    @classmethod
    def loss_metric(cls):
        """The name of the objective's loss metric in `fit()`'s logs."""
        return cls.loss_metric_name or f"{cls.objective_key()}_loss"

    @classmethod
    def objective_key(cls):
        return cls.key or _keras_compat.to_snake_case(cls.__name__)

    # === Hooks the pretrainer calls ===

    def attach(self, encoder, projection_head):
        """Called once by the pretrainer that trains with this objective.

        An objective belongs to one pretrainer: its networks and state are
        that pretrainer's.
        """
        if self._attached:
            raise ValueError(
                f"This {type(self).__name__} objective already belongs to a "
                "pretrainer; make a new one for each pretrainer. Received: "
                f"objective={self.name!r}, already attached"
            )
        self._attached = True

    def build(self, view_shape, feature_shape, projection_shape):
        """Creates the objective's state; shapes have a `None` batch axis."""

    def check_batch_size(self, batch_size):
        """Refuses a global batch the objective cannot train with.

        Called by the pretrainer's `fit()` before training, with the global
        batch (`batch_size`, or the batch of a `tf.data` dataset). Raise a
        `ValueError` that names the objective's argument and `batch_size`.
        """

    def networks(self):
        """The objective's own networks: batch norm in them is synchronised
        across replicas as in the encoder (global batch norm)."""
        return []

    def before_step(self):
        """Runs at the start of a training step, before the forward pass."""

    def add_outputs(self, views, outputs, training):
        """Returns `outputs` with the objective's own outputs added.

        Args:
            views: the `2N` views as one batch.
            outputs: the pretrainer's outputs on them: `features`,
                `projection` (and `probe_logits` with a probe).
            training: whether this is a training step.
        """
        return outputs

    def compute_loss(self, outputs, labels=None, training=True):
        """The loss of the step, a float32 scalar; updates metrics and
        state.

        Args:
            outputs: the dict of `add_outputs` for the `2N` views.
            labels: int32 labels `(N,)` of the images, or None.
            training: whether this is a training step (state advances only
                then).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "compute_loss(outputs, labels, training)."
        )

    def get_build_config(self):
        # Built by its pretrainer, after `attach`, never on its own.
        return None

    def build_from_config(self, config):
        pass

    def load_own_variables(self, store):
        # A file written before objectives were layers holds the state in
        # the pretrainer's own variables, loaded from there.
        if getattr(self, "_state_loaded", False) and not list(store.keys()):
            return
        super().load_own_variables(store)

    # === Helpers ===

    @staticmethod
    def split_views(tensor):
        """`(2N, ...)` → the first views `(N, ...)`, the second views."""
        return ops.split(tensor, 2, axis=0)

    @staticmethod
    def batch_weight(tensor):
        """The number of images, as Keras weights its `loss` metric: with a
        smaller last batch the epoch means of loss and metrics agree."""
        return ops.cast(ops.shape(tensor)[0], "float32")


class SimilarityTrackingObjective(Objective):
    """An objective that logs its loss as `loss_metric_name` and the mean
    cosine between the projections of an image's two views as
    `positive_similarity`: what every objective pulls up, and the number to
    watch for UniGrad, whose surrogate loss is not itself minimised (UniGrad
    overrides `record` to log its official code's similarity, each view's
    online projection against the other view's target).

    Subclasses return `self.record(loss, outputs)` from `compute_loss`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.loss_tracker = keras.metrics.Mean(name=self.loss_metric())
        self.positive_similarity_tracker = keras.metrics.Mean(
            name="positive_similarity"
        )

    def record(self, loss, outputs):
        """Updates the two metrics; returns `loss`."""
        z_a, z_b = self.split_views(ops.cast(outputs["projection"], "float32"))
        weight = self.batch_weight(z_a)
        self.loss_tracker.update_state(loss, sample_weight=weight)
        cosine = ops.sum(
            ops.normalize(z_a, axis=-1) * ops.normalize(z_b, axis=-1), axis=-1
        )
        self.positive_similarity_tracker.update_state(
            ops.mean(cosine), sample_weight=weight
        )
        return loss


# The name of earlier releases.
NonContrastiveObjective = SimilarityTrackingObjective
