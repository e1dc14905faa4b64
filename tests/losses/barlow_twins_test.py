import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr import distribute
from keras_simclr.losses.barlow_twins import BarlowTwins
from keras_simclr.losses.barlow_twins import barlow_twins
from tests.testing import gradient
from tests.testing import run_serialization_test

# The loss classes are deprecated (deprecated_classes_test.py); they still
# compute what they did.
pytestmark = pytest.mark.filterwarnings(
    "ignore:keras_simclr.losses.*deprecated:DeprecationWarning"
)

EPSILON = 1e-5
BACKEND = keras.backend.backend()


def reference_barlow_twins(z_a, z_b, lambda_offdiag=5e-3):
    """The official `main.py` in float64: BatchNorm1d(affine=False), C, loss."""
    z_a = np.asarray(z_a, np.float64)
    z_b = np.asarray(z_b, np.float64)

    def batch_norm(z):
        return (z - z.mean(0)) / np.sqrt(z.var(0) + EPSILON)

    c = batch_norm(z_a).T @ batch_norm(z_b) / len(z_a)
    on_diagonal = np.sum((np.diagonal(c) - 1) ** 2)
    off_diagonal = np.sum(c**2) - np.sum(np.diagonal(c) ** 2)
    return on_diagonal + lambda_offdiag * off_diagonal


def random_pair(batch_size, dim, seed=0):
    rng = np.random.default_rng(seed)
    z_a = rng.normal(size=(batch_size, dim)).astype("float32")
    z_b = (z_a + rng.normal(size=z_a.shape) + 0.5).astype("float32")
    return z_a, z_b




def to_numpy(x):
    return ops.convert_to_numpy(x)


