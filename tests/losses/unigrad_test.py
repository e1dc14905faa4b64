import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.losses.unigrad import UniGrad
from keras_simclr.losses.unigrad import _unigrad_normalized
from keras_simclr.losses.unigrad import unigrad
from keras_simclr.losses.unigrad import unigrad_correlation
from keras_simclr.losses.unigrad import update_correlation
from tests.testing import backend_gradients
from tests.testing import compiled
from tests.testing import run_serialization_test

# The loss classes are deprecated (deprecated_classes_test.py); they still
# compute what they did.
pytestmark = pytest.mark.filterwarnings(
    "ignore:keras_simclr.losses.*deprecated:DeprecationWarning"
)


def normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_correlation(t_a, t_b):
    t = normalize(np.concatenate([t_a, t_b]))
    return sum(np.outer(row, row) for row in t) / len(t)


def reference_gradients(z_a, z_b, t_a, t_b, correlation, lambda_):
    """UniGrad's g_a, g_b, w.r.t. the normalised projections (float64)."""
    z_a, z_b, t_a, t_b = map(normalize, (z_a, z_b, t_a, t_b))
    correlation = np.asarray(correlation, np.float64)
    return -t_b + lambda_ * z_a @ correlation, -t_a + lambda_ * z_b @ correlation


def reference_unigrad(z_a, z_b, t_a, t_b, correlation, lambda_):
    g_a, g_b = reference_gradients(z_a, z_b, t_a, t_b, correlation, lambda_)
    loss_a = np.mean([g_a[n] @ row for n, row in enumerate(normalize(z_a))])
    loss_b = np.mean([g_b[n] @ row for n, row in enumerate(normalize(z_b))])
    return 0.5 * (loss_a + loss_b)


def random_inputs(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    t_a, t_b = rng.normal(size=(2, n, dim)).astype("float32")
    z_a = (t_b + rng.normal(size=(n, dim))).astype("float32")
    z_b = (t_a + rng.normal(size=(n, dim))).astype("float32")
    correlation = reference_correlation(
        *rng.normal(size=(2, 3 * n, dim))
    ).astype("float32")
    return z_a, z_b, t_a, t_b, correlation


@pytest.mark.parametrize("lambda_", [0.0, 1.0, 100.0])
@pytest.mark.parametrize("n, dim", [(1, 4), (6, 16), (32, 8)])
def test_matches_numpy_reference(n, dim, lambda_):
    inputs = random_inputs(n, dim, seed=n)
    expected = reference_unigrad(*inputs, lambda_)
    np.testing.assert_allclose(
        ops.convert_to_numpy(unigrad(*inputs, lambda_=lambda_)),
        expected,
        rtol=1e-5,
        atol=1e-6,
    )
    z_a, z_b, t_a, t_b, correlation = inputs
    y_pred = {
        "projection": np.concatenate([z_a, z_b]),
        "target": np.concatenate([t_a, t_b]),
        "correlation": correlation,
    }
    np.testing.assert_allclose(
        ops.convert_to_numpy(UniGrad(lambda_)(None, y_pred)),
        expected,
        rtol=1e-5,
        atol=1e-6,
    )


def test_gradient_wrt_normalised_projections_is_half_g_over_n():
    # Through the public function only the tangential part of the gradient
    # w.r.t. the normalised z is visible (the next test); the private core,
    # which takes normalised inputs, shows all of it.
    n, lambda_ = 5, 100.0
    z_a, z_b, t_a, t_b, correlation = random_inputs(n, 8, seed=1)
    normalised = [normalize(x).astype("float32") for x in (z_a, z_b, t_a, t_b)]
    gradients = backend_gradients(
        lambda *xs: _unigrad_normalized(*xs, lambda_), *normalised, correlation
    )
    g_a, g_b = reference_gradients(z_a, z_b, t_a, t_b, correlation, lambda_)
    np.testing.assert_allclose(gradients[0], 0.5 * g_a / n, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gradients[1], 0.5 * g_b / n, rtol=1e-5, atol=1e-7)
    for gradient in gradients[2:]:
        np.testing.assert_array_equal(gradient, 0.0)


def test_gradient_wrt_raw_projections_goes_through_the_normalisation():
    n, lambda_ = 4, 100.0
    z_a, z_b, t_a, t_b, correlation = random_inputs(n, 6, seed=2)
    gradients = backend_gradients(
        lambda *xs: unigrad(*xs, lambda_=lambda_), z_a, z_b, t_a, t_b, correlation
    )
    g_a, g_b = reference_gradients(z_a, z_b, t_a, t_b, correlation, lambda_)
    for raw, g, gradient in ((z_a, g_a, gradients[0]), (z_b, g_b, gradients[1])):
        raw = raw.astype(np.float64)
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        unit = raw / norm
        # (I - z z^T) / ||z|| applied to 0.5 * g / N, row by row.
        upstream = 0.5 * g / n
        radial = np.sum(upstream * unit, axis=1, keepdims=True) * unit
        expected = (upstream - radial) / norm
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)
    # Targets and the correlation are constants of the step.
    for gradient in gradients[2:]:
        np.testing.assert_array_equal(gradient, 0.0)


