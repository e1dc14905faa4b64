import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr import distribute
from keras_simclr.losses.supervised_contrastive import SupervisedContrastive
from keras_simclr.losses.supervised_contrastive import supervised_contrastive
from tests.testing import gradient
from tests.testing import run_serialization_test

# The loss classes are deprecated (deprecated_classes_test.py); they still
# compute what they did.
pytestmark = pytest.mark.filterwarnings(
    "ignore:keras_simclr.losses.*deprecated:DeprecationWarning"
)

BACKEND = keras.backend.backend()


def reference_per_anchor(z_a, z_b, labels, temperature):
    """Eq. 2 of the paper, one anchor at a time, over the 2N views (float64).

    Views are ordered `[a_0 .. a_{N-1}, b_0 .. b_{N-1}]`; `labels=None` gives
    every image its own class.
    """
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    if labels is None:
        labels = np.arange(len(z_a))
    view_labels = np.concatenate([labels, labels])
    sim = z @ z.T / temperature
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        top = sim[i, others].max()
        log_denominator = top + np.log(np.sum(np.exp(sim[i, others] - top)))
        positives = [p for p in others if view_labels[p] == view_labels[i]]
        losses.append(-np.mean([sim[i, p] - log_denominator for p in positives]))
    return np.array(losses)


def reference_supervised_contrastive(z_a, z_b, labels, temperature):
    return reference_per_anchor(z_a, z_b, labels, temperature).mean()


