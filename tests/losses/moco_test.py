import numpy as np
import pytest
from keras import ops

from keras_simclr.losses.moco import MoCoInfoNCE
from keras_simclr.losses.moco import moco_infonce
from tests.testing import backend_gradients
from tests.testing import run_serialization_test

# The loss classes are deprecated (deprecated_classes_test.py); they still
# compute what they did.
pytestmark = pytest.mark.filterwarnings(
    "ignore:keras_simclr.losses.*deprecated:DeprecationWarning"
)


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_moco(q, k, queue, temperature):
    """Per-query loop, as the MoCo paper's eq. 1 writes it (float64)."""
    q = normalize(np.asarray(q, np.float64))
    k = normalize(np.asarray(k, np.float64))
    queue = np.asarray(queue, np.float64)
    losses = []
    for n in range(len(q)):
        logits = np.concatenate([[q[n] @ k[n]], queue @ q[n]]) / temperature
        top = logits.max()
        losses.append(np.log(np.sum(np.exp(logits - top))) + top - logits[0])
    return np.mean(losses)


def random_inputs(n, dim, queue_size, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, dim)).astype("float32")
    k = (q + rng.normal(size=(n, dim))).astype("float32")
    queue = normalize(rng.normal(size=(queue_size, dim))).astype("float32")
    return q, k, queue


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
@pytest.mark.parametrize("n, dim, queue_size", [(1, 4, 3), (5, 16, 32), (32, 8, 64)])
def test_matches_numpy_reference(n, dim, queue_size, temperature):
    q, k, queue = random_inputs(n, dim, queue_size, seed=n)
    expected = reference_moco(q, k, queue, temperature)
    # A loss near 0 (one query, three negatives, t=0.07) is the difference
    # of two logits of about 1/t: float32 resolves it to ~1e-6.
    np.testing.assert_allclose(
        ops.convert_to_numpy(moco_infonce(q, k, queue, temperature)),
        expected,
        rtol=1e-5,
        atol=1e-6,
    )
    loss = MoCoInfoNCE(temperature)(None, {"query": q, "key": k, "queue": queue})
    np.testing.assert_allclose(
        ops.convert_to_numpy(loss), expected, rtol=1e-5, atol=1e-6
    )


def test_queue_is_used_as_given_and_queries_keys_are_normalised():
    q, k, queue = random_inputs(4, 8, 16)
    base = ops.convert_to_numpy(moco_infonce(q, k, queue))
    np.testing.assert_allclose(
        ops.convert_to_numpy(moco_infonce(5.0 * q, 0.1 * k, queue)), base, rtol=1e-5
    )
    scaled = ops.convert_to_numpy(moco_infonce(q, k, 2.0 * queue))
    np.testing.assert_allclose(
        scaled, reference_moco(q, k, 2.0 * queue, 0.2), rtol=1e-5
    )
    assert not np.isclose(scaled, base)


def test_far_queue_closed_form_tends_to_zero():
    # Queries equal to their keys, the queue orthogonal to all of them: each
    # loss is log(1 + K exp(-1/t)), the loss without negatives (0) as t -> 0.
    rng = np.random.default_rng(1)
    n, queue_size = 6, 32
    q = np.concatenate([rng.normal(size=(n, 4)), np.zeros((n, 4))], 1)
    queue = np.concatenate(
        [np.zeros((queue_size, 4)), normalize(rng.normal(size=(queue_size, 4)))], 1
    )
    temperatures = [1.0, 0.2, 0.05, 0.02]
    losses = [
        float(ops.convert_to_numpy(moco_infonce(q, q, queue, t)))
        for t in temperatures
    ]
    expected = [np.log1p(queue_size * np.exp(-1 / t)) for t in temperatures]
    # float32 resolves a logit of 1/t = 50 to about 4e-6.
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=4e-6)
    assert np.all(np.diff(losses) <= 0)
    assert losses[-1] < 1e-6


def test_uniform_logits_closed_form_is_log_k_plus_one():
    # Queries orthogonal to their keys and to the whole queue: all K + 1
    # logits are 0, whatever the temperature.
    rng = np.random.default_rng(2)
    n, queue_size = 5, 20
    q = np.concatenate([rng.normal(size=(n, 3)), np.zeros((n, 5))], 1)
    k = np.concatenate([np.zeros((n, 3)), rng.normal(size=(n, 5))], 1)
    queue = np.concatenate(
        [np.zeros((queue_size, 3)), normalize(rng.normal(size=(queue_size, 5)))], 1
    )
    for t in (0.1, 0.5):
        np.testing.assert_allclose(
            ops.convert_to_numpy(moco_infonce(q, k, queue, t)),
            np.log(queue_size + 1),
            rtol=1e-6,
        )


def test_gradient_reaches_queries_only():
    q, k, queue = random_inputs(3, 4, 5, seed=3)
    t = 0.3
    grad_q, grad_k, grad_queue = backend_gradients(
        lambda a, b, c: moco_infonce(a, b, c, t), q, k, queue
    )
    np.testing.assert_array_equal(grad_k, 0.0)
    np.testing.assert_array_equal(grad_queue, 0.0)
    q64 = q.astype(np.float64)
    base = reference_moco(q64, k, queue, t)
    epsilon = 1e-6
    numeric = np.zeros_like(q64)
    for index in np.ndindex(q.shape):
        shifted = q64.copy()
        shifted[index] += epsilon
        numeric[index] = (reference_moco(shifted, k, queue, t) - base) / epsilon
    np.testing.assert_allclose(grad_q, numeric, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    low = [ops.cast(x, dtype) for x in random_inputs(16, 32, 64, seed=4)]
    actual = ops.convert_to_numpy(moco_infonce(*low, 0.1))
    assert actual.dtype == np.float32
    # Exact on the rounded inputs: the computation runs in float32, so only
    # float32 rounding is left; computed in the input's precision, the loss
    # would be off by 1e-3 or more.
    rounded = [ops.convert_to_numpy(ops.cast(x, "float32")) for x in low]
    np.testing.assert_allclose(actual, reference_moco(*rounded, 0.1), rtol=1e-6)


def test_loss_class_config_round_trip():
    revived = run_serialization_test(MoCoInfoNCE(temperature=0.07, name="moco"))
    assert revived.temperature == 0.07
    assert revived.name == "moco"


@pytest.mark.parametrize("temperature", [0, -0.2, "0.2", None, True])
def test_rejects_bad_temperature(temperature):
    q, k, queue = random_inputs(2, 3, 4)
    with pytest.raises(ValueError, match="temperature"):
        moco_infonce(q, k, queue, temperature)
    with pytest.raises(ValueError, match="temperature"):
        MoCoInfoNCE(temperature=temperature)


def test_rejects_bad_shapes():
    q, k, queue = random_inputs(2, 3, 4)
    with pytest.raises(ValueError, match="`q`"):
        moco_infonce(q[None], k, queue)
    with pytest.raises(ValueError, match="`k`"):
        moco_infonce(q, k[:1], queue)
    with pytest.raises(ValueError, match="queue"):
        moco_infonce(q, k, queue[:, :2])
    with pytest.raises(ValueError, match="queue"):
        moco_infonce(q, k, queue[0])
    with pytest.raises(ValueError, match="y_pred"):
        MoCoInfoNCE()(None, {"query": q, "key": k})
    with pytest.raises(ValueError, match="y_pred"):
        MoCoInfoNCE()(None, q)
    with pytest.raises(ValueError, match="sample_weight"):
        MoCoInfoNCE()(None, {"query": q, "key": k, "queue": queue}, np.ones(2))
