import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.losses import NTXent
from keras_simclr.losses import contrastive_metrics
from keras_simclr.losses import nt_xent
from tests.testing import run_serialization_test

# The loss classes are deprecated (deprecated_classes_test.py); they still
# compute what they did.
pytestmark = pytest.mark.filterwarnings(
    "ignore:keras_simclr.losses.*deprecated:DeprecationWarning"
)


def reference_nt_xent(z_a, z_b, temperature, negatives=None):
    """Per-anchor loop over the 2N views, as the paper writes it (float64).

    `negatives` (K, D) are extra columns of every view's softmax."""
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    columns = z
    if negatives is not None:
        queue = np.asarray(negatives, np.float64)
        queue = queue / np.linalg.norm(queue, axis=1, keepdims=True)
        columns = np.concatenate([z, queue])
    sim = z @ columns.T / temperature
    losses, hits, entropies = [], [], []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [k for k in range(len(columns)) if k != i]
        logits = sim[i, others]
        log_denominator = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
        losses.append(log_denominator - sim[i, positive])
        hits.append(others[int(np.argmax(logits))] == positive)
        probs = np.exp(logits - log_denominator)
        entropies.append(-np.sum(probs * np.log(probs)))
    return np.mean(losses), np.mean(hits), np.mean(entropies)


