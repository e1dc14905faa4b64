import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr import distribute
from keras_simclr.losses.vicreg import VICReg
from keras_simclr.losses.vicreg import vicreg
from tests.testing import gradient
from tests.testing import run_serialization_test

# The loss classes are deprecated (deprecated_classes_test.py); they still
# compute what they did.
pytestmark = pytest.mark.filterwarnings(
    "ignore:keras_simclr.losses.*deprecated:DeprecationWarning"
)

BACKEND = keras.backend.backend()


def reference_terms(z_a, z_b):
    """`(invariance, variance, covariance)` of the official `main_vicreg.py`,
    in float64."""
    x = np.asarray(z_a, np.float64)
    y = np.asarray(z_b, np.float64)
    n, d = x.shape
    invariance = np.mean((x - y) ** 2)
    x = x - x.mean(0)
    y = y - y.mean(0)
    std_x = np.sqrt(x.var(0, ddof=1) + 1e-4)
    std_y = np.sqrt(y.var(0, ddof=1) + 1e-4)
    variance = (
        np.mean(np.maximum(1 - std_x, 0)) / 2 + np.mean(np.maximum(1 - std_y, 0)) / 2
    )
    off = ~np.eye(d, dtype=bool)
    cov_x = x.T @ x / (n - 1)
    cov_y = y.T @ y / (n - 1)
    covariance = np.sum(cov_x[off] ** 2) / d + np.sum(cov_y[off] ** 2) / d
    return invariance, variance, covariance


def reference_vicreg(z_a, z_b, weights=(25.0, 25.0, 1.0)):
    return float(np.dot(weights, reference_terms(z_a, z_b)))


def random_pair(batch_size, dim, seed=0, scale=0.7):
    # Standard deviations around `scale` put some dimensions on each side of
    # the variance hinge at 1.
    rng = np.random.default_rng(seed)
    z_a = (scale * rng.normal(size=(batch_size, dim))).astype("float32")
    z_b = (z_a + 0.5 * rng.normal(size=z_a.shape) + 0.2).astype("float32")
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


@pytest.mark.parametrize(
    "weights",
    [
        (25.0, 25.0, 1.0),
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
        (2, 3.5, 0.5),  # an int weight is accepted
    ],
)
@pytest.mark.parametrize("shape", [(2, 3), (5, 8), (9, 17), (16, 64)])
def test_matches_numpy_reference(shape, weights):
    z_a, z_b = random_pair(*shape, seed=shape[0])
    expected = reference_vicreg(z_a, z_b, weights)
    actual = vicreg(z_a, z_b, *weights)
    assert to_numpy(actual).dtype == np.float32
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=1e-5, atol=1e-6)
    loss_fn = VICReg(
        invariance_weight=weights[0],
        variance_weight=weights[1],
        covariance_weight=weights[2],
    )
    from_class = loss_fn(None, np.concatenate([z_a, z_b]))
    np.testing.assert_allclose(to_numpy(from_class), expected, rtol=1e-5, atol=1e-6)


def test_defaults_are_the_official_coefficients():
    z_a, z_b = random_pair(8, 6, seed=1)
    np.testing.assert_allclose(
        to_numpy(vicreg(z_a, z_b)),
        reference_vicreg(z_a, z_b, (25.0, 25.0, 1.0)),
        rtol=1e-5,
    )


def test_identical_branches_have_no_invariance_term():
    z, _ = random_pair(10, 7, seed=2)
    assert float(to_numpy(vicreg(z, z, 1.0, 0.0, 0.0))) == 0.0
    np.testing.assert_allclose(
        to_numpy(vicreg(z, z, 25.0, 25.0, 1.0)),
        to_numpy(vicreg(z, z, 0.0, 25.0, 1.0)),
        rtol=1e-6,
    )


