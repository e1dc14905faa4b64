"""An objective's state (momentum target, queue, running correlation, EMA
step count) is backed up and restored with the model: a resumed run starts
from exactly the state the interrupted one had."""

import keras
import numpy as np
import pytest

import keras_simclr
from keras_simclr.callbacks import BackupAndRestore
from tests.testing import tiny_encoder

STEPS_PER_EPOCH = 4  # 32 images in batches of 8


def make_pretrainer(objective):
    # Fresh names, so that both runs name their variables alike.
    keras.backend.clear_session()
    encoder = tiny_encoder()
    objective = {
        "moco": lambda: keras_simclr.objectives.MoCo(queue_size=32, momentum=0.9),
        "unigrad": lambda: keras_simclr.objectives.UniGrad(rho=0.9, momentum=0.9),
    }[objective]()
    model = keras_simclr.models.SimCLRPretrainer(
        encoder,
        augmentation=keras_simclr.layers.SimCLRAugmentation(8, preset="cifar", seed=1),
        projection_head=keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=6),
        objective=objective,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    return model


def state(model):
    return {
        v.path: np.array(keras.ops.convert_to_numpy(v))
        for v in model.objective.variables
    }


class RecordThenCrash(keras.callbacks.Callback):
    def __init__(self, crash_step):
        super().__init__()
        self.crash_step = crash_step

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step == self.crash_step:
            self.state = state(self.model)
            raise RuntimeError("crash")


class RecordFirstBatch(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.state = state(self.model)
        raise RuntimeError("recorded")


@pytest.mark.parametrize("objective", ["moco", "unigrad"])
def test_a_resumed_run_starts_from_the_objective_state(tmp_path, objective):
    images = np.random.default_rng(0).uniform(0, 255, (32, 8, 8, 3))
    images = images.astype("float32")

    def fit(model, callback):
        backup = BackupAndRestore(str(tmp_path / "backup"), save_freq=1)
        with pytest.raises(RuntimeError):
            model.fit(
                images, batch_size=8, epochs=3, shuffle=False, verbose=0,
                callbacks=[backup, callback],
            )

    crashing = RecordThenCrash(crash_step=STEPS_PER_EPOCH + 2)
    fit(make_pretrainer(objective), crashing)
    resumed = RecordFirstBatch()
    fit(make_pretrainer(objective), resumed)
    fresh_model = make_pretrainer(objective)
    fresh_model.build(images.shape)
    fresh = state(fresh_model)

    assert sorted(resumed.state) == sorted(crashing.state)
    names = " ".join(resumed.state)
    # What was compared: the target networks, the step count and the
    # objective's own state, all moved on from a fresh model's.
    assert "target_projection_head" in names and "target_updates" in names
    assert ("queue" if objective == "moco" else "correlation") in names
    for path, value in crashing.state.items():
        np.testing.assert_array_equal(resumed.state[path], value, err_msg=path)
    updates = [p for p in crashing.state if p.endswith("target_updates")][0]
    assert crashing.state[updates] == STEPS_PER_EPOCH + 2
    moved = [p for p in crashing.state if not np.array_equal(crashing.state[p], fresh.get(p))]
    assert len(moved) >= len(crashing.state) // 2, moved
