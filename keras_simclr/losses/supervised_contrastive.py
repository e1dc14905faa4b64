"""Supervised contrastive loss, L_out^sup of Khosla et al. (2020)."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.losses import _input_checks
from keras_simclr import distribute
from keras_simclr.losses.nt_xent import _pair_logits
from keras_simclr.losses.nt_xent import nt_xent
from keras_simclr.losses._deprecated import warn_deprecated_loss


def _validate_labels(labels, z_a):
    labels = ops.convert_to_tensor(labels)
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if "int" not in dtype:
        raise ValueError(
            "`labels` must be integer class indices. "
            f"Received: labels.dtype={dtype}"
        )
    shape, batch = tuple(labels.shape), z_a.shape[0]
    if len(shape) != 1 or (
        shape[0] is not None and batch is not None and shape[0] != batch
    ):
        raise ValueError(
            "`labels` must have shape (N,), one label per image of `z_a` and "
            f"`z_b`. Received: labels.shape={shape}, z_a.shape={tuple(z_a.shape)}"
        )
    return ops.cast(labels, "int32")


def supervised_contrastive(
    z_a, z_b, labels=None, temperature=0.1, cross_replica=False
):
    """Supervised contrastive loss (Khosla et al., 2020, eq. 2, L_out^sup).

    Every view whose image has the same label as the anchor's is a positive
    (the anchor's other view included); the views of other labels are
    negatives. Projections are L2-normalised, so the similarities `s` are
    cosines, divided by `temperature`. Over the `2N` views, for each anchor
    `i` with positives `P(i)` (the other views of its label, `i` excluded):

        l(i) = -1/|P(i)| sum_{p in P(i)}
                   log( exp(s_ip / t) / sum_{a != i} exp(s_ia / t) )

    and the loss is the mean of `l(i)` over all `2N` anchors. `P(i)` always
    holds the anchor's other view, so it is never empty.

    With `labels=None` each image is its own class: `P(i)` is the anchor's
    other view only and the loss is `nt_xent(z_a, z_b, temperature)`
    exactly (this function then calls it).

    The official implementation (HobbitLong/SupContrast `SupConLoss`)
    multiplies the loss by `temperature / base_temperature`
    (`base_temperature=0.07`, `temperature=0.07` by default). This function
    follows the paper's formula without that factor, i.e. the official
    loss with `base_temperature = temperature`; to reproduce the official
    value at another temperature, multiply by
    `temperature / base_temperature`.

    The computation runs in float32 even for float16 / bfloat16 inputs, and is
    stable for temperatures down to 0.01 (a log-sum-exp with the maximum
    subtracted).

    Args:
        z_a: projections of the first views, shape `(N, D)`, `N >= 2`.
        z_b: projections of the second views, shape `(N, D)`; row `n` of `z_a`
            and of `z_b` come from the same image.
        labels: integer class indices, shape `(N,)`, the label of image `n`
            (compared as int32); or `None`, every image its own class.
        temperature: positive float, the softmax temperature `t`.
        cross_replica: if True, inside a replica of a `tf.distribute`
            strategy with several replicas, this replica's `2N` views are
            the anchors and the views (and labels) of the whole global
            batch, gathered with
            `keras_simclr.distribute.cross_replica_concat` (gradient
            included), are the positives and negatives, as in
            `nt_xent(..., cross_replica=True)`. The result is the mean over
            this replica's anchors; divide it by the number of replicas
            (`keras_simclr.distribute.scale_loss`) before taking gradients.
            Without a strategy, and on JAX and PyTorch, it changes nothing.

    Returns:
        A float32 scalar.

    Example:

    ```python
    z_a = keras.random.normal((8, 128))
    z_b = z_a + 0.1 * keras.random.normal((8, 128))
    labels = keras.ops.array([0, 1, 0, 2, 1, 1, 3, 0])
    loss = keras_simclr.losses.supervised_contrastive(z_a, z_b, labels)
    ```

    References:
        - [Khosla et al., 2020](https://arxiv.org/abs/2004.11362),
          Supervised Contrastive Learning.
        - [HobbitLong/SupContrast](https://github.com/HobbitLong/SupContrast),
          `losses.py`.
    """
    temperature = _validation.check_positive_number(temperature, "temperature")
    z_a, z_b = _input_checks.check_branches(z_a, z_b)
    if labels is None:
        return nt_xent(z_a, z_b, temperature, cross_replica)
    labels = _validate_labels(labels, z_a)
    logits, positives = _pair_logits(z_a, z_b, temperature, cross_replica)
    # In the layout of `_pair_logits`, view a_n's own column is the positive
    # column of view b_n and the reverse.
    local_batch = ops.shape(z_a)[0]
    own = ops.concatenate([positives[local_batch:], positives[:local_batch]], axis=0)
    key_labels = distribute.cross_replica_concat(labels) if cross_replica else labels
    key_labels = ops.concatenate([key_labels, key_labels], axis=0)
    anchor_labels = ops.concatenate([labels, labels], axis=0)
    columns = ops.arange(ops.shape(key_labels)[0], dtype="int32")
    is_positive = ops.logical_and(
        ops.equal(anchor_labels[:, None], key_labels[None, :]),
        ops.not_equal(own[:, None], columns[None, :]),
    )
    is_positive = ops.cast(is_positive, "float32")
    # The anchor's own logit is -1e9 (finite), so 0 * log_prob stays 0.
    log_prob = logits - ops.logsumexp(logits, axis=1, keepdims=True)
    per_anchor = -ops.sum(is_positive * log_prob, axis=1) / ops.sum(
        is_positive, axis=1
    )
    return ops.mean(per_anchor)


@keras.saving.register_keras_serializable(package="keras_simclr")
class SupervisedContrastive(keras.losses.Loss):
    """Supervised contrastive loss as a `keras.losses.Loss`.

    Deprecated: train with
    `SimCLRPretrainer(objective=keras_simclr.objectives.SupCon(...))`, or
    call `keras_simclr.losses.supervised_contrastive`; constructing it warns.

    `y_true` holds the integer labels of the `N` images, shape `(N,)`, or
    `None` (each image its own class: NT-Xent); `y_pred` holds both views'
    projections stacked on the batch axis, `concatenate([z_a, z_b])` of
    shape `(2N, D)`, as for `NTXent`. See
    `keras_simclr.losses.supervised_contrastive` for the formula and its
    reduction (the mean over all `2N` anchors).

    Args:
        temperature: positive float, the softmax temperature.
        name: name of the loss.

    Example:

    ```python
    loss_fn = keras_simclr.losses.SupervisedContrastive(temperature=0.1)
    z = keras.random.normal((16, 64))  # 8 images, two views each
    labels = keras.ops.array([0, 1, 0, 2, 1, 1, 3, 0])
    loss = loss_fn(labels, z)
    ```
    """

    def __init__(self, temperature=0.1, name="supervised_contrastive", **kwargs):
        warn_deprecated_loss("SupervisedContrastive", "SupCon", "supervised_contrastive")
        super().__init__(name=name, reduction=None, **kwargs)
        self.temperature = _validation.check_positive_number(
            temperature, "temperature"
        )

    def call(self, y_true, y_pred):
        z_a, z_b = ops.split(y_pred, 2, axis=0)
        return supervised_contrastive(z_a, z_b, y_true, self.temperature)

    def __call__(self, y_true, y_pred, sample_weight=None):
        _input_checks.check_stacked_views(type(self).__name__, y_pred, sample_weight)
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config["temperature"] = self.temperature
        return config