@pytest.mark.parametrize("n, dim", [(1, 3), (7, 5), (32, 16)])
def test_correlation_matches_numpy_reference(n, dim):
    rng = np.random.default_rng(n)
    t_a = rng.normal(size=(n, dim)).astype("float32")
    t_b = (3.0 * rng.normal(size=(n, dim))).astype("float32")
    actual = ops.convert_to_numpy(unigrad_correlation(t_a, t_b))
    assert actual.shape == (dim, dim) and actual.dtype == np.float32
    np.testing.assert_allclose(
        actual, reference_correlation(t_a, t_b), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(actual, actual.T, rtol=1e-6)
    # Unit-norm rows: trace F = mean ||t||^2 = 1.
    np.testing.assert_allclose(np.trace(actual), 1.0, rtol=1e-5)
    gathered = ops.convert_to_numpy(unigrad_correlation(t_a, t_b, cross_replica=True))
    np.testing.assert_allclose(gathered, actual, rtol=1e-6)
    gradients = backend_gradients(
        lambda a, b: ops.sum(unigrad_correlation(a, b) ** 2), t_a, t_b
    )
    for gradient in gradients:
        np.testing.assert_array_equal(gradient, 0.0)


@pytest.mark.parametrize("flag", ["python", "tensor"])
def test_running_average_of_three_batches(flag):
    rho, dim = 0.9, 4
    rng = np.random.default_rng(3)
    batches = [reference_correlation(*rng.normal(size=(2, 5, dim))) for _ in range(3)]
    step = compiled(lambda f, b, i: update_correlation(f, b, i, rho=rho))
    correlation = np.full((dim, dim), np.nan if flag == "python" else 7.0, "float32")
    expected = None
    for index, batch in enumerate(batches):
        initialized = index > 0
        if flag == "tensor":
            initialized = ops.convert_to_tensor(initialized)
            correlation = step(correlation, batch.astype("float32"), initialized)
        else:
            correlation = update_correlation(correlation, batch, initialized, rho=rho)
        # The official rule: F = batch at first, then rho F + (1 - rho) batch.
        expected = batch if expected is None else rho * expected + (1 - rho) * batch
        assert ops.convert_to_numpy(correlation).dtype == np.float32
        np.testing.assert_allclose(
            ops.convert_to_numpy(correlation), expected, rtol=1e-5, atol=1e-7
        )


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    low = [ops.cast(x, dtype) for x in random_inputs(16, 32, seed=4)]
    actual = ops.convert_to_numpy(unigrad(*low))
    assert actual.dtype == np.float32
    # Exact on the rounded inputs: the computation runs in float32, so only
    # float32 rounding is left; computed in the input's precision, the loss
    # would be off by 1e-3 or more.
    rounded = [ops.convert_to_numpy(ops.cast(x, "float32")) for x in low]
    np.testing.assert_allclose(
        actual, reference_unigrad(*rounded, lambda_=100.0), rtol=1e-6
    )
    correlation = ops.convert_to_numpy(unigrad_correlation(*low[2:4]))
    assert correlation.dtype == np.float32
    # Entries of at most 1 (a mean of products of unit vectors' entries).
    np.testing.assert_allclose(
        correlation, reference_correlation(*rounded[2:4]), rtol=0, atol=1e-7
    )


CROSS_REPLICA_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
import numpy as np
from keras_simclr.losses.unigrad import unigrad_correlation

t_a, t_b = np.asarray(json.loads(sys.argv[1]), "float32")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
half = len(t_a) // 2

def local_slice(array):
    return strategy.experimental_distribute_values_from_function(
        lambda context: array[
            context.replica_id_in_sync_group * half:
            (context.replica_id_in_sync_group + 1) * half
        ]
    )

result = {}
for cross_replica in (True, False):
    values = strategy.run(
        tf.function(lambda a, b: unigrad_correlation(a, b, cross_replica)),
        args=(local_slice(t_a), local_slice(t_b)),
    )
    result[str(cross_replica)] = [
        v.numpy().tolist() for v in strategy.experimental_local_results(values)
    ]
print(json.dumps(result))
"""


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute runs on the TensorFlow backend",
)
def test_cross_replica_correlation_is_the_global_batch_value():
    # A subprocess, so that the two logical CPU devices stay out of the
    # other tests.
    rng = np.random.default_rng(5)
    targets = rng.normal(size=(2, 6, 4))
    result = subprocess.run(
        [sys.executable, "-c", CROSS_REPLICA_SCRIPT, json.dumps(targets.tolist())],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    expected = reference_correlation(*targets)
    for replica in values["True"]:
        np.testing.assert_allclose(replica, expected, rtol=1e-5, atol=1e-7)
    for replica, rows in zip(values["False"], (slice(0, 3), slice(3, 6))):
        np.testing.assert_allclose(
            replica,
            reference_correlation(targets[0][rows], targets[1][rows]),
            rtol=1e-5,
            atol=1e-7,
        )
        assert not np.allclose(replica, expected, atol=1e-3)


def test_loss_class_config_round_trip():
    revived = run_serialization_test(UniGrad(lambda_=50.0, name="unified"))
    assert revived.lambda_ == 50.0
    assert revived.name == "unified"


@pytest.mark.parametrize("lambda_", [-1.0, "100", None, True])
def test_rejects_bad_lambda(lambda_):
    inputs = random_inputs(2, 3)
    with pytest.raises(ValueError, match="lambda_"):
        unigrad(*inputs, lambda_=lambda_)
    with pytest.raises(ValueError, match="lambda_"):
        UniGrad(lambda_=lambda_)


@pytest.mark.parametrize("rho", [-0.1, 1.5, "0.99", None, True])
def test_rejects_bad_rho(rho):
    with pytest.raises(ValueError, match="rho"):
        update_correlation(np.eye(3), np.eye(3), True, rho=rho)


def test_rejects_bad_shapes():
    z_a, z_b, t_a, t_b, correlation = random_inputs(2, 3)
    with pytest.raises(ValueError, match="z_a"):
        unigrad(z_a[None], z_b, t_a, t_b, correlation)
    with pytest.raises(ValueError, match="z_b"):
        unigrad(z_a, z_b[:1], t_a, t_b, correlation)
    with pytest.raises(ValueError, match="target_b"):
        unigrad(z_a, z_b, t_a, t_b[:, :2], correlation)
    with pytest.raises(ValueError, match="correlation"):
        unigrad(z_a, z_b, t_a, t_b, correlation[:2, :2])
    with pytest.raises(ValueError, match="target_b"):
        unigrad_correlation(t_a, t_b[:1])
    with pytest.raises(ValueError, match="target_a"):
        unigrad_correlation(t_a[0], t_b)
    with pytest.raises(ValueError, match="batch_correlation"):
        update_correlation(correlation, correlation[:2], True)
    y_pred = {
        "projection": np.concatenate([z_a, z_b]),
        "target": np.concatenate([t_a, t_b]),
        "correlation": correlation,
    }
    with pytest.raises(ValueError, match="y_pred"):
        UniGrad()(None, {**y_pred, "projection": y_pred["projection"][:3]})
    with pytest.raises(ValueError, match="y_pred"):
        UniGrad()(None, {"projection": y_pred["projection"]})
    with pytest.raises(ValueError, match="y_pred"):
        UniGrad()(None, y_pred["projection"])
    with pytest.raises(ValueError, match="sample_weight"):
        UniGrad()(None, y_pred, np.ones(4))