def decorrelated(n, scales, seed=0):
    """`(n, len(scales))`: columns of mean 0, orthogonal, of norm `scales`."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(
        np.concatenate([np.ones((n, 1)), rng.normal(size=(n, len(scales)))], 1)
    )
    return (basis[:, 1:] * np.asarray(scales)).astype("float32")


@pytest.mark.parametrize("lambda_offdiag", [5e-3, 0.0051, 1.0])
@pytest.mark.parametrize("shape", [(2, 3), (5, 8), (9, 17), (16, 64)])
def test_matches_numpy_reference(shape, lambda_offdiag):
    z_a, z_b = random_pair(*shape, seed=shape[0])
    expected = reference_barlow_twins(z_a, z_b, lambda_offdiag)
    actual = barlow_twins(z_a, z_b, lambda_offdiag)
    assert to_numpy(actual).dtype == np.float32
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=1e-5, atol=1e-6)
    stacked = np.concatenate([z_a, z_b])
    from_class = BarlowTwins(lambda_offdiag=lambda_offdiag)(None, stacked)
    np.testing.assert_allclose(to_numpy(from_class), expected, rtol=1e-5, atol=1e-6)


def test_decorrelated_identical_branches_closed_form():
    # Columns orthonormal and orthogonal to the ones vector (mean 0), scaled:
    # C is diagonal with C_ii = v_i / (v_i + eps), v_i = s_i^2 / N the biased
    # variance, so the loss is sum_i (eps / (v_i + eps))^2, ~0 for v >> eps.
    # Small variances make the eps convention visible.
    n = 32
    variance = np.array([1e-4, 1e-3, 1e-2, 1.0, 10.0, 100.0])
    z = decorrelated(n, np.sqrt(n * variance), seed=7)
    expected = np.sum((EPSILON / (variance + EPSILON)) ** 2)
    actual = to_numpy(barlow_twins(z, z))
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(
        actual, reference_barlow_twins(z, z), rtol=1e-3, atol=1e-9
    )
    # Large variances: the loss vanishes.
    z = decorrelated(n, np.full(6, 10.0), seed=7)
    assert to_numpy(barlow_twins(z, z)) < 1e-7


def test_anticorrelated_branches_closed_form():
    # z_b = -z_a with decorrelated dims: C = -I (up to eps), loss 4 D.
    d = 5
    z = decorrelated(16, np.full(d, 30.0), seed=8)
    np.testing.assert_allclose(to_numpy(barlow_twins(z, -z)), 4.0 * d, rtol=1e-5)


def test_symmetric_and_invariant_to_per_dimension_affine_maps():
    z_a, z_b = random_pair(12, 7, seed=3)
    loss = to_numpy(barlow_twins(z_a, z_b, 0.1))
    # C becomes C^T: same diagonal, same off-diagonal sum of squares.
    np.testing.assert_allclose(to_numpy(barlow_twins(z_b, z_a, 0.1)), loss, rtol=1e-6)
    # Standardisation removes a positive scale and a shift per dimension, up
    # to eps / variance (1e-5 for the unit-variance z_a).
    rng = np.random.default_rng(4)
    scale = rng.uniform(0.5, 20.0, size=(1, 7)).astype("float32")
    shift = rng.normal(size=(1, 7)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(barlow_twins(z_a * scale + shift, z_b, 0.1)), loss, rtol=1e-4
    )


def test_lambda_weights_only_the_off_diagonal():
    z_a, z_b = random_pair(10, 6, seed=5)
    on = to_numpy(barlow_twins(z_a, z_b, 0.0))
    with_off = to_numpy(barlow_twins(z_a, z_b, 1.0))
    np.testing.assert_allclose(
        to_numpy(barlow_twins(z_a, z_b, 0.25)), on + 0.25 * (with_off - on), rtol=1e-5
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    z_a, z_b = random_pair(16, 32, seed=6)
    low_a, low_b = ops.cast(z_a, dtype), ops.cast(z_b, dtype)
    actual = to_numpy(barlow_twins(low_a, low_b))
    assert actual.dtype == np.float32
    assert np.isfinite(actual)
    # Exact on the rounded inputs: the computation runs in float32, so only
    # float32 rounding is left; computed in the input's precision, the loss
    # would be off by 1e-3 or more.
    rounded_a = to_numpy(ops.cast(low_a, "float32"))
    rounded_b = to_numpy(ops.cast(low_b, "float32"))
    np.testing.assert_allclose(
        actual, reference_barlow_twins(rounded_a, rounded_b), rtol=1e-6
    )


def test_gradient_matches_finite_differences():
    z_a, z_b = random_pair(4, 3, seed=9)
    z_a64, z_b64 = z_a.astype(np.float64), z_b.astype(np.float64)
    lambda_offdiag = 0.3
    step = 1e-6
    numeric = np.zeros_like(z_a64)
    for index in np.ndindex(z_a.shape):
        up, down = z_a64.copy(), z_a64.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (
            reference_barlow_twins(up, z_b64, lambda_offdiag)
            - reference_barlow_twins(down, z_b64, lambda_offdiag)
        ) / (2 * step)
    actual = gradient(lambda v: barlow_twins(v, z_b, lambda_offdiag), z_a)
    np.testing.assert_allclose(actual, numeric, rtol=2e-3, atol=2e-4)


def test_gradient_is_finite_for_collapsed_branches():
    # Constant dimensions have zero variance: eps keeps 1/std finite.
    z = np.ones((6, 4), "float32")
    z_b = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    for fn in (lambda v: barlow_twins(v, z), lambda v: barlow_twins(v, z_b)):
        assert np.all(np.isfinite(gradient(fn, z)))


def test_cross_replica_without_strategy_is_the_local_loss():
    z_a, z_b = random_pair(8, 16, seed=10)
    np.testing.assert_array_equal(
        to_numpy(barlow_twins(z_a, z_b, cross_replica=True)),
        to_numpy(barlow_twins(z_a, z_b)),
    )


def test_cross_replica_uses_the_global_batch(monkeypatch):
    # Replica 1 of 2, the other replica holding another batch: the loss is
    # that of the global batch, not of the local one.
    def other_replica(tensor):
        return 2.0 * ops.flip(tensor, axis=0) + 1.0

    monkeypatch.setattr(
        distribute,
        "cross_replica_concat",
        lambda tensor: ops.concatenate([other_replica(tensor), tensor], axis=0),
    )
    monkeypatch.setattr(distribute, "replica_id", lambda: 1)
    z_a, z_b = random_pair(6, 5, seed=11)
    global_a = np.concatenate([2.0 * z_a[::-1] + 1.0, z_a])
    global_b = np.concatenate([2.0 * z_b[::-1] + 1.0, z_b])
    expected = reference_barlow_twins(global_a, global_b, 0.1)
    actual = to_numpy(barlow_twins(z_a, z_b, 0.1, cross_replica=True))
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
    assert not np.isclose(actual, reference_barlow_twins(z_a, z_b, 0.1), rtol=1e-2)


@pytest.mark.skipif(BACKEND == "torch", reason="no graph compilation to test")
def test_compiles_with_unknown_batch_size():
    z_a, z_b = random_pair(7, 5, seed=12)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, 5], tf.float32)
        fn = tf.function(barlow_twins, input_signature=[spec, spec])
    else:
        import jax

        fn = jax.jit(barlow_twins)
    np.testing.assert_allclose(
        to_numpy(fn(z_a, z_b)), reference_barlow_twins(z_a, z_b), rtol=1e-5
    )


def test_loss_class_config_round_trip():
    revived = run_serialization_test(BarlowTwins(lambda_offdiag=0.0051, name="bt"))
    assert revived.lambda_offdiag == 0.0051
    assert revived.name == "bt"


@pytest.mark.parametrize(
    "value", [-1e-3, float("inf"), float("nan"), "5e-3", None, True]
)
def test_rejects_bad_lambda(value):
    with pytest.raises(ValueError, match="lambda_offdiag"):
        barlow_twins(np.ones((2, 3)), np.ones((2, 3)), value)
    with pytest.raises(ValueError, match="lambda_offdiag"):
        BarlowTwins(lambda_offdiag=value)


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [
        ((4, 3, 1), (4, 3)),
        ((4,), (4,)),
        ((4, 3), (4, 5)),
        ((4, 3), (5, 3)),
        ((1, 3), (1, 3)),
    ],
)
def test_rejects_bad_shapes(shape_a, shape_b):
    with pytest.raises(ValueError, match="z_a"):
        barlow_twins(np.ones(shape_a), np.ones(shape_b))


def test_loss_class_rejects_bad_stacks_and_sample_weights():
    with pytest.raises(ValueError, match="y_pred"):
        BarlowTwins()(None, np.ones((5, 4)))
    with pytest.raises(ValueError, match="y_pred"):
        BarlowTwins()(None, np.ones((2, 4)))
    with pytest.raises(ValueError, match="sample_weight"):
        BarlowTwins()(None, np.ones((4, 4)), sample_weight=np.ones(4))
