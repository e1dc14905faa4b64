import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.layers import FusedBatchNormalization
from tests.testing import backend_gradients
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test

EPSILON = 1e-5
MOMENTUM = 0.9


def reference_batch_norm(x, gamma, beta, moving_mean, moving_variance, dy):
    """Training-mode batch norm over every axis but the last, in float64:
    the output, the updated moving statistics (Keras's rule: biased batch
    variance), and the closed-form gradients of `sum(dy * output)`."""
    x = x.astype("float64")
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    mean = x.mean(axes)
    variance = x.var(axes)
    inverse_std = 1.0 / np.sqrt(variance + EPSILON)
    normalised = (x - mean) * inverse_std
    output = gamma * normalised + beta
    dnormalised = dy * gamma
    dx = inverse_std * (
        dnormalised
        - dnormalised.sum(axes) / count
        - normalised * (dnormalised * normalised).sum(axes) / count
    )
    return {
        "output": output,
        "moving_mean": MOMENTUM * moving_mean + (1 - MOMENTUM) * mean,
        "moving_variance": MOMENTUM * moving_variance
        + (1 - MOMENTUM) * variance,
        "dx": dx,
        "dgamma": (dy * normalised).sum(axes),
        "dbeta": dy.sum(axes),
    }


def run_layer(layer, x, gamma, beta, dy):
    """Output, new moving statistics and gradients of one training call."""
    layer.build(x.shape)
    moving = [ops.convert_to_numpy(v)
              for v in (layer.moving_mean, layer.moving_variance)]

    def forward(x, gamma, beta):
        outputs, non_trainable = layer.stateless_call(
            [gamma, beta], [ops.convert_to_tensor(m) for m in moving], x,
            training=True,
        )
        return outputs, non_trainable

    outputs, non_trainable = forward(x, gamma, beta)
    dx, dgamma, dbeta = backend_gradients(
        lambda x, g, b: ops.sum(forward(x, g, b)[0] * ops.convert_to_tensor(dy)),
        x, gamma, beta,
    )
    def numpy(tensor):
        return ops.convert_to_numpy(ops.stop_gradient(tensor))

    return {
        "output": numpy(outputs),
        "moving_mean": numpy(non_trainable[0]),
        "moving_variance": numpy(non_trainable[1]),
        "dx": dx,
        "dgamma": dgamma,
        "dbeta": dbeta,
    }


@pytest.mark.parametrize(
    "shape", [(16, 6), (4, 5, 6), (3, 5, 7, 6), (2, 3, 4, 5, 6)]
)
@pytest.mark.parametrize("layer_class", [FusedBatchNormalization,
                                         keras.layers.BatchNormalization])
def test_training_step_matches_numpy(shape, layer_class):
    rng = np.random.default_rng(0)
    # An offset and a scale far from (0, 1), as activations have.
    x = (rng.normal(size=shape) * 3.0 + 2.0).astype("float32")
    gamma = rng.uniform(0.5, 1.5, shape[-1]).astype("float32")
    beta = rng.normal(size=shape[-1]).astype("float32")
    dy = rng.normal(size=shape).astype("float32")
    layer = layer_class(momentum=MOMENTUM, epsilon=EPSILON)
    result = run_layer(layer, x, gamma, beta, dy)
    expected = reference_batch_norm(
        x, gamma, beta, np.zeros(shape[-1]), np.ones(shape[-1]), dy
    )
    for name in expected:
        np.testing.assert_allclose(
            result[name], expected[name], rtol=1e-5, atol=1e-5, err_msg=name
        )


def test_unbiased_variance_would_be_caught():
    # The fused kernels report the unbiased batch variance; with 4 values
    # per channel it is 4/3 of the biased one Keras tracks. The comparison
    # above must tell them apart.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3)).astype("float32")
    layer = FusedBatchNormalization(momentum=0.0, epsilon=EPSILON)
    layer(x, training=True)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.moving_variance), x.var(0), rtol=1e-5
    )
    assert not np.allclose(x.var(0), x.var(0, ddof=1), rtol=1e-2)


