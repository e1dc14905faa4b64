"""A queue that cannot take a step's keys is refused by `fit()` before
training, naming `queue_size` and `batch_size` (MoCo, SimCLR's memory)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from keras_simclr import objectives
from keras_simclr.models import SimCLRPretrainer
from tests.testing import tiny_encoder

SIZE = 8


def views(n, seed=0):
    rng = np.random.default_rng(seed)
    view_a = rng.uniform(0.0, 255.0, (n, SIZE, SIZE, 3)).astype("float32")
    view_b = np.clip(view_a + rng.normal(0.0, 30.0, view_a.shape), 0, 255)
    return {"view_a": view_a, "view_b": view_b.astype("float32")}


def make_model(objective):
    model = SimCLRPretrainer(
        encoder=tiny_encoder(),
        augmentation=None,
        projection_head=keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=6),
        objective=objective,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


OBJECTIVES = {
    "moco": lambda queue_size: objectives.MoCo(queue_size=queue_size),
    "simclr_memory": lambda queue_size: objectives.SimCLR(
        memory_queue=True, queue_size=queue_size
    ),
}
METHODS = {"moco": "MoCo", "simclr_memory": "SimCLR's memory"}


def expected_message(queue_size, batch_size, method):
    return (
        "`queue_size` must hold the keys of both views of a batch, at least "
        f"2 * batch_size = {2 * batch_size}: each step of {method} enqueues them "
        "all. Raise queue_size (the paper's: 65536) or lower batch_size. "
        f"Received: queue_size={queue_size}, batch_size={batch_size}"
    )


@pytest.mark.parametrize("case", sorted(OBJECTIVES))
@pytest.mark.parametrize("queue_size", [8, 15])
def test_a_queue_smaller_than_two_batches_is_refused_before_training(
    case, queue_size
):
    model = make_model(OBJECTIVES[case](queue_size))
    with pytest.raises(ValueError) as caught:
        model.fit(views(32), batch_size=8, epochs=1, verbose=0)
    assert str(caught.value) == expected_message(queue_size, 8, METHODS[case])
    # Refused before the first step.
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0
    # Keras's default batch of 32, and a batch capped at the data.
    with pytest.raises(ValueError, match="2 \\* batch_size = 64"):
        model.fit(views(40), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="2 \\* batch_size = 20"):
        model.fit(views(10), batch_size=64, epochs=1, verbose=0)


@pytest.mark.parametrize("case", sorted(OBJECTIVES))
def test_a_queue_of_exactly_two_batches_trains(case):
    model = make_model(OBJECTIVES[case](16))
    model.build({"view_a": (None, SIZE, SIZE, 3), "view_b": (None, SIZE, SIZE, 3)})
    initial = ops.convert_to_numpy(model.objective.queue).copy()
    history = model.fit(views(16), batch_size=8, epochs=1, verbose=0).history
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 2
    assert np.isfinite(history["loss"][0])
    # Each step replaced all 16 keys: no initial key is left.
    queue = ops.convert_to_numpy(model.objective.queue)
    distances = np.abs(queue[:, None, :] - initial[None, :, :]).max(axis=-1)
    assert distances.min() > 1e-3


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.data datasets"
)
def test_a_dataset_batch_is_checked_too():
    import tensorflow as tf

    data = views(32)
    model = make_model(objectives.MoCo(queue_size=12))
    # A static batch dimension, and an unknown one (its first batch is read).
    for dataset in (
        tf.data.Dataset.from_tensor_slices(data).batch(8, drop_remainder=True),
        tf.data.Dataset.from_tensor_slices(data).batch(8),
    ):
        with pytest.raises(ValueError) as caught:
            model.fit(dataset, epochs=1, verbose=0)
        assert str(caught.value) == expected_message(12, 8, "MoCo")
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0


def test_objectives_without_a_queue_take_any_batch():
    model = make_model(objectives.SimCLR(temperature=0.5))
    model.fit(views(24), batch_size=24, epochs=1, verbose=0)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 1
