"""UniGrad (Tao et al., 2022): a gradient that pulls the positive and pushes
along the running correlation of the momentum targets."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.losses.unigrad import unigrad
from keras_simclr.losses.unigrad import unigrad_correlation
from keras_simclr.losses.unigrad import update_correlation
from keras_simclr.objectives.momentum import MomentumObjective


@keras.saving.register_keras_serializable(package="keras_simclr.objectives")
class UniGrad(MomentumObjective):
    """UniGrad, as its Algorithm 1:

    1. before the step, the target moves:
       `target = m * target + (1 - m) * online`;
    2. the targets `t_a`, `t_b` of the views (L2-normalised, no gradient)
       give the batch correlation `F_batch = (t_a^T t_a + t_b^T t_b) / 2N`
       over the global batch, and the running correlation becomes
       `F = rho * F + (1 - rho) * F_batch` (`F = F_batch` at the first
       step);
    3. the online projection `z_a` gets the gradient
       `-t_b + lambda_ * z_a F` (and symmetrically `z_b`), through the
       surrogate loss `keras_simclr.losses.unigrad`.

    Outside training (evaluate) the running `F` is read, not moved; before
    the first training step the batch's own `F_batch` stands in.

    The surrogate loss is logged as `unigrad_loss` but is not what training
    lowers; the number to watch is `positive_similarity`, the official
    code's `pos_sim`: each view's online projection against the other
    view's target, `0.5 * (mean cos(z_a, t_b) + mean cos(z_b, t_a))`.

    Args:
        lambda_: weight of the correlation term; 100, the paper's.
        rho: the running average's decay; 0.99, the paper's.
        momentum: `m`; `None` for 0.996.
        momentum_schedule_steps: if set, `m` rises to 1 along BYOL's cosine
            schedule over this many steps.

    References:
        - [Tao et al., 2022](https://arxiv.org/abs/2112.05141), UniGrad.
    """

    key = "unigrad"
    loss_metric_name = "unigrad_loss"

    def __init__(
        self,
        lambda_=100.0,
        rho=0.99,
        momentum=None,
        momentum_schedule_steps=None,
        **kwargs,
    ):
        super().__init__(
            momentum=momentum, momentum_schedule_steps=momentum_schedule_steps, **kwargs
        )
        self.lambda_ = _validation.check_number(lambda_, "lambda_", minimum=0)
        self.rho = _validation.check_number(
            rho, "rho", minimum=0, maximum=1, include_maximum=False
        )

    def build(self, view_shape, feature_shape, projection_shape):
        super().build(view_shape, feature_shape, projection_shape)
        dim = projection_shape[-1]
        self.correlation = self.add_weight(
            shape=(dim, dim), initializer="zeros", trainable=False,
            dtype="float32", name="correlation",
        )
        self.correlation_initialized = self.add_weight(
            shape=(), initializer="zeros", trainable=False,
            dtype="float32", name="correlation_initialized",
        )

    def compute_loss(self, outputs, labels=None, training=True):
        z_a, z_b = self.split_views(outputs["projection"])
        t_a, t_b = self.split_views(outputs["target_projection"])
        batch_correlation = unigrad_correlation(t_a, t_b, cross_replica=True)
        current = ops.convert_to_tensor(self.correlation)
        initialized = ops.convert_to_tensor(self.correlation_initialized) > 0.5
        if training:
            correlation = update_correlation(
                current, batch_correlation, initialized, self.rho
            )
            self.correlation.assign(correlation)
            self.correlation_initialized.assign(1.0)
        else:
            correlation = ops.where(initialized, current, batch_correlation)
        loss = unigrad(z_a, z_b, t_a, t_b, correlation, lambda_=self.lambda_)
        return self.record(loss, outputs)

    def record(self, loss, outputs):
        """Updates `unigrad_loss` and `positive_similarity` (online against
        target, as the official code's `pos_sim`); returns `loss`."""
        z_a, z_b = self.split_views(ops.cast(outputs["projection"], "float32"))
        t_a, t_b = self.split_views(
            ops.cast(outputs["target_projection"], "float32")
        )
        weight = self.batch_weight(z_a)
        self.loss_tracker.update_state(loss, sample_weight=weight)

        def mean_cosine(x, y):
            x, y = ops.normalize(x, axis=-1), ops.normalize(y, axis=-1)
            return ops.mean(ops.sum(x * y, axis=-1))

        similarity = 0.5 * (mean_cosine(z_a, t_b) + mean_cosine(z_b, t_a))
        self.positive_similarity_tracker.update_state(
            similarity, sample_weight=weight
        )
        return loss

    def get_config(self):
        return {**super().get_config(), "lambda_": self.lambda_, "rho": self.rho}
