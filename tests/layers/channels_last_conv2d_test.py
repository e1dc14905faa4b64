import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.layers import ChannelsLastConv2D
from tests.testing import backend_gradients
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test


def reference_conv(x, kernel, bias, strides, padding, dilation):
    """Direct NumPy convolution, channels last, in float64."""
    x = x.astype("float64")
    kh, kw, _, filters = kernel.shape
    span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    if padding == "same":
        # TensorFlow's rule: the output has ceil(size / strides) positions.
        pad_h, pad_w = (
            max((-(-size // strides) - 1) * strides + span - size, 0)
            for size, span in ((x.shape[1], span_h), (x.shape[2], span_w))
        )
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                       (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out_h = (x.shape[1] - span_h) // strides + 1
    out_w = (x.shape[2] - span_w) // strides + 1
    out = np.zeros((x.shape[0], out_h, out_w, filters))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dilation: i * dilation + strides * (out_h - 1) + 1: strides,
                      j * dilation: j * dilation + strides * (out_w - 1) + 1: strides]
            out += patch @ kernel[i, j]
    return out + (0 if bias is None else bias)


CASES = [
    # kernel, strides, padding, dilation, bias
    (3, 1, "same", 1, False),
    (3, 2, "valid", 1, True),
    (1, 2, "valid", 1, False),
    (5, 1, "same", 2, True),
    (2, 1, "same", 1, False),  # asymmetric padding: Keras's own path
    (3, 2, "same", 1, True),   # strided "same": Keras's own path
]


@pytest.mark.parametrize("kernel_size,strides,padding,dilation,use_bias", CASES)
def test_matches_numpy_forward_and_gradients(kernel_size, strides, padding,
                                             dilation, use_bias):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    layer = ChannelsLastConv2D(
        4, kernel_size, strides=strides, padding=padding,
        dilation_rate=dilation, use_bias=use_bias,
    )
    layer.build(x.shape)
    kernel = rng.normal(size=layer.kernel.shape).astype("float32")
    bias = rng.normal(size=(4,)).astype("float32") if use_bias else None
    layer.set_weights([kernel, bias] if use_bias else [kernel])
    expected = reference_conv(x, kernel, bias, strides, padding, dilation)
    outputs = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    keras_layer = keras.layers.Conv2D.from_config(layer.get_config())
    keras_layer.build(x.shape)
    keras_layer.set_weights(layer.get_weights())

    # d/dx and d/dkernel of sum(w * conv(x)) against Keras's own Conv2D.
    weights = rng.normal(size=expected.shape).astype("float32")
    trainable = [kernel] + ([bias] if use_bias else [])

    def loss(of_layer):
        def fn(x, *variables):
            y, _ = of_layer.stateless_call(list(variables), [], x)
            return ops.sum(y * ops.convert_to_tensor(weights))
        return fn

    ours = backend_gradients(loss(layer), x, *trainable)
    theirs = backend_gradients(loss(keras_layer), x, *trainable)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    # The bias gradient has a closed form: the sum of the weights.
    if use_bias:
        np.testing.assert_allclose(ours[-1], weights.sum((0, 1, 2)), rtol=1e-5,
                                   atol=1e-4)


def test_activation_and_mixed_precision():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    layer = ChannelsLastConv2D(4, 3, padding="same", activation="relu",
                               dtype="mixed_bfloat16")
    outputs = layer(x)
    assert keras.backend.standardize_dtype(outputs.dtype) == "bfloat16"
    kernel = ops.convert_to_numpy(layer.kernel)
    rounded = lambda a: ops.convert_to_numpy(
        ops.cast(ops.cast(a, "bfloat16"), "float32"))
    expected = np.maximum(
        reference_conv(rounded(x), rounded(kernel), ops.convert_to_numpy(
            layer.bias), 1, "same", 1), 0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.cast(outputs, "float32")), expected,
        rtol=2**-7, atol=2**-6,
    )


def test_is_a_keras_conv2d_and_round_trips(tmp_path):
    layer = ChannelsLastConv2D(8, 3, strides=2, padding="valid", use_bias=False)
    assert isinstance(layer, keras.layers.Conv2D)
    run_serialization_test(layer)
    inputs = keras.Input((7, 7, 3))
    model = keras.Model(inputs, ChannelsLastConv2D(5, 3, padding="same")(inputs))
    x = np.random.default_rng(2).normal(size=(2, 7, 7, 3)).astype("float32")
    run_model_saving_test(model, x, tmp_path)
