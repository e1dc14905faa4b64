"""The MLP projection head g(.) of SimCLR v1 (2 layers) and v2 (3 layers)."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.layers.fused_batch_normalization import FusedBatchNormalization


@keras.saving.register_keras_serializable(package="keras_simclr")
class ProjectionHead(keras.layers.Layer):
    """Projection head: an MLP with batch norm, as in the official SimCLR.

    Each of the first `num_layers - 1` layers is Dense (no bias) + batch norm
    (with its learned shift playing the bias) + ReLU, of width `hidden_dim`.
    The last layer is Dense (no bias) + batch norm without shift, and no ReLU.
    This is `ProjectionHead(proj_head_mode="nonlinear")` of
    google-research/simclr: SimCLR v1 uses 2 layers, SimCLR v2 uses 3 and
    fine-tunes from the output of the first.

    Args:
        hidden_dim: width of the hidden layers; `None` takes the width of the
            input (the official choice: 2048 for a ResNet-50).
        output_dim: width of the projection, 128 in both papers.
        num_layers: number of Dense layers, at least 1 (1 is a linear head).
        batch_norm_momentum: momentum of the moving statistics; 0.9 as the
            official code.
        batch_norm_epsilon: epsilon of the batch norms; 1e-5 as the official
            code.
        **kwargs: passed to `keras.layers.Layer` (name, dtype, ...).

    Call arguments:
        inputs: encoder features, shape `(batch, features)`.
        training: whether batch norm uses batch statistics.
        return_hidden: if `True`, return the list `[inputs, h_1, ..., h_L]` of
            the input and of every layer's output (`h_L` is the projection),
            for fine-tuning from the middle of the head (SimCLR v2).

    Returns:
        The projection `(batch, output_dim)`, or the list described above.

    Example:

    ```python
    head = keras_simclr.layers.ProjectionHead(hidden_dim=512, output_dim=128)
    z = head(keras.random.normal((8, 512)))          # (8, 128)
    hiddens = head(keras.random.normal((8, 512)), return_hidden=True)
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR, §2.1.
        - [Chen et al., 2020](https://arxiv.org/abs/2006.10029), SimCLR v2.
    """

    def __init__(
        self,
        hidden_dim=None,
        output_dim=128,
        num_layers=2,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_dim = _validation.check_int(hidden_dim, "hidden_dim", allow_none=True)
        output_dim = _validation.check_int(output_dim, "output_dim")
        num_layers = _validation.check_int(num_layers, "num_layers")
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.num_layers = num_layers
        self.batch_norm_momentum = batch_norm_momentum
        self.batch_norm_epsilon = batch_norm_epsilon
        self.dense_layers = []
        self.batch_norm_layers = []
        for index in range(num_layers):
            last = index == num_layers - 1
            self.dense_layers.append(
                keras.layers.Dense(
                    output_dim if last else hidden_dim or 1,
                    use_bias=False,
                    kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                    dtype=self.dtype_policy,
                    name=f"dense_{index}",
                )
            )
            self.batch_norm_layers.append(
                FusedBatchNormalization(
                    momentum=batch_norm_momentum,
                    epsilon=batch_norm_epsilon,
                    center=not last,
                    dtype=self.dtype_policy,
                    name=f"batch_norm_{index}",
                )
            )

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "ProjectionHead expects inputs of shape (batch, features) with "
                f"a known feature size. Received: input_shape={input_shape}"
            )
        width = input_shape[-1]
        hidden_dim = self.hidden_dim or width
        shape = tuple(input_shape)
        for index, (dense, batch_norm) in enumerate(
            zip(self.dense_layers, self.batch_norm_layers)
        ):
            if index < self.num_layers - 1:
                dense.units = hidden_dim
            dense.build(shape)
            shape = (shape[0], dense.units)
            batch_norm.build(shape)

    def call(self, inputs, training=None, return_hidden=False):
        hiddens = [inputs]
        x = inputs
        for index, (dense, batch_norm) in enumerate(
            zip(self.dense_layers, self.batch_norm_layers)
        ):
            x = batch_norm(dense(x), training=training)
            if index < self.num_layers - 1:
                x = ops.relu(x)
            hiddens.append(x)
        return hiddens if return_hidden else x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def compute_output_spec(self, inputs, training=None, return_hidden=False):
        batch, width = inputs.shape[0], inputs.shape[-1]
        dtype = self.compute_dtype
        projection = keras.KerasTensor((batch, self.output_dim), dtype=dtype)
        if not return_hidden:
            return projection
        hidden = [
            keras.KerasTensor((batch, self.hidden_dim or width), dtype=dtype)
            for _ in range(self.num_layers - 1)
        ]
        return [inputs] + hidden + [projection]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim,
                "num_layers": self.num_layers,
                "batch_norm_momentum": self.batch_norm_momentum,
                "batch_norm_epsilon": self.batch_norm_epsilon,
            }
        )
        return config
