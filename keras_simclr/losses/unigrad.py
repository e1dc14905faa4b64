"""UniGrad: a positive pull and a correlation-based push, written as gradients."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.losses import _input_checks
from keras_simclr import distribute
from keras_simclr.losses._input_checks import check_matrix
from keras_simclr.losses._input_checks import check_same_shape
from keras_simclr.losses._deprecated import warn_deprecated_loss

_KEYS = ("projection", "target", "correlation")



def _normalize(x):
    return ops.normalize(ops.cast(x, "float32"), axis=-1, epsilon=1e-12)


def unigrad_correlation(target_a, target_b, cross_replica=False):
    """The batch value of UniGrad's target correlation matrix.

    With `t_a`, `t_b` the momentum encoder's projections of the two views,
    L2-normalised row by row:

        F_batch = (t_a^T t_a + t_b^T t_b) / (2N)

    a `(D, D)` matrix, the mean outer product of the `2N` targets. It is
    not differentiated (`stop_gradient`): the targets come from the momentum
    encoder. Feed it to `update_correlation` for the running average that
    `unigrad` uses.

    Args:
        target_a: targets of the first views, shape `(N, D)`.
        target_b: targets of the second views, shape `(N, D)`.
        cross_replica: if True, inside a replica of a `tf.distribute`
            strategy with several replicas, the mean runs over the targets of
            the global batch (gathered with
            `keras_simclr.distribute.cross_replica_concat`), the same on
            every replica; the official code's `all_reduce` of the
            per-replica matrices divided by the number of replicas gives the
            same value. Elsewhere it changes nothing (under
            `keras.distribution.DataParallel` the step already sees the
            global batch).

    Returns:
        A float32 tensor of shape `(D, D)`.
    """
    target_a = check_matrix("target_a", target_a)
    target_b = check_matrix("target_b", target_b)
    check_same_shape(target_a=target_a, target_b=target_b)
    t_a = ops.stop_gradient(_normalize(target_a))
    t_b = ops.stop_gradient(_normalize(target_b))
    if cross_replica:
        t_a = distribute.cross_replica_concat(t_a)
        t_b = distribute.cross_replica_concat(t_b)
    count = ops.cast(2 * ops.shape(t_a)[0], "float32")
    outer = ops.matmul(ops.transpose(t_a), t_a) + ops.matmul(ops.transpose(t_b), t_b)
    return outer / count


def update_correlation(correlation, batch_correlation, initialized, rho=0.99):
    """One step of the running average of UniGrad's correlation matrix.

        F <- rho * F + (1 - rho) * F_batch   if `initialized`
        F <- F_batch                         otherwise (the first batch)

    as the official code does with `F = None` before the first step. A pure
    function: `initialized` may be a boolean tensor (e.g. a non-trainable
    variable set to True after the first step, or `step > 0`) and the choice
    is made with `ops.where`, so it runs inside a compiled step. No gradient
    flows through the result.

    Args:
        correlation: the running average `F`, shape `(D, D)`; ignored while
            `initialized` is false (zeros are fine).
        batch_correlation: this batch's value, from `unigrad_correlation`,
            shape `(D, D)`.
        initialized: Python or tensor boolean, whether `correlation` already
            holds an average.
        rho: the decay of the average, a number in `[0, 1]` (0.99 in
            UniGrad).

    Returns:
        The new float32 average, shape `(D, D)`.
    """
    rho = _validation.check_probability(rho, "rho")
    correlation = check_matrix("correlation", correlation)
    batch_correlation = check_matrix("batch_correlation", batch_correlation)
    check_same_shape(correlation=correlation, batch_correlation=batch_correlation)
    correlation = ops.cast(correlation, "float32")
    batch_correlation = ops.cast(batch_correlation, "float32")
    average = rho * correlation + (1.0 - rho) * batch_correlation
    initialized = ops.cast(ops.convert_to_tensor(initialized), "bool")
    return ops.stop_gradient(ops.where(initialized, average, batch_correlation))


def _unigrad_normalized(z_a, z_b, t_a, t_b, correlation, lambda_):
    """`unigrad` on float32 inputs that are already L2-normalised."""
    t_a = ops.stop_gradient(t_a)
    t_b = ops.stop_gradient(t_b)
    correlation = ops.stop_gradient(correlation)
    grad_a = ops.stop_gradient(-t_b + lambda_ * ops.matmul(z_a, correlation))
    grad_b = ops.stop_gradient(-t_a + lambda_ * ops.matmul(z_b, correlation))
    loss_a = ops.mean(ops.sum(grad_a * z_a, axis=-1))
    loss_b = ops.mean(ops.sum(grad_b * z_b, axis=-1))
    return 0.5 * (loss_a + loss_b)


def unigrad(z_a, z_b, target_a, target_b, correlation, lambda_=100.0):
    """Loss of UniGrad (Tao et al., 2022), written through its gradient.

    UniGrad specifies the gradient, not a loss: for the online projection
    `z_a` of view a (L2-normalised), the positive `t_b` (the momentum
    encoder's L2-normalised projection of view b) pulls and the running
    correlation `F` of the targets pushes,

        g_a = -t_b + lambda * z_a F        (row by row, F symmetric (D, D))

    and symmetrically `g_b = -t_a + lambda * z_b F`. This function returns
    the surrogate

        loss = 0.5 * (mean_n <stop_gradient(g_a[n]), z_a[n]>
                      + mean_n <stop_gradient(g_b[n]), z_b[n]>)

    whose gradient with respect to the normalised `z_a[n]` is exactly
    `0.5 * g_a[n] / N` (and `0.5 * g_b[n] / N` for `z_b[n]`); with respect
    to the raw projection it passes through the normalisation's Jacobian,
    `(I - z z^T) / ||z||`. Targets and `F` receive no gradient.

    Conventions, compared with the official code (fundamentalvision/UniGrad,
    `Pretrainer.loss_unigrad`): the same normalisation (of all four
    projections, before the gradient is formed), the same `g`, the same
    `0.5` and mean over the batch, so the same gradient, w.r.t. the
    normalised and the raw projections. Two differences of arrangement:
    the official loss updates its stored `F` with the current batch and
    then uses it; here that is three calls, `unigrad_correlation`,
    `update_correlation` and this function with the updated `F` (see the
    example), which keeps the function pure. And the official step runs
    under `torch.cuda.amp.autocast` (float16); here the computation is in
    float32 whatever the input dtype.

    The value of the surrogate is not an objective that training lowers (it
    contains `lambda * z F z^T` once where a loss with this gradient would
    have half of it); monitor the positive similarity instead, as the
    official code logs it: `0.5 * (mean cos(z_a, t_b) + mean cos(z_b,
    t_a))`, each view's online projection against the other view's target
    (the `positive_similarity` of `keras_simclr.objectives.UniGrad`).

    Args:
        z_a: online projections of the first views, shape `(N, D)`.
        z_b: online projections of the second views, shape `(N, D)`.
        target_a: momentum-encoder projections of the first views, `(N, D)`.
        target_b: momentum-encoder projections of the second views, `(N, D)`.
            Row `n` of all four comes from the same image.
        correlation: the running correlation `F`, shape `(D, D)`, from
            `update_correlation`.
        lambda_: non-negative float, the weight of the push (100 in UniGrad).

    Returns:
        A float32 scalar.

    Example:

    ```python
    z_a, z_b = keras.random.normal((8, 128)), keras.random.normal((8, 128))
    t_a, t_b = keras.random.normal((8, 128)), keras.random.normal((8, 128))
    correlation = keras.Variable(keras.ops.zeros((128, 128)), trainable=False)
    initialized = keras.Variable(False, dtype="bool", trainable=False)

    batch_correlation = keras_simclr.losses.unigrad_correlation(t_a, t_b)
    new_correlation = keras_simclr.losses.update_correlation(
        correlation, batch_correlation, initialized, rho=0.99
    )
    loss = keras_simclr.losses.unigrad(
        z_a, z_b, t_a, t_b, new_correlation, lambda_=100.0
    )
    correlation.assign(new_correlation)
    initialized.assign(True)
    ```

    References:
        - [Tao et al., 2022](https://arxiv.org/abs/2112.05141), Exploring
          the Equivalence of Siamese Self-Supervised Learning via A Unified
          Gradient Framework.
    """
    lambda_ = _validation.check_non_negative_number(lambda_, "lambda_")
    z_a = check_matrix("z_a", z_a)
    z_b = check_matrix("z_b", z_b)
    target_a = check_matrix("target_a", target_a)
    target_b = check_matrix("target_b", target_b)
    correlation = check_matrix("correlation", correlation)
    check_same_shape(z_a=z_a, z_b=z_b, target_a=target_a, target_b=target_b)
    dim = z_a.shape[1]
    if dim is not None and tuple(correlation.shape) != (dim, dim):
        raise ValueError(
            f"`correlation` must have shape (D, D) with D={dim}, the "
            f"projections' dimension. Received: correlation.shape="
            f"{tuple(correlation.shape)}"
        )
    return _unigrad_normalized(
        _normalize(z_a),
        _normalize(z_b),
        _normalize(target_a),
        _normalize(target_b),
        ops.cast(correlation, "float32"),
        lambda_,
    )


@keras.saving.register_keras_serializable(package="keras_simclr")
class UniGrad(keras.losses.Loss):
    """Loss of UniGrad as a `keras.losses.Loss`.

    Deprecated: train with
    `SimCLRPretrainer(objective=keras_simclr.objectives.UniGrad(...))`, or
    call `keras_simclr.losses.unigrad`; constructing it warns.

    `y_pred` is a dict `{"projection": z, "target": t, "correlation": F}`:
    `z` the online projections and `t` the momentum encoder's, each
    `(2N, D)` stacking both views on the batch axis (first all first views,
    then all second views), and `F` the running correlation `(D, D)`, kept
    by the caller with `unigrad_correlation` and `update_correlation`;
    `y_true` is ignored. See `keras_simclr.losses.unigrad` for the gradient
    it realises and its conventions.

    Args:
        lambda_: non-negative float, the weight of the correlation push.
        name: name of the loss.

    Example:

    ```python
    loss_fn = keras_simclr.losses.UniGrad(lambda_=100.0)
    z = keras.random.normal((16, 128))  # 8 images, two views each
    t = keras.random.normal((16, 128))
    t_a, t_b = keras.ops.split(t, 2)
    correlation = keras_simclr.losses.unigrad_correlation(t_a, t_b)
    loss = loss_fn(None, {"projection": z, "target": t, "correlation": correlation})
    ```
    """

    def __init__(self, lambda_=100.0, name="unigrad", **kwargs):
        warn_deprecated_loss("UniGrad", "UniGrad", "unigrad")
        super().__init__(name=name, reduction=None, **kwargs)
        self.lambda_ = _validation.check_non_negative_number(lambda_, "lambda_")

    def call(self, y_true, y_pred):
        z_a, z_b = ops.split(y_pred["projection"], 2, axis=0)
        t_a, t_b = ops.split(y_pred["target"], 2, axis=0)
        return unigrad(z_a, z_b, t_a, t_b, y_pred["correlation"], self.lambda_)

    def __call__(self, y_true, y_pred, sample_weight=None):
        _input_checks.check_dict_call("UniGrad", y_pred, sample_weight, _KEYS)
        for key in ("projection", "target"):
            shape = getattr(y_pred[key], "shape", None)
            if shape is None or len(shape) != 2 or (
                shape[0] is not None and (shape[0] % 2 or shape[0] < 2)
            ):
                raise ValueError(
                    f'`y_pred["{key}"]` must stack the two views of the batch, '
                    f"shape (2N, D) with N >= 1. Received: shape="
                    f"{None if shape is None else tuple(shape)}"
                )
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config["lambda_"] = self.lambda_
        return config