def official_supcon(z_a, z_b, labels, temperature, base_temperature=0.07):
    """HobbitLong/SupContrast `SupConLoss` (contrast_mode="all"), in NumPy."""
    features = np.stack([z_a, z_b], 1).astype(np.float64)
    features /= np.linalg.norm(features, axis=2, keepdims=True)
    batch_size = len(labels)
    mask = (labels[:, None] == labels[None, :]).astype(np.float64)
    contrast = np.concatenate([features[:, 0], features[:, 1]])
    logits = contrast @ contrast.T / temperature
    logits -= logits.max(1, keepdims=True)
    mask = np.tile(mask, (2, 2))
    logits_mask = 1.0 - np.eye(2 * batch_size)
    mask *= logits_mask
    exp_logits = np.exp(logits) * logits_mask
    log_prob = logits - np.log(exp_logits.sum(1, keepdims=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return np.mean(-(temperature / base_temperature) * mean_log_prob_pos)


def random_batch(batch_size, dim, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    z_a = rng.normal(size=(batch_size, dim)).astype("float32")
    z_b = (z_a + rng.normal(size=z_a.shape)).astype("float32")
    labels = rng.integers(0, num_classes, size=batch_size)
    return z_a, z_b, labels




def to_numpy(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
@pytest.mark.parametrize(
    "shape", [(2, 3, 1), (2, 3, 2), (5, 8, 2), (9, 17, 3), (16, 64, 4)]
)
def test_matches_numpy_reference(shape, temperature):
    batch_size, dim, num_classes = shape
    z_a, z_b, labels = random_batch(batch_size, dim, num_classes, seed=batch_size)
    expected = reference_supervised_contrastive(z_a, z_b, labels, temperature)
    actual = supervised_contrastive(z_a, z_b, labels, temperature)
    assert to_numpy(actual).dtype == np.float32
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=1e-5)
    loss_fn = SupervisedContrastive(temperature=temperature)
    from_class = loss_fn(labels, np.concatenate([z_a, z_b]))
    np.testing.assert_allclose(to_numpy(from_class), expected, rtol=1e-5)


def reference_nt_xent(z_a, z_b, temperature):
    """NT-Xent as SimCLR's eq. 1 writes it, averaged over the 2N anchors,
    in float64 and vectorised (not the per-anchor loop of the SupCon
    reference): `-log softmax` of the positive among the 2N - 1 others."""
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    logits = z @ z.T / temperature
    np.fill_diagonal(logits, -np.inf)
    top = logits.max(axis=1, keepdims=True)
    log_denominator = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    positive = logits[np.arange(2 * n), (np.arange(2 * n) + n) % (2 * n)]
    return np.mean(log_denominator - positive)


def test_no_labels_is_nt_xent():
    z_a, z_b, _ = random_batch(7, 12, 1, seed=1)
    for temperature in (0.05, 0.5):
        expected = reference_nt_xent(z_a, z_b, temperature)
        np.testing.assert_allclose(
            to_numpy(supervised_contrastive(z_a, z_b, None, temperature)),
            expected,
            rtol=1e-6,
        )
        loss_fn = SupervisedContrastive(temperature=temperature)
        np.testing.assert_allclose(
            to_numpy(loss_fn(None, np.concatenate([z_a, z_b]))),
            expected,
            rtol=1e-6,
        )


def test_no_labels_closed_forms():
    # All 2N views identical: every logit is equal, so each anchor's
    # positive has probability 1 / (2N - 1).
    n = 5
    z = np.ones((n, 8), "float32")
    np.testing.assert_allclose(
        to_numpy(supervised_contrastive(z, z, None, 0.3)),
        np.log(2 * n - 1),
        rtol=1e-6,
    )
    # Views a_i = b_i = e_i, orthonormal: the positive's logit is 1 / t, the
    # 2N - 2 others 0, so the loss is log(1 + (2N - 2) exp(-1 / t)).
    z = np.eye(n, 8, dtype="float32")
    for temperature in (0.5, 1.0):
        np.testing.assert_allclose(
            to_numpy(supervised_contrastive(z, z, None, temperature)),
            np.log(1.0 + (2 * n - 2) * np.exp(-1.0 / temperature)),
            rtol=1e-6,
        )


def test_distinct_labels_are_nt_xent():
    z_a, z_b, _ = random_batch(9, 10, 1, seed=2)
    labels = np.random.default_rng(2).permutation(100)[:9] - 50
    for temperature in (0.05, 0.2, 1.0):
        np.testing.assert_allclose(
            to_numpy(supervised_contrastive(z_a, z_b, labels, temperature)),
            reference_nt_xent(z_a, z_b, temperature),
            rtol=1e-6,
        )


def test_all_same_labels():
    z_a, z_b, _ = random_batch(6, 8, 1, seed=3)
    labels = np.full(6, 4)
    np.testing.assert_allclose(
        to_numpy(supervised_contrastive(z_a, z_b, labels, 0.2)),
        reference_supervised_contrastive(z_a, z_b, labels, 0.2),
        rtol=1e-5,
    )


def test_identical_projections_of_one_class_closed_form():
    # Every other view is a positive with the same similarity: each anchor's
    # mean log-probability is log(1 / (2N - 1)).
    n = 5
    z = np.ones((n, 8), "float32")
    np.testing.assert_allclose(
        to_numpy(supervised_contrastive(z, z, np.zeros(n, "int32"))),
        np.log(2 * n - 1),
        rtol=1e-6,
    )


def test_official_code_differs_by_temperature_over_base_temperature():
    z_a, z_b, labels = random_batch(8, 16, 3, seed=4)
    for temperature in (0.07, 0.1, 0.5):
        ours = to_numpy(supervised_contrastive(z_a, z_b, labels, temperature))
        official = official_supcon(z_a, z_b, labels, temperature, base_temperature=0.07)
        np.testing.assert_allclose(ours * temperature / 0.07, official, rtol=1e-5)
        np.testing.assert_allclose(
            ours,
            official_supcon(
                z_a, z_b, labels, temperature, base_temperature=temperature
            ),
            rtol=1e-5,
        )


def test_small_temperature_float32_is_finite_and_exact():
    z_a, z_b, labels = random_batch(8, 16, 3, seed=5)
    actual = to_numpy(supervised_contrastive(z_a, z_b, labels, 0.01))
    assert np.isfinite(actual)
    np.testing.assert_allclose(
        actual, reference_supervised_contrastive(z_a, z_b, labels, 0.01), rtol=1e-4
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    z_a, z_b, labels = random_batch(16, 32, 4, seed=6)
    z_b = (z_a + 0.3 * (z_b - z_a)).astype("float32")
    low_a, low_b = ops.cast(z_a, dtype), ops.cast(z_b, dtype)
    rounded_a = to_numpy(ops.cast(low_a, "float32"))
    rounded_b = to_numpy(ops.cast(low_b, "float32"))
    for temperature in (0.01, 0.1):
        actual = to_numpy(supervised_contrastive(low_a, low_b, labels, temperature))
        assert actual.dtype == np.float32
        # Exact on the rounded inputs: only float32 rounding is left. A
        # similarity or softmax computed in the input's precision would be
        # off by 1e-3 to 1e-2.
        expected = reference_supervised_contrastive(
            rounded_a, rounded_b, labels, temperature
        )
        assert expected > 1.0
        np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_gradient_matches_finite_differences():
    z_a, z_b, _ = random_batch(4, 3, 1, seed=7)
    labels = np.array([0, 1, 0, 0])
    temperature = 0.3
    z_a64, z_b64 = z_a.astype(np.float64), z_b.astype(np.float64)
    step = 1e-6
    numeric = np.zeros_like(z_a64)
    for index in np.ndindex(z_a.shape):
        up, down = z_a64.copy(), z_a64.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (
            reference_supervised_contrastive(up, z_b64, labels, temperature)
            - reference_supervised_contrastive(down, z_b64, labels, temperature)
        ) / (2 * step)
    actual = gradient(
        lambda v: supervised_contrastive(v, z_b, labels, temperature), z_a
    )
    assert np.all(np.isfinite(actual))
    np.testing.assert_allclose(actual, numeric, rtol=2e-3, atol=2e-4)


def test_gradient_is_finite_at_small_temperature():
    z_a, z_b, labels = random_batch(6, 5, 2, seed=8)
    actual = gradient(lambda v: supervised_contrastive(v, z_b, labels, 0.01), z_a)
    assert np.all(np.isfinite(actual))


def test_cross_replica_without_strategy_is_the_local_loss():
    z_a, z_b, labels = random_batch(8, 16, 3, seed=9)
    for given in (labels, None):
        np.testing.assert_array_equal(
            to_numpy(supervised_contrastive(z_a, z_b, given, cross_replica=True)),
            to_numpy(supervised_contrastive(z_a, z_b, given)),
        )


def test_cross_replica_scores_local_anchors_against_the_global_batch(monkeypatch):
    # Replica 1 of 2; the other replica holds this batch reversed and
    # negated, with the same labels, so positives also come from across
    # replicas. Negation commutes with the L2 normalisation.
    def other_replica(tensor):
        if "int" in keras.backend.standardize_dtype(tensor.dtype):
            return ops.flip(tensor, axis=0)
        return -ops.flip(tensor, axis=0)

    monkeypatch.setattr(
        distribute,
        "cross_replica_concat",
        lambda tensor: ops.concatenate([other_replica(tensor), tensor], axis=0),
    )
    monkeypatch.setattr(distribute, "replica_id", lambda: 1)
    n = 5
    z_a, z_b, labels = random_batch(n, 6, 2, seed=10)
    global_a = np.concatenate([-z_a[::-1], z_a])
    global_b = np.concatenate([-z_b[::-1], z_b])
    global_labels = np.concatenate([labels[::-1], labels])
    # This replica's anchors: a_n and b_n of the second half of the batch.
    local = np.r_[n : 2 * n, 3 * n : 4 * n]
    for given, given_global in ((labels, global_labels), (None, None)):
        per_anchor = reference_per_anchor(global_a, global_b, given_global, 0.2)
        actual = to_numpy(
            supervised_contrastive(z_a, z_b, given, 0.2, cross_replica=True)
        )
        np.testing.assert_allclose(actual, per_anchor[local].mean(), rtol=1e-5)
        local_loss = reference_supervised_contrastive(z_a, z_b, given, 0.2)
        assert not np.isclose(actual, local_loss, rtol=1e-2)


@pytest.mark.skipif(BACKEND == "torch", reason="no graph compilation to test")
def test_compiles_with_unknown_batch_size():
    z_a, z_b, labels = random_batch(7, 5, 3, seed=11)
    labels = labels.astype("int32")
    if BACKEND == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, 5], tf.float32)
        fn = tf.function(
            supervised_contrastive,
            input_signature=[spec, spec, tf.TensorSpec([None], tf.int32)],
        )
    else:
        import jax

        fn = jax.jit(supervised_contrastive)
    np.testing.assert_allclose(
        to_numpy(fn(z_a, z_b, labels)),
        reference_supervised_contrastive(z_a, z_b, labels, 0.1),
        rtol=1e-5,
    )


def test_loss_class_config_round_trip():
    revived = run_serialization_test(
        SupervisedContrastive(temperature=0.07, name="supcon")
    )
    assert revived.temperature == 0.07
    assert revived.name == "supcon"


@pytest.mark.parametrize("temperature", [0, -0.1, "0.1", None, True])
def test_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        supervised_contrastive(np.ones((2, 3)), np.ones((2, 3)), None, temperature)
    with pytest.raises(ValueError, match="temperature"):
        SupervisedContrastive(temperature=temperature)


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
        supervised_contrastive(np.ones(shape_a), np.ones(shape_b))
    with pytest.raises(ValueError, match="z_a"):
        supervised_contrastive(np.ones(shape_a), np.ones(shape_b), np.zeros(4, "int32"))


@pytest.mark.parametrize(
    "labels",
    [
        np.zeros(3, "int32"),
        np.zeros(5, "int32"),
        np.zeros((4, 1), "int32"),
        np.zeros(4, "float32"),
        np.zeros(4, bool),
    ],
)
def test_rejects_bad_labels(labels):
    with pytest.raises(ValueError, match="labels"):
        supervised_contrastive(np.ones((4, 3)), np.ones((4, 3)), labels)


def test_loss_class_rejects_bad_stacks_and_sample_weights():
    with pytest.raises(ValueError, match="y_pred"):
        SupervisedContrastive()(None, np.ones((5, 4)))
    with pytest.raises(ValueError, match="y_pred"):
        SupervisedContrastive()(None, np.ones((2, 4)))
    with pytest.raises(ValueError, match="sample_weight"):
        SupervisedContrastive()(np.zeros(2), np.ones((4, 4)), sample_weight=np.ones(2))
    with pytest.raises(ValueError, match="labels"):
        SupervisedContrastive()(np.zeros(3, "int32"), np.ones((4, 4)))
