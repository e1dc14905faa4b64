import numpy as np
import pytest
from keras import ops

from keras_simclr.losses.byol import byol
from keras_simclr.losses.simsiam import SimSiam
from keras_simclr.losses.simsiam import simsiam
from tests.testing import backend_gradients
from tests.testing import run_serialization_test

# The loss classes are deprecated (deprecated_classes_test.py); they still
# compute what they did.
pytestmark = pytest.mark.filterwarnings(
    "ignore:keras_simclr.losses.*deprecated:DeprecationWarning"
)


def reference_simsiam(p, z):
    """0.5 * (D(p_a, z_b) + D(p_b, z_a)), the paper's eq. 1-2 (float64)."""
    p = np.asarray(p, np.float64)
    z = np.asarray(z, np.float64)
    n = len(p) // 2

    def negative_cosine(x, y):
        return -np.mean(
            [
                x[i] @ y[i] / np.linalg.norm(x[i]) / np.linalg.norm(y[i])
                for i in range(n)
            ]
        )

    return 0.5 * (negative_cosine(p[:n], z[n:]) + negative_cosine(p[n:], z[:n]))


def random_pairs(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(2 * n, dim)).astype("float32")
    p = (z[np.r_[n:2 * n, 0:n]] + rng.normal(size=z.shape)).astype("float32")
    return p, z


@pytest.mark.parametrize("n, dim", [(1, 2), (3, 7), (16, 64)])
def test_matches_numpy_reference(n, dim):
    p, z = random_pairs(n, dim, seed=n)
    expected = reference_simsiam(p, z)
    np.testing.assert_allclose(
        ops.convert_to_numpy(simsiam(p, z)), expected, rtol=1e-5, atol=1e-7
    )
    loss = SimSiam()(None, {"prediction": p, "target": z})
    np.testing.assert_allclose(
        ops.convert_to_numpy(loss), expected, rtol=1e-5, atol=1e-7
    )


def test_closed_forms():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(10, 6)).astype("float32")
    swapped = np.concatenate([z[5:], z[:5]])
    scales = rng.uniform(0.1, 10.0, size=(10, 1)).astype("float32")
    # Each prediction parallel to the other view's projection: -1.
    np.testing.assert_allclose(
        ops.convert_to_numpy(simsiam(scales * swapped, z)), -1.0, rtol=1e-6
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(simsiam(-scales * swapped, z)), 1.0, rtol=1e-6
    )


def test_is_a_quarter_of_byol_minus_one():
    p, z = random_pairs(5, 9, seed=2)
    np.testing.assert_allclose(
        ops.convert_to_numpy(simsiam(p, z)),
        ops.convert_to_numpy(byol(p, z)) / 4 - 1,
        rtol=1e-5,
    )


def test_symmetric_in_the_views():
    p, z = random_pairs(6, 10, seed=3)
    swap = np.r_[6:12, 0:6]
    np.testing.assert_allclose(
        ops.convert_to_numpy(simsiam(p[swap], z[swap])),
        ops.convert_to_numpy(simsiam(p, z)),
        rtol=1e-6,
    )


def test_gradient_reaches_predictions_only():
    p, z = random_pairs(3, 4, seed=4)
    grad_p, grad_z = backend_gradients(simsiam, p, z)
    np.testing.assert_array_equal(grad_z, 0.0)
    # d(-cos(p, z)) / dp = -(z_hat - cos * p_hat) / ||p||, times 0.5 / N.
    n = 3
    partner = z[np.r_[n:2 * n, 0:n]].astype(np.float64)
    p64 = p.astype(np.float64)
    p_norm = np.linalg.norm(p64, axis=1, keepdims=True)
    p_hat = p64 / p_norm
    z_hat = partner / np.linalg.norm(partner, axis=1, keepdims=True)
    cosine = np.sum(p_hat * z_hat, axis=1, keepdims=True)
    expected = -0.5 / n * (z_hat - cosine * p_hat) / p_norm
    np.testing.assert_allclose(grad_p, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    low = [ops.cast(x, dtype) for x in random_pairs(16, 32, seed=5)]
    actual = ops.convert_to_numpy(simsiam(*low))
    assert actual.dtype == np.float32
    # Exact on the rounded inputs: the computation runs in float32, so only
    # float32 rounding is left; computed in the input's precision, the loss
    # would be off by 1e-3 or more.
    rounded = [ops.convert_to_numpy(ops.cast(x, "float32")) for x in low]
    np.testing.assert_allclose(actual, reference_simsiam(*rounded), rtol=1e-6)


def test_loss_class_config_round_trip():
    revived = run_serialization_test(SimSiam(name="siamese"))
    assert revived.name == "siamese"


def test_rejects_bad_inputs():
    p, z = random_pairs(2, 3)
    with pytest.raises(ValueError, match="`p`"):
        simsiam(p[None], z)
    with pytest.raises(ValueError, match="`z`"):
        simsiam(p, z[:, :2])
    with pytest.raises(ValueError, match="`p`"):
        simsiam(p[:3], z[:3])
    with pytest.raises(ValueError, match="y_pred"):
        SimSiam()(None, {"prediction": p, "targets": z})
    with pytest.raises(ValueError, match="y_pred"):
        SimSiam()(None, (p, z))
    with pytest.raises(ValueError, match="sample_weight"):
        SimSiam()(None, {"prediction": p, "target": z}, np.ones(4))
