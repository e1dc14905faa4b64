"""SimSiam's symmetrised negative cosine similarity."""

import keras
from keras import ops

from keras_simclr.losses import _input_checks
from keras_simclr.losses.byol import _KEYS
from keras_simclr.losses.byol import _paired_cosines
from keras_simclr.losses._deprecated import warn_deprecated_loss


def simsiam(p, z):
    """Loss of SimSiam (Chen & He, 2021, eq. 1-2), both directions averaged.

    The predictor's output for each view is pulled towards the other view's
    projection, which receives no gradient (the stop-gradient that keeps
    SimSiam from collapsing). With `p = concatenate([p_a, p_b])`,
    `z = concatenate([z_a, z_b])` and

        D(p, z) = -mean_n cos(p[n], stop_gradient(z[n]))

    the loss is

        loss = 0.5 * (D(p_a, z_b) + D(p_b, z_a))

    as in the paper and the official code (facebookresearch/simsiam); it
    lies in `[-1, 1]`, -1 when each prediction is parallel to its target.
    It equals `byol(p, z) / 4 - 1` (without BYOL's momentum encoder, which
    is the model's business, not the loss's). The computation runs in
    float32 whatever the input dtype.

    Args:
        p: the predictor's outputs for both views, `(2N, D)`: first all first
            views, then all second views.
        z: the projections, stacked the same way, `(2N, D)`. `p[n]` (view a)
            is paired with `z[N + n]` (view b) and `p[N + n]` with `z[n]`.

    Returns:
        A float32 scalar.

    Example:

    ```python
    p = keras.random.normal((16, 2048))  # 8 images, two views each
    z = keras.random.normal((16, 2048))
    loss = keras_simclr.losses.simsiam(p, z)
    ```

    References:
        - [Chen & He, 2021](https://arxiv.org/abs/2011.10566), SimSiam.
    """
    cos_ab, cos_ba = _paired_cosines(p, z)
    return -0.5 * (ops.mean(cos_ab) + ops.mean(cos_ba))


@keras.saving.register_keras_serializable(package="keras_simclr")
class SimSiam(keras.losses.Loss):
    """Loss of SimSiam as a `keras.losses.Loss`.

    Deprecated: train with
    `SimCLRPretrainer(objective=keras_simclr.objectives.SimSiam(...))`, or
    call `keras_simclr.losses.simsiam`; constructing it warns.

    `y_pred` is a dict `{"prediction": p, "target": z}`, each `(2N, D)`
    stacking both views on the batch axis (first all first views, then all
    second views); `y_true` is ignored. See `keras_simclr.losses.simsiam`
    for the formula, the stop-gradient on `z` and the reduction.

    Args:
        name: name of the loss.

    Example:

    ```python
    loss_fn = keras_simclr.losses.SimSiam()
    p = keras.random.normal((16, 2048))
    z = keras.random.normal((16, 2048))
    loss = loss_fn(None, {"prediction": p, "target": z})
    ```
    """

    def __init__(self, name="simsiam", **kwargs):
        warn_deprecated_loss("SimSiam", "SimSiam", "simsiam")
        super().__init__(name=name, reduction=None, **kwargs)

    def call(self, y_true, y_pred):
        return simsiam(y_pred["prediction"], y_pred["target"])

    def __call__(self, y_true, y_pred, sample_weight=None):
        _input_checks.check_dict_call("SimSiam", y_pred, sample_weight, _KEYS)
        return self.call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        return config