def test_constant_branches_closed_form():
    # No spread: std = sqrt(0 + 1e-4) = 0.01 in every dimension, so each
    # branch's hinge is 1 - 0.01 and the variance term (the two halves)
    # 0.99; no covariance; the invariance is the squared gap of the constants.
    n, d = 6, 5
    z_a = np.full((n, d), 0.5, "float32")
    z_b = np.full((n, d), -1.5, "float32")
    np.testing.assert_allclose(
        to_numpy(vicreg(z_a, z_b, 0.0, 1.0, 0.0)), 0.99, rtol=1e-6
    )
    assert float(to_numpy(vicreg(z_a, z_b, 0.0, 0.0, 1.0))) == 0.0
    np.testing.assert_allclose(
        to_numpy(vicreg(z_a, z_b)), 25.0 * 4.0 + 25.0 * 0.99, rtol=1e-6
    )


def test_decorrelated_branches_closed_form():
    # Orthogonal mean-0 columns of norm s: cov is diagonal (no covariance
    # term) and std_j = sqrt(s_j^2 / (N - 1) + 1e-4).
    n = 12
    scales = np.array([0.1, 1.0, 2.0, 3.0, 10.0])
    z = decorrelated(n, scales)
    std = np.sqrt(scales**2 / (n - 1) + 1e-4)
    expected_variance = np.mean(np.maximum(1 - std, 0))
    np.testing.assert_allclose(
        to_numpy(vicreg(z, z, 0.0, 1.0, 0.0)), expected_variance, rtol=1e-5
    )
    np.testing.assert_allclose(to_numpy(vicreg(z, z, 0.0, 0.0, 1.0)), 0.0, atol=1e-10)
    # Spread out enough (std > 1 in every dimension): every term is 0.
    z = decorrelated(n, np.full(4, 2.0 * np.sqrt(n)))
    np.testing.assert_allclose(to_numpy(vicreg(z, z)), 0.0, atol=1e-9)


def test_covariance_term_closed_form():
    # Two identical dimensions of variance v: cov has v off the diagonal
    # twice, so each branch gives 2 v^2 / D.
    n, d = 8, 3
    column = np.linspace(-1.0, 1.0, n)
    z = np.stack([column, column, np.zeros(n)], 1).astype("float32")
    v = np.var(column, ddof=1)
    np.testing.assert_allclose(
        to_numpy(vicreg(z, z, 0.0, 0.0, 1.0)), 2 * (2 * v**2 / d), rtol=1e-5
    )


