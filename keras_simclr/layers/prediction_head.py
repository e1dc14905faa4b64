"""The prediction head q(.) of BYOL and SimSiam."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.layers.fused_batch_normalization import FusedBatchNormalization


@keras.saving.register_keras_serializable(package="keras_simclr")
class PredictionHead(keras.layers.Layer):
    """Prediction head: the small MLP of the online branch of BYOL and SimSiam.

    Dense (no bias) + batch norm + ReLU of width `hidden_dim`, then Dense with
    bias back to `output_dim`. It maps the online projection to a prediction
    of the other view's (target) projection; the asymmetry it creates,
    together with the stop-gradient on the target, is what keeps these
    objectives from collapsing without negatives.

    BYOL uses `hidden_dim=4096` on 256-d projections; SimSiam a bottleneck,
    `hidden_dim=512` on 2048-d projections.

    Args:
        hidden_dim: width of the hidden layer.
        output_dim: width of the prediction; `None` takes the width of the
            input (the prediction lives in the projection space).
        batch_norm_momentum: momentum of the batch norm's moving statistics.
        batch_norm_epsilon: epsilon of the batch norm.
        **kwargs: passed to `keras.layers.Layer` (name, dtype, ...).

    Example:

    ```python
    head = keras_simclr.layers.PredictionHead(hidden_dim=512)
    p = head(keras.random.normal((8, 128)))  # (8, 128)
    ```

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), BYOL.
        - [Chen & He, 2021](https://arxiv.org/abs/2011.10566), SimSiam.
    """

    def __init__(
        self,
        hidden_dim=4096,
        output_dim=None,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_dim = _validation.check_int(hidden_dim, "hidden_dim")
        output_dim = _validation.check_int(output_dim, "output_dim", allow_none=True)
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.batch_norm_momentum = batch_norm_momentum
        self.batch_norm_epsilon = batch_norm_epsilon
        self.hidden = keras.layers.Dense(
            hidden_dim, use_bias=False, dtype=self.dtype_policy, name="dense_0"
        )
        self.batch_norm = FusedBatchNormalization(
            momentum=batch_norm_momentum,
            epsilon=batch_norm_epsilon,
            dtype=self.dtype_policy,
            name="batch_norm_0",
        )
        # Its width is known once the input's is (output_dim=None).
        self.output_dense = keras.layers.Dense(
            output_dim or 1, dtype=self.dtype_policy, name="dense_1"
        )

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "PredictionHead expects inputs of shape (batch, features) with "
                f"a known feature size. Received: input_shape={input_shape}"
            )
        self.output_dense.units = self.output_dim or input_shape[-1]
        self.hidden.build(input_shape)
        self.batch_norm.build((input_shape[0], self.hidden_dim))
        self.output_dense.build((input_shape[0], self.hidden_dim))

    def call(self, inputs, training=None):
        x = self.batch_norm(self.hidden(inputs), training=training)
        return self.output_dense(ops.relu(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim or input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim,
                "batch_norm_momentum": self.batch_norm_momentum,
                "batch_norm_epsilon": self.batch_norm_epsilon,
            }
        )
        return config
