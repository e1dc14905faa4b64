"""Barlow Twins, the redundancy-reduction objective of Zbontar et al. (2021)."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.losses import _input_checks
from keras_simclr import distribute
from keras_simclr.losses._deprecated import warn_deprecated_loss

# PyTorch's `BatchNorm1d` default, which the official code standardises with.
_BATCH_NORM_EPSILON = 1e-5


def _gather_branches(z_a, z_b, cross_replica):
    """The global batch of both branches when `cross_replica`, else the local."""
    if not cross_replica:
        return z_a, z_b
    return distribute.cross_replica_concat(z_a), distribute.cross_replica_concat(z_b)


def _off_diagonal(matrix):
    """`matrix` (D x D) with its diagonal set to 0."""
    index = ops.arange(ops.shape(matrix)[0])
    return ops.where(index[:, None] == index[None, :], 0.0, matrix)


def _standardize(z):
    """Batch norm without affine parameters, in training mode."""
    centred = z - ops.mean(z, axis=0, keepdims=True)
    variance = ops.mean(ops.square(centred), axis=0, keepdims=True)
    return centred / ops.sqrt(variance + _BATCH_NORM_EPSILON)


def barlow_twins(z_a, z_b, lambda_offdiag=5e-3, cross_replica=False):
    """Barlow Twins loss (Zbontar et al., 2021, eq. 1).

    Each branch is standardised over the batch, every dimension to mean 0
    and standard deviation 1, as the official code does with a
    `BatchNorm1d(affine=False)` in training mode: the biased variance (a
    divisor of `N`) and `eps = 1e-5` inside the square root,
    `(z - mean) / sqrt(var + 1e-5)`. The cross-correlation matrix of the two
    standardised branches is

        C = z_a^T z_b / N                                  (D x D)

    and the loss

        L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

    which pulls the two views of each dimension together (invariance) and
    decorrelates the dimensions (redundancy reduction). The loss is a sum
    over `D` and `D^2` entries, not a mean: its size grows with `D`, as in
    the official code.

    The paper gives `lambda = 5e-3`; the official code defaults to
    `--lambd 0.0051`. Pass `lambda_offdiag=0.0051` to match it exactly.

    On several processes the official gradient is not that of its loss:
    `torch.distributed.all_reduce(c)` is not differentiated, so each
    process back-propagates only its own share of `C`, and
    `DistributedDataParallel` then averages the processes' gradients: the
    official step follows `1 / world_size` of the gradient of the global
    loss (the true gradient on one process). Here the loss and its
    gradient are the true ones at every world size. The official
    hyper-parameters were tuned with that factor (the paper trains on 32
    GPUs): under its LARS the trust ratio makes a weight matrix's step
    insensitive to the gradient's scale, except that weight decay weighs
    `world_size` times more against the gradient, while biases and
    batch-norm parameters (no trust ratio) take steps `world_size` times
    smaller.

    The computation runs in float32 even for float16 / bfloat16 inputs.

    Args:
        z_a: projections of the first views, shape `(N, D)`, `N >= 2`.
        z_b: projections of the second views, shape `(N, D)`; row `n` of `z_a`
            and of `z_b` come from the same image.
        lambda_offdiag: number >= 0, the weight `lambda` of the off-diagonal
            (redundancy-reduction) term.
        cross_replica: if True, inside a replica of a `tf.distribute`
            strategy with several replicas, both branches of every replica
            are first gathered with
            `keras_simclr.distribute.cross_replica_concat` (gradient
            included) and the same formula is applied to the global batch:
            the batch statistics and `C` are those of the global batch,
            `N` its size, and every replica computes the same global loss.
            This is the official code's loss value (synchronised batch norm
            and an `all_reduce` of `C`). Since the replicas' gradients are
            summed, the model divides each replica's loss by the number of
            replicas (`keras_simclr.distribute.scale_loss`) before taking
            gradients, so that a step follows the gradient of the global
            loss once. Without a strategy, and on JAX and PyTorch, it
            changes nothing (under `keras.distribution.DataParallel` the
            step already sees the global batch).

    Returns:
        A float32 scalar.

    Example:

    ```python
    z_a = keras.random.normal((32, 64))
    z_b = z_a + 0.1 * keras.random.normal((32, 64))
    loss = keras_simclr.losses.barlow_twins(z_a, z_b, lambda_offdiag=5e-3)
    ```

    References:
        - [Zbontar et al., 2021](https://arxiv.org/abs/2103.03230),
          Barlow Twins.
        - [facebookresearch/barlowtwins](
          https://github.com/facebookresearch/barlowtwins), `main.py`.
    """
    lambda_offdiag = _validation.check_non_negative_number(
        lambda_offdiag, "lambda_offdiag"
    )
    z_a, z_b = _input_checks.check_branches(z_a, z_b)
    z_a, z_b = _gather_branches(z_a, z_b, cross_replica)
    batch_size = ops.cast(ops.shape(z_a)[0], "float32")
    correlation = (
        ops.matmul(ops.transpose(_standardize(z_a)), _standardize(z_b)) / batch_size
    )
    on_diagonal = ops.sum(ops.square(1.0 - ops.diagonal(correlation)))
    off_diagonal = ops.sum(ops.square(_off_diagonal(correlation)))
    return on_diagonal + lambda_offdiag * off_diagonal


@keras.saving.register_keras_serializable(package="keras_simclr")
class BarlowTwins(keras.losses.Loss):
    """Barlow Twins loss as a `keras.losses.Loss`.

    Deprecated: train with
    `SimCLRPretrainer(objective=keras_simclr.objectives.BarlowTwins(...))`, or
    call `keras_simclr.losses.barlow_twins`; constructing it warns.

    `y_pred` holds both views' projections stacked on the batch axis,
    `concatenate([z_a, z_b])` of shape `(2N, D)`; `y_true` is ignored. See
    `keras_simclr.losses.barlow_twins` for the formula and its conventions.

    Args:
        lambda_offdiag: number >= 0, the weight of the off-diagonal term.
        name: name of the loss.

    Example:

    ```python
    loss_fn = keras_simclr.losses.BarlowTwins(lambda_offdiag=5e-3)
    z = keras.random.normal((64, 32))  # 32 images, two views each
    loss = loss_fn(None, z)
    ```
    """

    def __init__(self, lambda_offdiag=5e-3, name="barlow_twins", **kwargs):
        warn_deprecated_loss("BarlowTwins", "BarlowTwins", "barlow_twins")
        super().__init__(name=name, reduction=None, **kwargs)
        self.lambda_offdiag = _validation.check_non_negative_number(
            lambda_offdiag, "lambda_offdiag"
        )

    def call(self, y_true, y_pred):
        z_a, z_b = ops.split(y_pred, 2, axis=0)
        return barlow_twins(z_a, z_b, self.lambda_offdiag)

    def __call__(self, y_true, y_pred, sample_weight=None):
        _input_checks.check_stacked_views(type(self).__name__, y_pred, sample_weight)
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config["lambda_offdiag"] = self.lambda_offdiag
        return config