@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("batch_size", [2, 7, 32])
def test_matches_numpy_reference(temperature, batch_size):
    rng = np.random.default_rng(batch_size)
    z_a = rng.normal(size=(batch_size, 16)).astype("float32")
    z_b = (z_a + rng.normal(size=z_a.shape)).astype("float32")
    expected = reference_nt_xent(z_a, z_b, temperature)
    np.testing.assert_allclose(
        ops.convert_to_numpy(nt_xent(z_a, z_b, temperature)),
        expected[0],
        rtol=1e-5,
    )
    loss, accuracy, entropy = contrastive_metrics(z_a, z_b, temperature)
    np.testing.assert_allclose(ops.convert_to_numpy(loss), expected[0], rtol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(accuracy), expected[1])
    np.testing.assert_allclose(
        ops.convert_to_numpy(entropy), expected[2], rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("num_negatives", [1, 5, 64])
def test_extra_negatives_match_numpy_reference(num_negatives):
    rng = np.random.default_rng(num_negatives)
    z_a = rng.normal(size=(6, 8)).astype("float32")
    z_b = (z_a + 0.5 * rng.normal(size=z_a.shape)).astype("float32")
    # Unnormalised on purpose: they are normalised inside.
    queue = (3.0 * rng.normal(size=(num_negatives, 8))).astype("float32")
    expected = reference_nt_xent(z_a, z_b, 0.2, negatives=queue)
    np.testing.assert_allclose(
        ops.convert_to_numpy(nt_xent(z_a, z_b, 0.2, negatives=queue)),
        expected[0],
        rtol=1e-5,
    )
    loss, accuracy, entropy = contrastive_metrics(z_a, z_b, 0.2, negatives=queue)
    np.testing.assert_allclose(ops.convert_to_numpy(loss), expected[0], rtol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(accuracy), expected[1])
    np.testing.assert_allclose(ops.convert_to_numpy(entropy), expected[2], rtol=1e-4)
    # More negatives can only raise each view's denominator.
    assert float(ops.convert_to_numpy(loss)) > float(
        ops.convert_to_numpy(nt_xent(z_a, z_b, 0.2))
    )


def test_extra_negatives_of_the_wrong_shape_are_rejected():
    z = np.ones((4, 8), "float32")
    with pytest.raises(ValueError, match="negatives"):
        nt_xent(z, z, negatives=np.ones((3, 7), "float32"))
    with pytest.raises(ValueError, match="negatives"):
        nt_xent(z, z, negatives=np.ones((8,), "float32"))


def test_identical_negatives_closed_form():
    # All 2N projections equal: every candidate has the same similarity, so
    # each view's loss is -log(1 / (2N - 1)) and the entropy log(2N - 1).
    n = 5
    z = np.ones((n, 8), "float32")
    loss, _, entropy = contrastive_metrics(z, z, 0.1)
    np.testing.assert_allclose(ops.convert_to_numpy(loss), np.log(2 * n - 1), rtol=1e-6)
    np.testing.assert_allclose(
        ops.convert_to_numpy(entropy), np.log(2 * n - 1), rtol=1e-5
    )


def test_orthogonal_pairs_closed_form():
    # Positives identical, all other pairs orthogonal: each loss is
    # log(e^{1/t} + (2N - 2)) - 1/t.
    n, t = 4, 0.5
    z = np.eye(n, 8, dtype="float32")
    expected = np.log(np.exp(1 / t) + 2 * n - 2) - 1 / t
    np.testing.assert_allclose(ops.convert_to_numpy(nt_xent(z, z, t)), expected, rtol=1e-6)
    _, accuracy, _ = contrastive_metrics(z, z, t)
    assert float(ops.convert_to_numpy(accuracy)) == 1.0


def test_symmetric_and_scale_invariant():
    rng = np.random.default_rng(0)
    z_a = rng.normal(size=(6, 10)).astype("float32")
    z_b = rng.normal(size=(6, 10)).astype("float32")
    ab = ops.convert_to_numpy(nt_xent(z_a, z_b))
    np.testing.assert_allclose(ops.convert_to_numpy(nt_xent(z_b, z_a)), ab, rtol=1e-6)
    np.testing.assert_allclose(
        ops.convert_to_numpy(nt_xent(3.0 * z_a, 0.2 * z_b)), ab, rtol=1e-5
    )


def test_official_reduction_is_twice_this_one():
    # The official code: loss_a + loss_b, each a mean over N anchors scored
    # against [a_i . b_*, a_i . a_* (self masked)].
    rng = np.random.default_rng(3)
    z_a = rng.normal(size=(8, 4))
    z_b = rng.normal(size=(8, 4))
    a = z_a / np.linalg.norm(z_a, axis=1, keepdims=True)
    b = z_b / np.linalg.norm(z_b, axis=1, keepdims=True)
    t = 0.2

    def direction(p, q):
        logits = np.concatenate([p @ q.T, p @ p.T - 1e9 * np.eye(8)], 1) / t
        log_z = np.log(np.exp(logits).sum(1))
        return np.mean(log_z - np.diag(p @ q.T) / t)

    official = direction(a, b) + direction(b, a)
    np.testing.assert_allclose(
        2 * ops.convert_to_numpy(nt_xent(z_a, z_b, t)), official, rtol=1e-5
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    rng = np.random.default_rng(1)
    z_a = rng.normal(size=(16, 32)).astype("float32")
    # Noisy enough pairs that the loss is of order 1 at both temperatures
    # (closer pairs give a loss of 0 at temperature 0.01, which any
    # precision matches).
    z_b = (z_a + 2.0 * rng.normal(size=z_a.shape)).astype("float32")
    low_a, low_b = ops.cast(z_a, dtype), ops.cast(z_b, dtype)
    rounded_a = ops.convert_to_numpy(ops.cast(low_a, "float32"))
    rounded_b = ops.convert_to_numpy(ops.cast(low_b, "float32"))
    for temperature in (0.01, 0.1):
        actual = ops.convert_to_numpy(nt_xent(low_a, low_b, temperature))
        assert actual.dtype == np.float32
        # Exact on the rounded inputs: only float32 rounding is left. A
        # similarity or softmax computed in the input's precision would be
        # off by 1e-3 to 1e-2.
        expected = reference_nt_xent(rounded_a, rounded_b, temperature)[0]
        assert expected > 1.0
        np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_small_temperature_float32_is_finite_and_exact():
    rng = np.random.default_rng(2)
    z_a = rng.normal(size=(8, 16)).astype("float32")
    z_b = rng.normal(size=(8, 16)).astype("float32")
    expected = reference_nt_xent(z_a, z_b, 0.01)[0]
    np.testing.assert_allclose(
        ops.convert_to_numpy(nt_xent(z_a, z_b, 0.01)), expected, rtol=1e-4
    )


def test_gradient_is_finite_and_matches_finite_differences():
    rng = np.random.default_rng(4)
    z_a = rng.normal(size=(3, 4))
    z_b = rng.normal(size=(3, 4))
    t = 0.3
    base = reference_nt_xent(z_a, z_b, t)[0]
    epsilon = 1e-5
    numeric = np.zeros_like(z_a)
    for index in np.ndindex(z_a.shape):
        shifted = z_a.copy()
        shifted[index] += epsilon
        numeric[index] = (reference_nt_xent(shifted, z_b, t)[0] - base) / epsilon
    variable = keras.Variable(z_a.astype("float32"))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = nt_xent(variable, z_b.astype("float32"), t)
        gradient = tape.gradient(loss, variable.value)
    elif keras.backend.backend() == "jax":
        import jax

        gradient = jax.grad(lambda v: nt_xent(v, z_b.astype("float32"), t))(
            z_a.astype("float32")
        )
    else:
        import torch

        value = torch.tensor(z_a.astype("float32"), requires_grad=True)
        nt_xent(value, z_b.astype("float32"), t).backward()
        gradient = value.grad
    np.testing.assert_allclose(
        ops.convert_to_numpy(gradient), numeric, rtol=2e-3, atol=2e-4
    )


def test_loss_class_splits_stacked_views():
    rng = np.random.default_rng(5)
    z_a = rng.normal(size=(4, 8)).astype("float32")
    z_b = rng.normal(size=(4, 8)).astype("float32")
    loss = NTXent(temperature=0.5)(None, np.concatenate([z_a, z_b]))
    np.testing.assert_allclose(
        ops.convert_to_numpy(loss), reference_nt_xent(z_a, z_b, 0.5)[0], rtol=1e-5
    )


def test_loss_class_config_round_trip():
    revived = run_serialization_test(NTXent(temperature=0.2, name="contrast"))
    assert revived.temperature == 0.2
    assert revived.name == "contrast"


@pytest.mark.parametrize("temperature", [0, -0.1, "0.1", None, True])
def test_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(np.ones((2, 3)), np.ones((2, 3)), temperature)
    with pytest.raises(ValueError, match="temperature"):
        NTXent(temperature=temperature)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="z_a"):
        nt_xent(np.ones((2, 3, 1)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="y_pred"):
        NTXent()(None, np.ones((3, 4)))
    with pytest.raises(ValueError, match="y_pred"):
        NTXent()(None, np.ones((2, 4)))
