import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.layers import ProjectionHead
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test


def numpy_head(head, x):
    """The official head in NumPy, in inference mode."""
    outputs = [x]
    for index, (dense, norm) in enumerate(zip(head.dense_layers, head.batch_norm_layers)):
        x = x @ ops.convert_to_numpy(dense.kernel)
        mean = ops.convert_to_numpy(norm.moving_mean)
        variance = ops.convert_to_numpy(norm.moving_variance)
        x = (x - mean) / np.sqrt(variance + norm.epsilon)
        x = x * ops.convert_to_numpy(norm.gamma)
        if norm.center:
            x = x + ops.convert_to_numpy(norm.beta)
        if index < head.num_layers - 1:
            x = np.maximum(x, 0)
        outputs.append(x)
    return outputs


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_structure_and_numbers(num_layers):
    head = ProjectionHead(hidden_dim=12, output_dim=5, num_layers=num_layers)
    x = np.random.default_rng(0).normal(size=(6, 9)).astype("float32")
    head.build(x.shape)
    for norm in head.batch_norm_layers:
        norm.moving_mean.assign(np.random.uniform(-1, 1, norm.moving_mean.shape))
        norm.moving_variance.assign(np.random.uniform(0.5, 2, norm.moving_variance.shape))
        norm.gamma.assign(np.random.uniform(0.5, 2, norm.gamma.shape))
    hiddens = head(x, training=False, return_hidden=True)
    expected = numpy_head(head, x)
    assert len(hiddens) == num_layers + 1
    for actual, wanted in zip(hiddens, expected):
        np.testing.assert_allclose(ops.convert_to_numpy(actual), wanted, rtol=1e-4, atol=1e-5)
    assert tuple(hiddens[-1].shape) == (6, 5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(head(x, training=False)), expected[-1], rtol=1e-4, atol=1e-5
    )
    # As the official code: no Dense has a bias; every BN but the last shifts.
    assert all(not dense.use_bias for dense in head.dense_layers)
    assert [norm.center for norm in head.batch_norm_layers] == [True] * (num_layers - 1) + [False]


def test_parameter_count_matches_official_head():
    # SimCLR v1 head on ResNet-50: 2048 -> 2048 (BN+ReLU) -> 128 (BN, no shift).
    head = ProjectionHead(output_dim=128, num_layers=2)
    head.build((None, 2048))
    expected = 2048 * 2048 + 2 * 2048 + 2048 * 128 + 128
    assert sum(int(np.prod(w.shape)) for w in head.trainable_weights) == expected


def test_hidden_dim_defaults_to_input_width():
    head = ProjectionHead(output_dim=4, num_layers=3)
    hiddens = head(np.ones((2, 7), "float32"), return_hidden=True)
    assert [tuple(h.shape) for h in hiddens] == [(2, 7), (2, 7), (2, 7), (2, 4)]
    assert head.compute_output_shape((None, 7)) == (None, 4)
    symbolic = head(keras.Input((7,)), return_hidden=True)
    assert [tuple(h.shape) for h in symbolic] == [(None, 7)] * 3 + [(None, 4)]


def test_training_uses_batch_statistics():
    head = ProjectionHead(hidden_dim=8, output_dim=4)
    x = np.random.default_rng(1).normal(size=(16, 8)).astype("float32") * 5 + 3
    hidden, z = head(x, training=True, return_hidden=True)[1:]
    # The last BN has no shift and gamma = 1 at init: it standardises its
    # input with the batch's mean and (biased) variance.
    pre = ops.convert_to_numpy(hidden) @ ops.convert_to_numpy(head.dense_layers[1].kernel)
    expected = (pre - pre.mean(0)) / np.sqrt(pre.var(0) + head.batch_norm_epsilon)
    np.testing.assert_allclose(ops.convert_to_numpy(z), expected, rtol=1e-3, atol=1e-4)


def test_serialization_and_saving(tmp_path):
    head = ProjectionHead(hidden_dim=8, output_dim=4, num_layers=3, name="head")
    run_serialization_test(head)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, head(inputs))
    run_model_saving_test(model, np.random.normal(size=(3, 6)).astype("float32"), tmp_path)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"output_dim": -1}, "output_dim"),
        ({"output_dim": 2.5}, "output_dim"),
        ({"num_layers": 0}, "num_layers"),
    ],
)
def test_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ProjectionHead(**kwargs)


def test_rejects_bad_input_rank():
    with pytest.raises(ValueError, match="batch, features"):
        ProjectionHead()(np.ones((2, 3, 4), "float32"))
