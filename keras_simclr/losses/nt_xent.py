"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.losses import _input_checks
from keras_simclr import distribute
from keras_simclr.losses._deprecated import warn_deprecated_loss

# Added to a logit to remove it from a softmax. Finite, so that 0 * mask stays
# 0 (an -inf would give NaN there); in float32, exp(-1e9 + x) is exactly 0.
_MASK_VALUE = 1e9


def _validate_temperature(temperature):
    """`temperature` as a float, or raises: a softmax temperature is a
    finite number > 0."""
    return _validation.check_positive_number(temperature, "temperature")


def _pair_logits(z_a, z_b, temperature, cross_replica=False, negatives=None):
    """Scaled cosine similarities of each view to every view, self removed.

    Returns `(logits, positives)`. Without cross-replica gathering, `logits`
    is `(2N, 2N)`: the row of view `i` holds its similarity to every view of
    the batch, its own set to -1e9; `positives` is `(2N,)`, the index of each
    view's other view (`i + N` for `i < N`). With `cross_replica=True` under
    a `tf.distribute` strategy of `R` replicas of `N` images each, the rows
    are this replica's `2N` views and the columns the `2RN` views of the
    global batch (all first views, then all second views, in replica order).
    Extra `negatives` `(K, D)` add `K` columns after those.
    """
    # Normalising and the softmax run in float32 whatever the input dtype, so
    # float16 / bfloat16 projections and temperatures down to 0.01 are stable.
    z_a, z_b = _input_checks.check_branches(z_a, z_b, min_batch=0)
    z_a = ops.normalize(z_a, axis=-1, epsilon=1e-12)
    z_b = ops.normalize(z_b, axis=-1, epsilon=1e-12)
    anchors = ops.concatenate([z_a, z_b], axis=0)
    local_batch = ops.shape(z_a)[0]
    if cross_replica:
        keys_a = distribute.cross_replica_concat(z_a)
        keys_b = distribute.cross_replica_concat(z_b)
        keys = ops.concatenate([keys_a, keys_b], axis=0)
        global_batch = ops.shape(keys_a)[0]
        offset = ops.cast(distribute.replica_id(), "int32") * local_batch
    else:
        keys = anchors
        global_batch = local_batch
        offset = 0
    logits = ops.matmul(anchors, ops.transpose(keys)) / temperature
    # Row i < N is view_a of local image i: itself at column offset + i, its
    # positive (view_b) at global_batch + offset + i; rows N.. the reverse.
    index = ops.arange(local_batch, dtype="int32") + offset
    own = ops.concatenate([index, index + global_batch], axis=0)
    positives = ops.concatenate([index + global_batch, index], axis=0)
    columns = ops.arange(2 * global_batch, dtype="int32")
    is_own = ops.cast(ops.equal(own[:, None], columns[None, :]), "float32")
    logits = logits - _MASK_VALUE * is_own
    if negatives is not None:
        negatives = ops.convert_to_tensor(negatives)
        if len(negatives.shape) != 2 or negatives.shape[-1] != z_a.shape[-1]:
            raise ValueError(
                "`negatives` must be a 2D tensor (num_negatives, dim) with the "
                f"projections' dim {z_a.shape[-1]}. Received: "
                f"negatives.shape={tuple(negatives.shape)}"
            )
        negatives = ops.normalize(
            ops.cast(negatives, "float32"), axis=-1, epsilon=1e-12
        )
        extra = ops.matmul(anchors, ops.transpose(negatives)) / temperature
        logits = ops.concatenate([logits, extra], axis=1)
    return logits, positives


