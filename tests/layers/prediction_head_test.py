import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.layers import PredictionHead
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test


def test_numbers_match_numpy_in_inference_mode():
    head = PredictionHead(hidden_dim=12)
    x = np.random.default_rng(0).normal(size=(6, 9)).astype("float32")
    head.build(x.shape)
    norm = head.batch_norm
    norm.moving_mean.assign(np.random.uniform(-1, 1, norm.moving_mean.shape))
    norm.moving_variance.assign(np.random.uniform(0.5, 2, norm.moving_variance.shape))
    head.output_dense.bias.assign(np.random.uniform(-1, 1, (9,)))
    hidden = x @ ops.convert_to_numpy(head.hidden.kernel)
    hidden = (hidden - ops.convert_to_numpy(norm.moving_mean)) / np.sqrt(
        ops.convert_to_numpy(norm.moving_variance) + norm.epsilon
    )
    hidden = hidden * ops.convert_to_numpy(norm.gamma) + ops.convert_to_numpy(norm.beta)
    expected = np.maximum(hidden, 0) @ ops.convert_to_numpy(
        head.output_dense.kernel
    ) + ops.convert_to_numpy(head.output_dense.bias)
    np.testing.assert_allclose(
        ops.convert_to_numpy(head(x, training=False)), expected, rtol=1e-4, atol=1e-5
    )
    # The hidden layer has no bias (batch norm shifts); the output has one.
    assert not head.hidden.use_bias and head.output_dense.use_bias


def test_output_width():
    assert tuple(PredictionHead(hidden_dim=4)(np.ones((2, 7), "float32")).shape) == (2, 7)
    head = PredictionHead(hidden_dim=4, output_dim=3)
    assert tuple(head(np.ones((2, 7), "float32")).shape) == (2, 3)
    assert head.compute_output_shape((None, 7)) == (None, 3)


def test_parameter_count_of_the_byol_predictor():
    # BYOL: 256 -> 4096 (BN, ReLU) -> 256 with bias.
    head = PredictionHead(hidden_dim=4096)
    head.build((None, 256))
    expected = 256 * 4096 + 2 * 4096 + 4096 * 256 + 256
    assert sum(int(np.prod(w.shape)) for w in head.trainable_weights) == expected


def test_serialization_and_saving(tmp_path):
    head = PredictionHead(hidden_dim=8, output_dim=5, name="predictor")
    run_serialization_test(head)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, head(inputs))
    run_model_saving_test(model, np.random.normal(size=(3, 6)).astype("float32"), tmp_path)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"hidden_dim": True}, "hidden_dim"),
        ({"output_dim": -1}, "output_dim"),
        ({"output_dim": 2.5}, "output_dim"),
    ],
)
def test_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PredictionHead(**kwargs)


def test_rejects_bad_input_rank():
    with pytest.raises(ValueError, match="batch, features"):
        PredictionHead(hidden_dim=4)(np.ones((2, 3, 4), "float32"))
