"""The functions the momentum methods are made of: BYOL's cosine schedule
of the target momentum and the FIFO queue of keys (MoCo, SimCLR v2's
memory)."""

import collections

import numpy as np
import pytest
from keras import ops

from keras_simclr import losses
from keras_simclr import objectives
from keras_simclr.objectives import cosine_momentum
from keras_simclr.objectives import update_queue
from tests.testing import backend_gradients
from tests.testing import compiled


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cosine_momentum_endpoints_and_midpoint():
    base = 0.996
    for step, expected in [(0, base), (500, 1 - (1 - base) / 2), (1000, 1.0)]:
        tau = cosine_momentum(step, 1000, base)
        assert ops.convert_to_numpy(tau).dtype == np.float32
        np.testing.assert_allclose(ops.convert_to_numpy(tau), expected, rtol=1e-7)
    # Past the end the momentum stays at 1.
    np.testing.assert_allclose(ops.convert_to_numpy(cosine_momentum(1500, 1000)), 1.0)


def test_cosine_momentum_with_tensor_steps_in_a_compiled_step():
    total, base = 37, 0.99
    schedule = compiled(lambda step: cosine_momentum(step, total, base))
    for step in range(total + 1):
        expected = 1 - (1 - base) * (np.cos(np.pi * step / total) + 1) / 2
        actual = schedule(ops.convert_to_tensor(step, "int32"))
        np.testing.assert_allclose(ops.convert_to_numpy(actual), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "argument, kwargs",
    [
        ("total_steps", {"total_steps": 0}),
        ("total_steps", {"total_steps": None}),
        ("base_momentum", {"total_steps": 10, "base_momentum": 1.5}),
        ("base_momentum", {"total_steps": 10, "base_momentum": -0.1}),
    ],
)
def test_cosine_momentum_rejects_bad_arguments(argument, kwargs):
    with pytest.raises(ValueError, match=argument):
        cosine_momentum(0, **kwargs)


def test_update_queue_is_fifo_newest_first():
    rng = np.random.default_rng(5)
    queue_size, n, dim = 6, 2, 3
    queue = normalize(rng.normal(size=(queue_size, dim)))
    expected = collections.deque(queue, maxlen=queue_size)
    current = queue.astype("float32")
    step = compiled(update_queue)
    for _ in range(5):
        keys = rng.normal(size=(n, dim)).astype("float32")
        current = ops.convert_to_numpy(step(current, keys))
        # deque.appendleft drops from the right once full: newest first.
        for key in normalize(keys)[::-1]:
            expected.appendleft(key)
        assert current.shape == (queue_size, dim)
        assert current.dtype == np.float32
        np.testing.assert_allclose(current, np.array(expected), rtol=1e-6, atol=1e-7)


def test_update_queue_holds_the_same_keys_as_the_official_ring_buffer():
    # Once K / N updates have replaced the initial queue, the official ring
    # buffer (keys written at a moving pointer) holds the same keys.
    rng = np.random.default_rng(6)
    queue_size, n, dim = 8, 4, 3
    queue = normalize(rng.normal(size=(queue_size, dim))).astype("float32")
    ring, pointer, current = queue.copy(), 0, queue
    for step in range(5):
        keys = rng.normal(size=(n, dim)).astype("float32")
        current = ops.convert_to_numpy(update_queue(current, keys))
        ring[pointer:pointer + n] = normalize(keys)
        pointer = (pointer + n) % queue_size
        if step + 1 >= queue_size // n:
            np.testing.assert_allclose(
                np.array(sorted(map(tuple, current))),
                np.array(sorted(map(tuple, ring))),
                rtol=1e-6,
            )


def test_update_queue_full_batch_replaces_everything_and_stops_gradient():
    rng = np.random.default_rng(7)
    queue = normalize(rng.normal(size=(4, 3))).astype("float32")
    keys = rng.normal(size=(4, 3)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(update_queue(queue, keys)), normalize(keys), rtol=1e-6
    )
    _, grad_keys = backend_gradients(
        lambda a, b: ops.sum(update_queue(a, b) * 2.0) + ops.sum(a), queue, keys
    )
    np.testing.assert_array_equal(grad_keys, 0.0)


def test_update_queue_rejects_bad_inputs():
    with pytest.raises(ValueError, match="keys"):
        update_queue(np.ones((4, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="keys"):
        update_queue(np.ones((4, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="queue"):
        update_queue(np.ones((4,)), np.ones((2, 3)))


def test_the_old_import_paths_still_work():
    from keras_simclr.losses.byol import cosine_momentum as old_cosine_momentum
    from keras_simclr.losses.moco import update_queue as old_update_queue

    assert old_cosine_momentum is objectives.cosine_momentum
    assert old_update_queue is objectives.update_queue
    assert losses.cosine_momentum is cosine_momentum
    assert losses.update_queue is update_queue