def nt_xent(z_a, z_b, temperature=0.1, cross_replica=False, negatives=None):
    """NT-Xent loss of SimCLR (Chen et al., 2020, eq. 1), averaged over 2N views.

    The two views of each image are a positive pair; the other `2N - 2` views
    of the batch are its negatives. Projections are L2-normalised, so the
    similarities are cosines, divided by `temperature`. For each of the `2N`
    views `i` with positive `j`:

        l(i) = -log( exp(s_ij / t) / sum_{k != i} exp(s_ik / t) )

    and the loss is the mean of `l(i)` over all `2N` views, the paper's
    `L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]`.

    The official implementation (google-research/simclr) sums the mean losses
    of the two directions, `loss_a + loss_b`, which is exactly twice this value
    (the same gradient direction, a learning rate twice as large). lightly's
    `NTXentLoss` uses the same reduction as this function.

    The computation runs in float32 even for float16 / bfloat16 inputs, and is
    stable for temperatures down to 0.01 (a log-sum-exp with the maximum
    subtracted).

    Args:
        z_a: projections of the first views, shape `(N, D)`.
        z_b: projections of the second views, shape `(N, D)`; row `n` of `z_a`
            and of `z_b` come from the same image.
        temperature: positive float, the softmax temperature `t`.
        cross_replica: if True, inside a replica of a `tf.distribute`
            strategy with several replicas, the views of this replica are
            contrasted with the views of the whole global batch (gathered
            with `keras_simclr.distribute.cross_replica_concat`, gradient
            included), as the official `tpu_cross_replica_concat` does. The
            result is then the mean over this replica's views; divide it by
            the number of replicas (`keras_simclr.distribute.scale_loss`)
            before taking gradients, as `SimCLRPretrainer` does. Without a
            strategy, and on JAX and PyTorch, it changes nothing (under
            `keras.distribution.DataParallel` the step already sees the
            global batch).
        negatives: optional `(K, D)` extra negatives for every view, added
            to the denominator of `l(i)`: SimCLR v2's memory queue of
            momentum-encoder projections (MoCo's mechanism). They are
            L2-normalised here; no gradient flows into them in
            `SimCLRPretrainer`, which passes its queue.

    Returns:
        A float32 scalar.

    Example:

    ```python
    z_a = keras.random.normal((8, 128))
    z_b = z_a + 0.1 * keras.random.normal((8, 128))
    loss = keras_simclr.losses.nt_xent(z_a, z_b, temperature=0.1)
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR.
    """
    temperature = _validate_temperature(temperature)
    logits, positives = _pair_logits(
        z_a, z_b, temperature, cross_replica, negatives
    )
    return ops.mean(_per_view_loss(logits, positives))


def _per_view_loss(logits, positives):
    positive_logits = ops.take_along_axis(logits, positives[:, None], axis=1)[:, 0]
    return ops.logsumexp(logits, axis=1) - positive_logits


def contrastive_metrics(
    z_a, z_b, temperature=0.1, cross_replica=False, negatives=None
):
    """Returns `(loss, accuracy, entropy)` of a batch of pairs.

    - `loss`: `nt_xent(z_a, z_b, temperature)`.
    - `accuracy`: the fraction of the `2N` views whose positive has the highest
      similarity among the `2N - 1` other views.
    - `entropy`: the mean entropy (in nats) of each view's softmax over the
      `2N - 1` other views; `log(2N - 1)` for uniform similarities, 0 when the
      positive takes all the mass.

    All three come from one similarity matrix, so computing them together costs
    little more than the loss. Same arguments as `nt_xent`; with
    `cross_replica=True` the negatives (and the `2N - 1` above) are those of
    the global batch, and `negatives` add `K` to them.
    """
    temperature = _validate_temperature(temperature)
    logits, positives = _pair_logits(
        z_a, z_b, temperature, cross_replica, negatives
    )
    loss = ops.mean(_per_view_loss(logits, positives))
    predicted = ops.cast(ops.argmax(logits, axis=1), "int32")
    accuracy = ops.mean(ops.cast(ops.equal(predicted, positives), "float32"))
    log_probs = ops.log_softmax(logits, axis=1)
    probs = ops.exp(log_probs)
    # The masked self-similarity has probability exactly 0; where() keeps its
    # 0 * -1e9 term from contributing.
    entropy = -ops.sum(ops.where(probs > 0, probs * log_probs, 0.0), axis=1)
    return loss, accuracy, ops.mean(entropy)


@keras.saving.register_keras_serializable(package="keras_simclr")
class NTXent(keras.losses.Loss):
    """NT-Xent loss of SimCLR as a `keras.losses.Loss`.

    Deprecated: train with
    `SimCLRPretrainer(objective=keras_simclr.objectives.SimCLR(...))`, or
    call `keras_simclr.losses.nt_xent`; constructing it warns.

    `y_pred` holds both views' projections stacked on the batch axis,
    `concatenate([z_a, z_b])` of shape `(2N, D)`, as the pretraining step sends
    both views through the encoder as one batch; `y_true` is ignored. See
    `keras_simclr.losses.nt_xent` for the formula and its reduction (the mean
    over all `2N` views).

    Args:
        temperature: positive float, the softmax temperature.
        name: name of the loss.

    Example:

    ```python
    loss_fn = keras_simclr.losses.NTXent(temperature=0.5)
    z = keras.random.normal((16, 64))  # 8 images, two views each
    loss = loss_fn(None, z)
    ```
    """

    def __init__(self, temperature=0.1, name="nt_xent", **kwargs):
        warn_deprecated_loss("NTXent", "SimCLR", "nt_xent")
        super().__init__(name=name, reduction=None, **kwargs)
        self.temperature = _validate_temperature(temperature)

    def call(self, y_true, y_pred):
        z_a, z_b = ops.split(y_pred, 2, axis=0)
        return nt_xent(z_a, z_b, self.temperature)

    def __call__(self, y_true, y_pred, sample_weight=None):
        _input_checks.check_stacked_views(type(self).__name__, y_pred, sample_weight)
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config["temperature"] = self.temperature
        return config
