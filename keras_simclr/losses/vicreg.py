"""VICReg, the variance-invariance-covariance objective of Bardes et al. (2022)."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.losses import _input_checks

# Shared with Barlow Twins.
from keras_simclr.losses.barlow_twins import _gather_branches
from keras_simclr.losses.barlow_twins import _off_diagonal
from keras_simclr.losses._deprecated import warn_deprecated_loss

# Added to the variance before the square root, as the official code does:
# keeps the gradient of the standard deviation finite for a collapsed
# dimension.
_VARIANCE_EPSILON = 1e-4


def _check_weights(invariance_weight, variance_weight, covariance_weight):
    """The three coefficients as floats, each a finite number >= 0."""
    return (
        _validation.check_non_negative_number(invariance_weight, "invariance_weight"),
        _validation.check_non_negative_number(variance_weight, "variance_weight"),
        _validation.check_non_negative_number(covariance_weight, "covariance_weight"),
    )


def _vicreg_terms(z_a, z_b):
    """`(invariance, variance, covariance)` of two float32 `(N, D)` branches."""
    invariance = ops.mean(ops.square(z_a - z_b))
    batch_size = ops.cast(ops.shape(z_a)[0], "float32")
    dim = ops.cast(ops.shape(z_a)[1], "float32")
    variance = 0.0
    covariance = 0.0
    for z in (z_a, z_b):
        centred = z - ops.mean(z, axis=0, keepdims=True)
        # Unbiased (N - 1), as torch.var and the official covariance.
        std = ops.sqrt(
            ops.sum(ops.square(centred), axis=0) / (batch_size - 1.0)
            + _VARIANCE_EPSILON
        )
        variance = variance + ops.mean(ops.relu(1.0 - std)) / 2.0
        cov = ops.matmul(ops.transpose(centred), centred) / (batch_size - 1.0)
        covariance = covariance + ops.sum(ops.square(_off_diagonal(cov))) / dim
    return invariance, variance, covariance


def vicreg(
    z_a,
    z_b,
    invariance_weight=25.0,
    variance_weight=25.0,
    covariance_weight=1.0,
    cross_replica=False,
):
    """VICReg loss (Bardes et al., 2022, eq. 6), as the official code computes it.

    Three terms on the two branches `z_a`, `z_b` of `N` images and `D`
    dimensions:

    - invariance: the mean squared error between the branches, a mean over
      all `N * D` entries (`F.mse_loss`):
      `s = 1/(N D) sum_{n,d} (z_a[n,d] - z_b[n,d])^2`;
    - variance: for each branch and dimension `d`, the standard deviation
      over the batch `std_d = sqrt(var_d + 1e-4)` with the unbiased variance
      (divisor `N - 1`), then a hinge at 1 averaged over the dimensions, the
      two branches averaged:
      `v = mean_d relu(1 - std_d(z_a)) / 2 + mean_d relu(1 - std_d(z_b)) / 2`;
    - covariance: for each branch, centred over the batch,
      `cov = z^T z / (N - 1)` (D x D); the sum of its squared off-diagonal
      entries divided by `D`, the two branches added (not averaged):
      `c = sum_{i != j} cov_ij(z_a)^2 / D + sum_{i != j} cov_ij(z_b)^2 / D`;

    and `L = invariance_weight * s + variance_weight * v +
    covariance_weight * c`. The defaults are the paper's and the official
    code's (`--sim-coeff 25 --std-coeff 25 --cov-coeff 1`).

    The computation runs in float32 even for float16 / bfloat16 inputs.

    Args:
        z_a: embeddings of the first views, shape `(N, D)`, `N >= 2`.
        z_b: embeddings of the second views, shape `(N, D)`; row `n` of `z_a`
            and of `z_b` come from the same image.
        invariance_weight: number >= 0, the weight of the invariance term
            (`lambda` in the paper).
        variance_weight: number >= 0, the weight of the variance term
            (`mu`).
        covariance_weight: number >= 0, the weight of the covariance term
            (`nu`).
        cross_replica: if True, inside a replica of a `tf.distribute`
            strategy with several replicas, both branches of every replica
            are first gathered with
            `keras_simclr.distribute.cross_replica_concat` (gradient
            included) and the same formula is applied to the global batch:
            `N` is its size, and every replica computes the same global
            loss. Since the replicas' gradients are summed, the model
            divides each replica's loss by the number of replicas
            (`keras_simclr.distribute.scale_loss`) before taking gradients,
            so that a step follows the gradient of the global loss once.
            The official code gathers with its `FullGatherLayer` after
            computing the invariance term on the local batch; with equal
            local batches the mean over replicas of the local invariances is
            the global one, so the loss and its gradient are the same.
            Without a strategy, and on JAX and PyTorch, it changes nothing
            (under `keras.distribution.DataParallel` the step already sees
            the global batch).

    Returns:
        A float32 scalar.

    Example:

    ```python
    z_a = keras.random.normal((32, 64))
    z_b = z_a + 0.1 * keras.random.normal((32, 64))
    loss = keras_simclr.losses.vicreg(z_a, z_b)
    ```

    References:
        - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), VICReg.
        - [facebookresearch/vicreg](https://github.com/facebookresearch/vicreg),
          `main_vicreg.py`.
    """
    invariance_weight, variance_weight, covariance_weight = _check_weights(
        invariance_weight, variance_weight, covariance_weight
    )
    z_a, z_b = _input_checks.check_branches(z_a, z_b)
    z_a, z_b = _gather_branches(z_a, z_b, cross_replica)
    invariance, variance, covariance = _vicreg_terms(z_a, z_b)
    return (
        invariance_weight * invariance
        + variance_weight * variance
        + covariance_weight * covariance
    )


@keras.saving.register_keras_serializable(package="keras_simclr")
class VICReg(keras.losses.Loss):
    """VICReg loss as a `keras.losses.Loss`.

    Deprecated: train with
    `SimCLRPretrainer(objective=keras_simclr.objectives.VICReg(...))`, or
    call `keras_simclr.losses.vicreg`; constructing it warns.

    `y_pred` holds both views' embeddings stacked on the batch axis,
    `concatenate([z_a, z_b])` of shape `(2N, D)`; `y_true` is ignored. See
    `keras_simclr.losses.vicreg` for the formula and its conventions.

    Args:
        invariance_weight: number >= 0, the weight of the invariance term.
        variance_weight: number >= 0, the weight of the variance term.
        covariance_weight: number >= 0, the weight of the covariance term.
        name: name of the loss.

    Example:

    ```python
    loss_fn = keras_simclr.losses.VICReg()
    z = keras.random.normal((64, 32))  # 32 images, two views each
    loss = loss_fn(None, z)
    ```
    """

    def __init__(
        self,
        invariance_weight=25.0,
        variance_weight=25.0,
        covariance_weight=1.0,
        name="vicreg",
        **kwargs,
    ):
        warn_deprecated_loss("VICReg", "VICReg", "vicreg")
        super().__init__(name=name, reduction=None, **kwargs)
        (
            self.invariance_weight,
            self.variance_weight,
            self.covariance_weight,
        ) = _check_weights(invariance_weight, variance_weight, covariance_weight)

    def call(self, y_true, y_pred):
        z_a, z_b = ops.split(y_pred, 2, axis=0)
        return vicreg(
            z_a,
            z_b,
            invariance_weight=self.invariance_weight,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        _input_checks.check_stacked_views(type(self).__name__, y_pred, sample_weight)
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config.update(
            invariance_weight=self.invariance_weight,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
        )
        return config