@pytest.mark.parametrize("center,scale", [(False, True), (True, False),
                                          (False, False)])
def test_without_center_or_scale(center, scale):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 3, 3, 4)).astype("float32") * 2 + 1
    fused = FusedBatchNormalization(center=center, scale=scale, epsilon=EPSILON)
    expected = (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + EPSILON)
    np.testing.assert_allclose(
        ops.convert_to_numpy(fused(x, training=True)), expected, atol=1e-5
    )
    assert len(fused.trainable_weights) == int(center) + int(scale)


def test_inference_uses_moving_statistics():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5, 5, 3)).astype("float32")
    layer = FusedBatchNormalization(epsilon=EPSILON)
    layer.build(x.shape)
    mean = np.array([0.5, -1.0, 2.0], "float32")
    variance = np.array([0.25, 4.0, 1.5], "float32")
    gamma = np.array([1.5, 0.5, -1.0], "float32")
    beta = np.array([0.1, 0.2, 0.3], "float32")
    layer.set_weights([gamma, beta, mean, variance])
    expected = gamma * (x - mean) / np.sqrt(variance + EPSILON) + beta
    for training in (False, None):
        np.testing.assert_allclose(
            ops.convert_to_numpy(layer(x, training=training)), expected,
            rtol=1e-5, atol=1e-5,
        )
    # A frozen layer normalises with its moving statistics even in training,
    # and leaves them alone, as Keras's does.
    layer.trainable = False
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x, training=True)), expected,
        rtol=1e-5, atol=1e-5,
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.moving_mean), mean)


def test_channels_first_axis_falls_back_to_keras():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 3, 5, 5)).astype("float32")
    layer = FusedBatchNormalization(axis=1, epsilon=EPSILON)
    expected = (x - x.mean((0, 2, 3), keepdims=True)) / np.sqrt(
        x.var((0, 2, 3), keepdims=True) + EPSILON
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x, training=True)), expected, atol=1e-5
    )


def test_mixed_bfloat16_matches_float32_on_the_rounded_inputs():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(16, 4, 4, 8)) * 2 + 1).astype("float32")
    layer = FusedBatchNormalization(
        dtype="mixed_bfloat16", momentum=MOMENTUM, epsilon=EPSILON
    )
    outputs = layer(ops.cast(x, "bfloat16"), training=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "bfloat16"
    assert layer.moving_mean.dtype == "float32"
    rounded = ops.convert_to_numpy(ops.cast(ops.cast(x, "bfloat16"), "float32"))
    expected = (rounded - rounded.mean((0, 1, 2))) / np.sqrt(
        rounded.var((0, 1, 2)) + EPSILON
    )
    outputs = ops.convert_to_numpy(ops.cast(outputs, "float32"))
    # The output is rounded to bfloat16 once (relative 2**-8); statistics
    # computed in bfloat16 would be off by far more.
    np.testing.assert_allclose(outputs, expected, rtol=2**-8, atol=2**-7)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.moving_mean),
        (1 - MOMENTUM) * rounded.mean((0, 1, 2)),
        rtol=1e-5, atol=1e-6,
    )


def test_is_a_keras_batch_normalization():
    layer = FusedBatchNormalization()
    assert isinstance(layer, keras.layers.BatchNormalization)


def test_serialization():
    run_serialization_test(FusedBatchNormalization(momentum=0.9, epsilon=1e-5,
                                                   center=False))


def test_model_saving(tmp_path):
    inputs = keras.Input((4, 4, 3))
    outputs = FusedBatchNormalization(momentum=0.9)(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(6).normal(size=(8, 4, 4, 3)).astype("float32")
    model(x, training=True)
    run_model_saving_test(model, x, tmp_path)

