import numpy as np
import pytest
from keras import ops

from keras_simclr.losses.byol import BYOL
from keras_simclr.losses.byol import byol
from tests.testing import backend_gradients
from tests.testing import run_serialization_test

# The loss classes are deprecated (deprecated_classes_test.py); they still
# compute what they did.
pytestmark = pytest.mark.filterwarnings(
    "ignore:keras_simclr.losses.*deprecated:DeprecationWarning"
)


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_byol(p, z):
    """Each direction's mean squared distance of normalised vectors (float64)."""
    p = normalize(np.asarray(p, np.float64))
    z = normalize(np.asarray(z, np.float64))
    n = len(p) // 2
    loss = 0.0
    for i in range(n):
        loss += np.sum((p[i] - z[n + i]) ** 2) / n
        loss += np.sum((p[n + i] - z[i]) ** 2) / n
    return loss


def random_pairs(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(2 * n, dim)).astype("float32")
    p = (z[np.r_[n:2 * n, 0:n]] + rng.normal(size=z.shape)).astype("float32")
    return p, z


@pytest.mark.parametrize("n, dim", [(1, 2), (3, 7), (16, 64)])
def test_matches_numpy_reference(n, dim):
    p, z = random_pairs(n, dim, seed=n)
    expected = reference_byol(p, z)
    np.testing.assert_allclose(ops.convert_to_numpy(byol(p, z)), expected, rtol=1e-5)
    loss = BYOL()(None, {"prediction": p, "target": z})
    np.testing.assert_allclose(ops.convert_to_numpy(loss), expected, rtol=1e-5)


def test_closed_forms():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(10, 6)).astype("float32")
    swapped = np.concatenate([z[5:], z[:5]])
    # Each view's prediction equal (or parallel) to the other view's target.
    np.testing.assert_allclose(
        ops.convert_to_numpy(byol(3.0 * swapped, z)), 0.0, atol=1e-6
    )
    # Opposite: 4 per direction.
    np.testing.assert_allclose(ops.convert_to_numpy(byol(-swapped, z)), 8.0, rtol=1e-6)
    # p equal to z pairs each view with itself, not with the other view.
    assert float(ops.convert_to_numpy(byol(z, z))) > 0.5


def test_symmetric_in_the_views_and_scale_invariant():
    p, z = random_pairs(6, 10, seed=2)
    base = ops.convert_to_numpy(byol(p, z))
    swap = np.r_[6:12, 0:6]
    np.testing.assert_allclose(
        ops.convert_to_numpy(byol(p[swap], z[swap])), base, rtol=1e-6
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(byol(0.1 * p, 7.0 * z)), base, rtol=1e-5
    )


def test_gradient_reaches_predictions_only():
    p, z = random_pairs(3, 4, seed=3)
    grad_p, grad_z = backend_gradients(byol, p, z)
    np.testing.assert_array_equal(grad_z, 0.0)
    p64 = p.astype(np.float64)
    base = reference_byol(p64, z)
    epsilon = 1e-6
    numeric = np.zeros_like(p64)
    for index in np.ndindex(p.shape):
        shifted = p64.copy()
        shifted[index] += epsilon
        numeric[index] = (reference_byol(shifted, z) - base) / epsilon
    np.testing.assert_allclose(grad_p, numeric, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    low = [ops.cast(x, dtype) for x in random_pairs(16, 32, seed=4)]
    actual = ops.convert_to_numpy(byol(*low))
    assert actual.dtype == np.float32
    # Exact on the rounded inputs: the computation runs in float32, so only
    # float32 rounding is left; computed in the input's precision, the loss
    # would be off by 1e-3 or more.
    rounded = [ops.convert_to_numpy(ops.cast(x, "float32")) for x in low]
    np.testing.assert_allclose(actual, reference_byol(*rounded), rtol=1e-6)


def test_loss_class_config_round_trip():
    revived = run_serialization_test(BYOL(name="regression"))
    assert revived.name == "regression"


def test_rejects_bad_inputs():
    p, z = random_pairs(2, 3)
    with pytest.raises(ValueError, match="`p`"):
        byol(p[None], z)
    with pytest.raises(ValueError, match="`z`"):
        byol(p, z[:2])
    with pytest.raises(ValueError, match="`p`"):
        byol(p[:3], z[:3])
    with pytest.raises(ValueError, match="y_pred"):
        BYOL()(None, {"prediction": p})
    with pytest.raises(ValueError, match="y_pred"):
        BYOL()(None, p)
    with pytest.raises(ValueError, match="sample_weight"):
        BYOL()(None, {"prediction": p, "target": z}, np.ones(4))
