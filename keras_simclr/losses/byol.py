"""BYOL's regression loss."""

import keras
from keras import ops

from keras_simclr.losses import _input_checks
from keras_simclr.losses._deprecated import moved_to_momentum
from keras_simclr.losses._deprecated import warn_deprecated_loss

_KEYS = ("prediction", "target")


__getattr__ = moved_to_momentum(__name__, ("cosine_momentum",))


def _paired_cosines(p, z):
    """Cosines of each view's prediction with the other view's target.

    `p` and `z` stack the two views on the batch axis, `(2N, D)`. Returns
    `(cos_ab, cos_ba)`, each `(N,)` and float32: `cos(p_a, z_b)` and
    `cos(p_b, z_a)`, with no gradient to `z`.
    """
    p = _input_checks.check_matrix("p", p)
    z = _input_checks.check_matrix("z", z)
    _input_checks.check_same_shape(p=p, z=z)
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


@keras.saving.register_keras_serializable(package="keras_simclr")
class BYOL(keras.losses.Loss):
    """Regression loss of BYOL as a `keras.losses.Loss`.

    Deprecated: train with
    `SimCLRPretrainer(objective=keras_simclr.objectives.BYOL(...))`, or
    call `keras_simclr.losses.byol`; constructing it warns.

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
        warn_deprecated_loss("BYOL", "BYOL", "byol")
        super().__init__(name=name, reduction=None, **kwargs)

    def call(self, y_true, y_pred):
        return byol(y_pred["prediction"], y_pred["target"])

    def __call__(self, y_true, y_pred, sample_weight=None):
        _input_checks.check_dict_call("BYOL", y_pred, sample_weight, _KEYS)
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        return config
