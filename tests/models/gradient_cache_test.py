"""`SimCLRPretrainer(gradient_chunk_size=...)`: the whole batch's loss and
gradient, encoded a chunk at a time.

The references are the backend's own autodiff through the whole batch in one
pass: without batch norm, the pretrainer without chunks; with batch norm,
the chunks of the documented rule encoded in one pass (image `i` in block
`i % n`; chunk `c`: first views of block `c`, second views of block
`c + 1`), written here with NumPy indices. Plain gradient accumulation
(each chunk's own loss) is far outside the tolerance.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.models import _gradient_cache
from keras_simclr.objectives import OBJECTIVES

N = 12
CHUNK = 4  # 3 chunks of 4 images, 8 views each.
RTOL = 1e-5


def encoder(batch_norm):
    layers = [keras.Input((8, 8, 3)), keras.layers.Conv2D(6, 3, use_bias=False)]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D()]
    return keras.Sequential(layers, name="encoder")


def head(batch_norm):
    if batch_norm:
        return keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=5)
    return keras.Sequential(
        [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(5)],
        name="projection_head",
    )


def make(objective="simclr", batch_norm=False, chunk=CHUNK, num_classes=3, augmentation=None, seed=0):
    keras.utils.set_random_seed(seed)
    arguments = {}
    if objective == "moco":
        arguments = {"queue_size": 24}
    model = SimCLRPretrainer(
        encoder(batch_norm),
        augmentation=augmentation,
        projection_head=head(batch_norm),
        objective=OBJECTIVES[objective](**arguments),
        num_classes=num_classes,
        gradient_chunk_size=chunk,
    )
    model.build((None, 8, 8, 3))
    return model


def batch(n=N, seed=0):
    rng = np.random.default_rng(seed)
    # Images that differ in their colour and pattern, the views of an image
    # alike: features that pooling does not average away.
    images = rng.normal(size=(n, 1, 1, 3)) + rng.normal(size=(n, 8, 8, 3))
    views = {
        key: (images + 0.3 * rng.normal(size=images.shape)).astype("float32")
        for key in ("view_a", "view_b")
    }
    labels = rng.integers(0, 3, n).astype("int32")
    return views, labels


def loss_and_gradients(model, x, y, forward=None):
    """The loss of one training step and its gradients with respect to the
    trainable variables, by the backend's autodiff, as Keras's trainers take
    them. `forward(x)` replaces `model(x, training=True)`."""
    forward = forward or (lambda inputs: model(inputs, training=True))
    trainable = model.trainable_variables
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=x, y=y, y_pred=forward(x), training=True)
        grads = tape.gradient(loss, trainable)
    elif backend == "jax":
        import jax

        others = [v for v in model.variables if not v.trainable]

        def step(values):
            mapping = list(zip(trainable, values)) + [(v, v.value) for v in others]
            with keras.StatelessScope(state_mapping=mapping):
                return model.compute_loss(
                    x=x, y=y, y_pred=forward(x), training=True
                )

        loss, grads = jax.value_and_grad(step)([v.value for v in trainable])
    else:
        for v in trainable:
            v.value.grad = None
        loss = model.compute_loss(x=x, y=y, y_pred=forward(x), training=True)
        loss.backward()
        grads = [v.value.grad for v in trainable]
    return float(ops.convert_to_numpy(loss)), [
        np.zeros(v.shape, "float32") if g is None else np.asarray(ops.convert_to_numpy(g))
        for v, g in zip(trainable, grads)
    ]


def rule_forward(model, count):
    """The chunks of the documented rule, encoded in one pass with
    gradients, in the order of the 2N views."""

    def forward(x):
        views = np.concatenate([x["view_a"], x["view_b"]])
        n = len(x["view_a"])
        rows = [
            np.concatenate([np.arange(c, n, count), n + np.arange((c + 1) % count, n, count)])
            for c in range(count)
        ]
        model.objective.before_step()
        outputs = [model._encode(ops.convert_to_tensor(views[r]), training=True) for r in rows]
        order = np.argsort(np.concatenate(rows))
        return {
            key: ops.take(ops.concatenate([o[key] for o in outputs], axis=0), order, axis=0)
            for key in outputs[0]
        }

    return forward


def plain_forward(model):
    def forward(x):
        model.objective.before_step()
        return model._encode_pair(
            ops.convert_to_tensor(x["view_a"]), ops.convert_to_tensor(x["view_b"]), training=True
        )

    return forward


def restore(model, values):
    for variable, value in zip(model.variables, values):
        variable.assign(value)


def relative_difference(actual, expected):
    """The largest relative error of a variable's gradient, `|a - e| / |e|`
    (Euclidean norms), over the variables. A gradient that is zero in exact
    arithmetic (the last bias under a loss that normalises over the batch)
    is rounding noise: it is measured against a hundredth of the norm of
    the whole gradient."""
    floor = 1e-2 * float(np.sqrt(sum(np.sum(np.square(e)) for e in expected)))
    assert floor > 0
    worst = 0.0
    for a, e in zip(actual, expected, strict=True):
        scale = max(float(np.linalg.norm(e)), floor)
        worst = max(worst, float(np.linalg.norm(a - e)) / scale)
    return worst


def assert_gradients_equal(actual, expected, rtol=RTOL):
    assert relative_difference(actual, expected) <= rtol


def test_chunks_hold_every_view_once_and_never_both_views_of_an_image():
    for n, count in [(12, 3), (10, 3), (7, 2), (5, 5)]:
        rows = [np.asarray(ops.convert_to_numpy(r)) for r in _gradient_cache.chunk_rows(n, count)]
        assert sorted(np.concatenate(rows).tolist()) == list(range(2 * n))
        for chunk in rows:
            images = chunk % n
            assert len(set(images.tolist())) == len(chunk), (n, count, chunk)


@pytest.mark.parametrize("objective", ["simclr", "supcon", "barlow_twins", "vicreg", "moco"])
def test_without_batch_norm_the_step_is_the_whole_batch(objective):
    """Without batch norm, chunks change nothing: loss and every gradient
    (encoder, head, probe) equal the pass over the whole batch."""
    model = make(objective)
    x, y = batch()
    start = [np.array(ops.convert_to_numpy(v)) for v in model.variables]
    expected_loss, expected = loss_and_gradients(model, x, y, plain_forward(model))
    restore(model, start)
    loss, actual = loss_and_gradients(model, x, y)
    np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
    assert_gradients_equal(actual, expected)


@pytest.mark.parametrize("objective", ["simclr", "supcon", "barlow_twins"])
def test_with_batch_norm_the_step_is_the_rule_in_one_pass(objective):
    model = make(objective, batch_norm=True)
    x, y = batch()
    start = [np.array(ops.convert_to_numpy(v)) for v in model.variables]
    expected_loss, expected = loss_and_gradients(model, x, y, rule_forward(model, N // CHUNK))
    restore(model, start)
    loss, actual = loss_and_gradients(model, x, y)
    np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
    assert_gradients_equal(actual, expected)


def test_plain_accumulation_is_far_outside_the_tolerance():
    """Each chunk's own loss, averaged (gradient accumulation), is another
    objective: its gradient differs from the whole batch's by far more than
    the tolerance of the tests above."""
    model = make("simclr")
    x, y = batch()
    _, whole = loss_and_gradients(model, x, y, plain_forward(model))
    count = N // CHUNK
    accumulated = None
    for c in range(count):
        part = {key: value[c * CHUNK:(c + 1) * CHUNK] for key, value in x.items()}
        _, grads = loss_and_gradients(model, part, y[c * CHUNK:(c + 1) * CHUNK], plain_forward(model))
        grads = [g / count for g in grads]
        accumulated = grads if accumulated is None else [a + g for a, g in zip(accumulated, grads)]
    assert relative_difference(accumulated, whole) > 100 * RTOL


def test_batch_norm_updates_its_moving_statistics_once_per_chunk():
    """The moving mean of a batch norm on the views is the moving average
    taken over the chunks one after the other, each with its own mean."""
    keras.utils.set_random_seed(0)
    model = SimCLRPretrainer(
        keras.Sequential(
            [keras.Input((8, 8, 3)), keras.layers.BatchNormalization(momentum=0.9),
             keras.layers.GlobalAveragePooling2D()],
            name="encoder",
        ),
        projection_head=head(False),
        gradient_chunk_size=CHUNK,
    )
    model.build((None, 8, 8, 3))
    x, _ = batch()
    model(x, training=True)
    views = np.concatenate([x["view_a"], x["view_b"]]).astype("float64")
    expected = np.zeros(3)
    count = N // CHUNK
    for c in range(count):
        rows = np.concatenate([np.arange(c, N, count), N + np.arange((c + 1) % count, N, count)])
        expected = 0.9 * expected + 0.1 * views[rows].mean(axis=(0, 1, 2))
    moving_mean = model.encoder.layers[0].moving_mean
    np.testing.assert_allclose(ops.convert_to_numpy(moving_mean), expected, rtol=1e-5)


def test_fit_trains_as_the_whole_batch_with_in_step_augmentation():
    """Two epochs of fit() (16 images at batch 6: batches of 6, 6 and 4),
    views made in the step: the weights equal those of the same pretrainer
    without chunks (both passes encode the same draws; new draws in the
    second pass would move them). On TensorFlow the batch of 4 retraces the
    step without a static batch, where it is split as a full batch is."""
    images = np.random.default_rng(1).integers(0, 256, (16, 8, 8, 3)).astype("uint8")
    trained = []
    for chunk in (None, 2):
        model = make(
            chunk=chunk,
            num_classes=None,
            augmentation=keras_simclr.layers.SimCLRAugmentation(8, preset="cifar", seed=3),
        )
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        model.fit(images, batch_size=6, epochs=2, shuffle=False, verbose=0)
        trained.append([np.asarray(ops.convert_to_numpy(v)) for v in model.trainable_variables])
    start = make(num_classes=None).trainable_variables
    moved = max(
        float(np.max(np.abs(a - ops.convert_to_numpy(s)))) for a, s in zip(trained[0], start)
    )
    assert moved > 1e-3
    for plain, cached in zip(*trained, strict=True):
        np.testing.assert_allclose(cached, plain, rtol=0, atol=1e-5 * max(1.0, moved))


def test_bfloat16_chunks_are_the_rule_in_one_pass():
    """Under mixed_bfloat16 the cached step is the documented rule computed
    in one pass in bfloat16 (to bfloat16's rounding: the two sum the chunks'
    gradients in different orders), with float32 gradients, and its loss is
    the float32 step's to bfloat16's precision."""
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        model = make("simclr", batch_norm=True)
    finally:
        keras.config.set_dtype_policy(previous)
    x, y = batch()
    start = [np.array(ops.convert_to_numpy(v)) for v in model.variables]
    expected_loss, expected = loss_and_gradients(model, x, y, rule_forward(model, N // CHUNK))
    restore(model, start)
    loss, actual = loss_and_gradients(model, x, y)
    assert all(a.dtype == np.float32 for a in actual)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-3)
    assert relative_difference(actual, expected) <= 1e-2
    float32 = make("simclr", batch_norm=True)
    restore(float32, start)
    float32_loss, _ = loss_and_gradients(float32, x, y)
    np.testing.assert_allclose(loss, float32_loss, rtol=2e-2)


def test_gradient_chunk_size_is_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match=r"`gradient_chunk_size` must be a positive integer.*Received: gradient_chunk_size=0"):
        make(chunk=0)
    model = make(chunk=5)
    assert model.get_config()["gradient_chunk_size"] == 5
    model.save(tmp_path / "model.keras")
    assert keras.saving.load_model(tmp_path / "model.keras").gradient_chunk_size == 5
    assert "gradient_chunk_size" not in make(chunk=None).get_config()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the relaxed trace is TensorFlow's")
def test_a_last_batch_smaller_than_the_chunks_is_refused():
    model = make(chunk=2, num_classes=None)
    model.compile(optimizer="sgd")
    x, _ = batch(14)
    with pytest.raises(ValueError, match=r"The last batch of `x` holds 2 images \(14 images at batch_size=6\), fewer than the 3 chunks"):
        model.fit(x, batch_size=6, epochs=1, verbose=0)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the relaxed trace is TensorFlow's")
def test_chunks_are_counted_on_each_replica():
    from keras_simclr.models import _batch_checks

    # A chunk holds gradient_chunk_size images on each replica: a global
    # batch of 16 over 2 replicas at chunks of 2 is 4 chunks, not 8.
    assert _batch_checks.check_chunked_batches(16, 32, 2, replicas=2) == 4
    assert _batch_checks.check_chunked_batches(16, 32, 2) == 8
    # A last global batch of 6 leaves 3 images on each replica for 4 chunks.
    with pytest.raises(ValueError, match=r"holds 6 images \(3 on each replica\) \(38 images at batch_size=16\), fewer than the 4 chunks .* at least 8 images"):
        _batch_checks.check_chunked_batches(16, 38, 2, replicas=2)


def test_gradient_accumulation_warns_that_it_changes_the_objective():
    x, _ = batch()
    for objective, warned in [("simclr", True), ("byol", False)]:
        model = make(objective, chunk=None, num_classes=None)
        model.compile(optimizer=keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, batch_size=6, epochs=1, verbose=0)
        messages = [str(w.message) for w in caught if "gradient_accumulation_steps" in str(w.message)]
        if warned:
            assert len(messages) == 1
            assert "gradient_accumulation_steps=2 on the optimizer changes the objective: SimCLR" in messages[0]
            assert "gradient_chunk_size" in messages[0]
        else:
            assert messages == []
