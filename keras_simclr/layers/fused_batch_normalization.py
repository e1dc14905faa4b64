"""Batch normalization that runs the backend's fused kernel."""

import keras
from keras import ops

from keras_simclr import distribute


@keras.saving.register_keras_serializable(package="keras_simclr")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that runs one fused kernel per call.

    Keras 3 computes batch norm as separate operations on every backend: the
    batch moments, then the normalisation, each with its own pass over the
    activations forward and backward. TensorFlow and PyTorch have a fused
    kernel that does it in one pass (`FusedBatchNormV3`, oneDNN's batch norm
    on a CPU, cuDNN's on a GPU; `torch.native_batch_norm`). This layer
    calls that kernel where it applies. It is the same layer as
    Keras's: the same arguments, weights, config and results (outputs,
    gradients and moving statistics agree to float32 rounding). It is a
    subclass, so it is still a `keras.layers.BatchNormalization`, and
    `synchronized=True` (global batch norm under `tf.distribute`) works as in
    Keras.

    The fused kernel runs when the layer normalises the last axis (channels
    last, Keras's default), with no mask, no `renorm` and no
    `synchronized`, on the TensorFlow backend (inputs of rank 2 to 5) or the
    PyTorch backend (any rank); everything else, the JAX backend included,
    runs Keras's own computation: XLA fuses it there already.

    As in Keras, the moving variance is updated with the biased (population)
    variance of the batch; the fused kernels report the unbiased one, which
    is rescaled by `(n - 1) / n`. Under a mixed-precision policy the kernel
    takes the low-precision activations and keeps the statistics, scale and
    offset in float32, as Keras does.

    docs/speed.md gives the gain over Keras's batch norm, and the machine
    it was measured on.

    It takes the arguments of `keras.layers.BatchNormalization`.

    Call arguments:
        inputs: tensor of any rank, channels on `axis`.
        training: bool; in training mode (and if the layer is trainable) the
            batch statistics normalise and update the moving ones.
        mask: optional, as in Keras (disables the fused kernel).

    Returns:
        A tensor of the shape and compute dtype of the inputs.

    Example:

    ```python
    layer = keras_simclr.layers.FusedBatchNormalization(momentum=0.9)
    y = layer(keras.random.normal((8, 4, 4, 16)), training=True)
    ```

    References:
        - [Ioffe & Szegedy, 2015](https://arxiv.org/abs/1502.03167), Batch
          Normalization.
    """

    def call(self, inputs, training=None, mask=None):
        backend = keras.backend.backend()
        if (
            mask is not None
            or self.renorm
            or distribute.batch_norm_is_synchronized(self)
            or backend not in ("tensorflow", "torch")
            or (self.axis != -1 and self.axis != len(inputs.shape) - 1)
            or (backend == "tensorflow" and not 2 <= len(inputs.shape) <= 5)
        ):
            return super().call(inputs, training=training, mask=mask)
        training = bool(training and self.trainable)
        if not _is_half(inputs.dtype):
            # The kernels take bfloat16/float16 activations with float32
            # statistics; anything else is computed in float32, as Keras does.
            inputs = ops.cast(inputs, "float32")
        channels = inputs.shape[-1]
        gamma = (
            ops.cast(self.gamma, "float32")
            if self.scale
            else ops.ones((channels,), "float32")
        )
        beta = (
            ops.cast(self.beta, "float32")
            if self.center
            else ops.zeros((channels,), "float32")
        )
        fused = _tf_fused if backend == "tensorflow" else _torch_fused
        outputs, mean, variance = fused(
            inputs,
            gamma,
            beta,
            ops.cast(self.moving_mean, "float32"),
            ops.cast(self.moving_variance, "float32"),
            self.epsilon,
            training,
        )
        if training:
            momentum = self.momentum
            self.moving_mean.assign(
                ops.cast(
                    self.moving_mean * momentum + mean * (1.0 - momentum),
                    self.moving_mean.dtype,
                )
            )
            self.moving_variance.assign(
                ops.cast(
                    self.moving_variance * momentum
                    + variance * (1.0 - momentum),
                    self.moving_variance.dtype,
                )
            )
        return ops.cast(outputs, self.compute_dtype)


def _is_half(dtype):
    return keras.backend.standardize_dtype(dtype) in ("bfloat16", "float16")


def _tf_fused(x, gamma, beta, moving_mean, moving_variance, epsilon, training):
    """`FusedBatchNormV3` on channels-last `x` of rank 2 to 5.

    Returns the output, and in training the batch mean and biased variance
    (without gradient: they only feed the moving statistics).
    """
    import tensorflow as tf

    rank = len(x.shape)
    shape = tf.shape(x)
    if rank < 4:
        # (N, C) -> (N, 1, 1, C); (N, L, C) -> (N, 1, L, C).
        x = tf.reshape(x, tf.concat([shape[:1], [1] * (4 - rank), shape[1:]], 0))
    data_format = "NDHWC" if rank == 5 else "NHWC"
    empty = tf.constant([], dtype=tf.float32)
    outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=gamma,
        offset=beta,
        mean=empty if training else moving_mean,
        variance=empty if training else moving_variance,
        epsilon=epsilon,
        data_format=data_format,
        is_training=training,
    )
    if rank < 4:
        outputs = tf.reshape(outputs, shape)
    if not training:
        return outputs, None, None
    # The kernel reports the unbiased variance; Keras tracks the biased one.
    count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
    correction = tf.where(count > 1.0, (count - 1.0) / count, 1.0)
    return (
        outputs,
        tf.stop_gradient(mean),
        tf.stop_gradient(variance * correction),
    )


def _torch_fused(x, gamma, beta, moving_mean, moving_variance, epsilon, training):
    """`torch.native_batch_norm` on channels-last `x` of any rank.

    The channels move to axis 1 by a permutation that copies nothing: a
    channels-last image tensor seen as NCHW is exactly PyTorch's
    `channels_last` memory format, which its CPU and GPU kernels run
    natively. Returns the output, and in training the batch mean and biased
    variance (detached).
    """
    import torch

    rank = x.dim()
    to_first = [0, rank - 1] + list(range(1, rank - 1))
    to_last = [0] + list(range(2, rank)) + [1]
    x = x.permute(*to_first)
    if training:
        outputs, mean, inverse_std = torch.native_batch_norm(
            x, gamma, beta, None, None, True, 0.0, epsilon
        )
        # `native_batch_norm` gives 1 / sqrt(var + eps) of the biased variance.
        variance = inverse_std.detach().pow(-2) - epsilon
        return outputs.permute(*to_last), mean.detach(), variance
    outputs, _, _ = torch.native_batch_norm(
        x, gamma, beta, moving_mean, moving_variance, False, 0.0, epsilon
    )
    return outputs.permute(*to_last), None, None

