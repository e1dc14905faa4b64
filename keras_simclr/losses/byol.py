"""BYOL's regression loss and the cosine schedule of its target momentum."""

import math

import keras
from keras import ops

from keras_simclr import _validation

_KEYS = ("prediction", "target")


def _paired_cosines(p, z):
    """Cosines of each view's prediction with the other view's target.

    `p` and `z` stack the two views on the batch axis, `(2N, D)`. Returns
    `(cos_ab, cos_ba)`, each `(N,)` and float32: `cos(p_a, z_b)` and
    `cos(p_b, z_a)`, with no gradient to `z`.
    """
    p = _validation.check_matrix("p", p)
    z = _validation.check_matrix("z", z)
    _validation.check_same_shape(p=p, z=z)
    if p.shape[0] is not None and (p.shape[0] % 2 or p.shape[0] < 2):
        raise ValueError(
            "`p` must stack the two views of the batch, shape (2N, D) with "
            f"N >= 1. Received: p.shape={tuple(p.shape)}"
        )
    p = ops.normalize(ops.cast(p, "float32"), axis=-1, epsilon=1e-12)
    z = ops.normalize(ops.cast(z, "float32"), axis=-1, epsilon=1e-12)
    z = ops.stop_gradient(z)
    p_a, p_b = ops.split(p, 2, axis=0)
    z_a, z_b = ops.split(z, 2, axis=0)
    return ops.sum(p_a * z_b, axis=-1), ops.sum(p_b * z_a, axis=-1)




def byol(p, z):
    """Regression loss of BYOL (Grill et al., 2020, eq. 2), both directions.

    The online network's prediction of each view regresses the target
    network's projection of the other view. With `p = concatenate([p_a, p_b])`
    and `z = concatenate([z_a, z_b])`, L2-normalised row by row:

        L  = mean_n ||p_a[n] - z_b[n]||^2 = mean_n (2 - 2 cos(p_a[n], z_b[n]))
        L~ = mean_n (2 - 2 cos(p_b[n], z_a[n]))
        loss = L + L~

    the paper's symmetrised `L + L~`, as the official code
    (deepmind-research/byol) sums the two directions; it lies in `[0, 8]`.
    `z` receives no gradient (`stop_gradient` is applied here): it comes
    from the target network, whose weights follow the online network's by
    an exponential moving average (see `cosine_momentum`). The computation
    runs in float32 whatever the input dtype.

    Args:
        p: the online network's predictions of both views, `(2N, D)`: first
            all first views, then all second views.
        z: the target network's projections, stacked the same way, `(2N, D)`.
            `p[n]` (view a) is paired with `z[N + n]` (view b) and `p[N + n]`
            with `z[n]`.

    Returns:
        A float32 scalar.

    Example:

    ```python
    p = keras.random.normal((16, 256))  # 8 images, two views each
    z = keras.random.normal((16, 256))
    loss = keras_simclr.losses.byol(p, z)
    ```

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), BYOL.
    """
    cos_ab, cos_ba = _paired_cosines(p, z)
    return ops.mean(2.0 - 2.0 * cos_ab) + ops.mean(2.0 - 2.0 * cos_ba)


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
    tau = keras_simclr.losses.cosine_momentum(
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


@keras.saving.register_keras_serializable(package="keras_simclr")
class BYOL(keras.losses.Loss):
    """Regression loss of BYOL as a `keras.losses.Loss`.

    `y_pred` is a dict `{"prediction": p, "target": z}`, each `(2N, D)`
    stacking both views on the batch axis (first all first views, then all
    second views); `y_true` is ignored. See `keras_simclr.losses.byol` for
    the formula, the stop-gradient on `z` and the reduction (`L + L~`, each
    a mean over `N` images).

    Args:
        name: name of the loss.

    Example:

    ```python
    loss_fn = keras_simclr.losses.BYOL()
    p = keras.random.normal((16, 256))
    z = keras.random.normal((16, 256))
    loss = loss_fn(None, {"prediction": p, "target": z})
    ```
    """

    def __init__(self, name="byol", **kwargs):
        super().__init__(name=name, reduction=None, **kwargs)

    def call(self, y_true, y_pred):
        return byol(y_pred["prediction"], y_pred["target"])

    def __call__(self, y_true, y_pred, sample_weight=None):
        _validation.check_dict_call("BYOL", y_pred, sample_weight, _KEYS)
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        return config