def test_symmetric():
    z_a, z_b = random_pair(9, 6, seed=3)
    np.testing.assert_allclose(
        to_numpy(vicreg(z_b, z_a)), to_numpy(vicreg(z_a, z_b)), rtol=1e-6
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    z_a, z_b = random_pair(16, 32, seed=6)
    low_a, low_b = ops.cast(z_a, dtype), ops.cast(z_b, dtype)
    actual = to_numpy(vicreg(low_a, low_b))
    assert actual.dtype == np.float32
    assert np.isfinite(actual)
    # Exact on the rounded inputs: the computation runs in float32, so only
    # float32 rounding is left; computed in the input's precision, the loss
    # would be off by 1e-3 or more.
    rounded_a = to_numpy(ops.cast(low_a, "float32"))
    rounded_b = to_numpy(ops.cast(low_b, "float32"))
    np.testing.assert_allclose(
        actual, reference_vicreg(rounded_a, rounded_b), rtol=1e-6
    )


def test_gradient_matches_finite_differences():
    z_a, z_b = random_pair(5, 3, seed=9)
    weights = (2.0, 3.0, 1.5)
    z_a64, z_b64 = z_a.astype(np.float64), z_b.astype(np.float64)
    step = 1e-6
    numeric = np.zeros_like(z_a64)
    for index in np.ndindex(z_a.shape):
        up, down = z_a64.copy(), z_a64.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (
            reference_vicreg(up, z_b64, weights)
            - reference_vicreg(down, z_b64, weights)
        ) / (2 * step)
    actual = gradient(lambda v: vicreg(v, z_b, *weights), z_a)
    np.testing.assert_allclose(actual, numeric, rtol=2e-3, atol=2e-4)


def test_gradient_is_finite_for_collapsed_branches():
    # Zero variance: the 1e-4 inside the square root keeps d std finite.
    z = np.ones((6, 4), "float32")
    z_b, _ = random_pair(6, 4, seed=0)
    for fn in (lambda v: vicreg(v, z), lambda v: vicreg(v, z_b)):
        assert np.all(np.isfinite(gradient(fn, z)))


def test_cross_replica_without_strategy_is_the_local_loss():
    z_a, z_b = random_pair(8, 16, seed=10)
    np.testing.assert_array_equal(
        to_numpy(vicreg(z_a, z_b, cross_replica=True)), to_numpy(vicreg(z_a, z_b))
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
    actual = to_numpy(vicreg(z_a, z_b, cross_replica=True))
    np.testing.assert_allclose(actual, reference_vicreg(global_a, global_b), rtol=1e-5)
    assert not np.isclose(actual, reference_vicreg(z_a, z_b), rtol=1e-2)


def test_official_local_invariance_gives_the_same_global_loss(monkeypatch):
    # Two replicas of 6 images each. The official `main_vicreg.py` takes the
    # invariance of each replica's local batch, variance and covariance of
    # the gathered batch (`FullGatherLayer`), and DDP averages the replicas'
    # gradients, so its loss is the mean of the per-replica values. Here
    # every term uses the gathered batch, so each replica computes one
    # global value; with equal local batches the means agree.
    z_a, z_b = random_pair(12, 4, seed=13)
    size = 6
    replica = {"id": 0}

    def gather(tensor):
        # The global batch of whichever branch this replica's slice is.
        local = to_numpy(tensor)
        start = replica["id"] * size
        for branch in (z_a, z_b):
            if np.array_equal(local, branch[start : start + size]):
                return ops.convert_to_tensor(branch)
        raise AssertionError("not a local slice of either branch")

    monkeypatch.setattr(distribute, "cross_replica_concat", gather)
    monkeypatch.setattr(distribute, "replica_id", lambda: replica["id"])
    ours, official = [], []
    _, variance, covariance = reference_terms(z_a, z_b)
    for replica["id"] in (0, 1):
        local = slice(replica["id"] * size, (replica["id"] + 1) * size)
        ours.append(to_numpy(vicreg(z_a[local], z_b[local], cross_replica=True)))
        invariance = reference_terms(z_a[local], z_b[local])[0]
        official.append(25.0 * invariance + 25.0 * variance + covariance)
    np.testing.assert_allclose(np.mean(ours), np.mean(official), rtol=1e-6)
    # The same value on both replicas, though the official per-replica
    # values differ.
    np.testing.assert_array_equal(ours[0], ours[1])
    assert not np.isclose(official[0], official[1], rtol=1e-3)


@pytest.mark.skipif(BACKEND == "torch", reason="no graph compilation to test")
def test_compiles_with_unknown_batch_size():
    z_a, z_b = random_pair(7, 5, seed=12)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, 5], tf.float32)
        fn = tf.function(vicreg, input_signature=[spec, spec])
    else:
        import jax

        fn = jax.jit(vicreg)
    np.testing.assert_allclose(
        to_numpy(fn(z_a, z_b)), reference_vicreg(z_a, z_b), rtol=1e-5
    )


def test_loss_class_config_round_trip():
    revived = run_serialization_test(
        VICReg(
            invariance_weight=10.0,
            variance_weight=5.0,
            covariance_weight=0.5,
            name="vr",
        )
    )
    assert revived.invariance_weight == 10.0
    assert revived.variance_weight == 5.0
    assert revived.covariance_weight == 0.5
    assert revived.name == "vr"


@pytest.mark.parametrize(
    "argument", ["invariance_weight", "variance_weight", "covariance_weight"]
)
@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan"), "25", None, True])
def test_rejects_bad_weights(argument, value):
    with pytest.raises(ValueError, match=argument):
        vicreg(np.ones((2, 3)), np.ones((2, 3)), **{argument: value})
    with pytest.raises(ValueError, match=argument):
        VICReg(**{argument: value})


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
        vicreg(np.ones(shape_a), np.ones(shape_b))


def test_loss_class_rejects_bad_stacks_and_sample_weights():
    with pytest.raises(ValueError, match="y_pred"):
        VICReg()(None, np.ones((5, 4)))
    with pytest.raises(ValueError, match="y_pred"):
        VICReg()(None, np.ones((2, 4)))
    with pytest.raises(ValueError, match="sample_weight"):
        VICReg()(None, np.ones((4, 4)), sample_weight=np.ones(4))
