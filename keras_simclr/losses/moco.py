"""InfoNCE of MoCo v2 against a queue of negatives."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.losses import _input_checks
from keras_simclr.losses._input_checks import check_matrix
from keras_simclr.losses._deprecated import moved_to_momentum
from keras_simclr.losses._deprecated import warn_deprecated_loss

_KEYS = ("query", "key", "queue")


__getattr__ = moved_to_momentum(__name__, ("update_queue",))


def moco_infonce(q, k, queue, temperature=0.2):
    """InfoNCE loss of MoCo v2 (He et al., 2020, eq. 1; Chen et al., 2020).

    Each query `q_n` of the online encoder has one positive, the key `k_n` of
    the momentum encoder for another view of the same image, and `K`
    negatives, the keys of earlier batches held in `queue`. With `q_n` and
    `k_n` L2-normalised:

        logits_n = [q_n . k_n, q_n . queue_1, ..., q_n . queue_K] / t
        l(n) = -log softmax(logits_n)[0]

    and the loss is the mean of `l(n)` over the `N` queries, as the official
    code (facebookresearch/moco, `nn.CrossEntropyLoss` with the positive at
    index 0) computes it.

    `k` and `queue` receive no gradient: `k` comes from the momentum encoder
    and `stop_gradient` is applied to it here, as the official code computes
    it under `torch.no_grad()`; `queue` is used as given, neither normalised
    again nor differentiated (fill it with `update_queue`, which stores
    normalised keys). The computation runs in float32 whatever the input
    dtype.

    This is the one-directional loss of MoCo v2. Symmetrised variants, MoCo
    v3's `ctr(q1, k2) + ctr(q2, k1)` or SimCLR v2's MoCo-style memory with
    both views as queries, are the caller's: call this function once per
    direction and add or average the results (MoCo v3 also multiplies each
    term by `2 t` and uses the other images of the batch, not a queue, as
    negatives).

    Args:
        q: queries, the online encoder's projections, shape `(N, D)`.
        k: keys, the momentum encoder's projections of the other views,
            shape `(N, D)`; row `n` is the positive of `q[n]`.
        queue: negatives, shape `(K, D)`, already L2-normalised.
        temperature: positive float, the softmax temperature `t` (0.2 in
            MoCo v2, 0.07 in MoCo v1).

    Returns:
        A float32 scalar.

    Example:

    ```python
    q = keras.random.normal((8, 128))
    k = q + 0.1 * keras.random.normal((8, 128))
    queue = keras.ops.normalize(keras.random.normal((4096, 128)), axis=-1)
    loss = keras_simclr.losses.moco_infonce(q, k, queue, temperature=0.2)
    ```

    References:
        - [He et al., 2020](https://arxiv.org/abs/1911.05722), MoCo.
        - [Chen et al., 2020](https://arxiv.org/abs/2003.04297), MoCo v2.
    """
    temperature = _validation.check_positive_number(temperature, "temperature")
    q = check_matrix("q", q)
    k = check_matrix("k", k)
    queue = check_matrix("queue", queue)
    _input_checks.check_same_shape(q=q, k=k)
    if q.shape[1] is not None and queue.shape[1] not in (None, q.shape[1]):
        raise ValueError(
            "`queue` must hold keys of the queries' dimension, shape (K, D) "
            f"with D={q.shape[1]}. Received: queue.shape={tuple(queue.shape)}"
        )
    q = ops.normalize(ops.cast(q, "float32"), axis=-1, epsilon=1e-12)
    k = ops.normalize(ops.cast(k, "float32"), axis=-1, epsilon=1e-12)
    k = ops.stop_gradient(k)
    queue = ops.stop_gradient(ops.cast(queue, "float32"))
    positive = ops.sum(q * k, axis=-1, keepdims=True)
    negatives = ops.matmul(q, ops.transpose(queue))
    logits = ops.concatenate([positive, negatives], axis=1) / temperature
    return ops.mean(ops.logsumexp(logits, axis=1) - logits[:, 0])


@keras.saving.register_keras_serializable(package="keras_simclr")
class MoCoInfoNCE(keras.losses.Loss):
    """InfoNCE loss of MoCo v2 as a `keras.losses.Loss`.

    Deprecated: train with
    `SimCLRPretrainer(objective=keras_simclr.objectives.MoCo(...))`, or
    call `keras_simclr.losses.moco_infonce`; constructing it warns.

    `y_pred` is a dict `{"query": q, "key": k, "queue": queue}` of shapes
    `(N, D)`, `(N, D)` and `(K, D)`; `y_true` is ignored. See
    `keras_simclr.losses.moco_infonce` for the formula, the stop-gradients
    and the reduction (the mean over the `N` queries).

    Args:
        temperature: positive float, the softmax temperature.
        name: name of the loss.

    Example:

    ```python
    loss_fn = keras_simclr.losses.MoCoInfoNCE(temperature=0.2)
    q = keras.random.normal((8, 64))
    k = keras.random.normal((8, 64))
    queue = keras.ops.normalize(keras.random.normal((1024, 64)), axis=-1)
    loss = loss_fn(None, {"query": q, "key": k, "queue": queue})
    ```
    """

    def __init__(self, temperature=0.2, name="moco_infonce", **kwargs):
        warn_deprecated_loss("MoCoInfoNCE", "MoCo", "moco_infonce")
        super().__init__(name=name, reduction=None, **kwargs)
        self.temperature = _validation.check_positive_number(
            temperature, "temperature"
        )

    def call(self, y_true, y_pred):
        return moco_infonce(
            y_pred["query"], y_pred["key"], y_pred["queue"], self.temperature
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        _input_checks.check_dict_call("MoCoInfoNCE", y_pred, sample_weight, _KEYS)
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config["temperature"] = self.temperature
        return config
