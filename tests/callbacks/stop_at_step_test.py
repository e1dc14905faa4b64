import json
import os

import keras
import numpy as np
import pytest

from keras_simclr.callbacks import StopAtStep

# 32 samples in batches of 4: 8 steps per epoch.
STEPS_PER_EPOCH = 8


def make_model(steps_per_execution=1, **optimizer_kwargs):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9, **optimizer_kwargs),
        "mse",
        steps_per_execution=steps_per_execution,
    )
    return model


def make_data():
    x = np.random.default_rng(0).normal(size=(4 * STEPS_PER_EPOCH, 3))
    return x.astype("float32"), x.sum(axis=1, keepdims=True).astype("float32")


def fit(model, epochs, callbacks):
    x, y = make_data()
    return model.fit(
        x, y, batch_size=4, epochs=epochs, callbacks=callbacks, verbose=0
    )


def optimizer_steps(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class CrashAt(keras.callbacks.Callback):
    """Raises after the given batch of the given epoch, as a crash would."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("crash")


def test_stops_inside_an_epoch_at_total_steps():
    model = make_model()
    stop = StopAtStep(11)
    history = fit(model, epochs=5, callbacks=[stop])
    assert optimizer_steps(model) == 11
    assert history.epoch == [0, 1]
    assert stop.initial_step == 0


def test_counts_the_steps_the_optimizer_has_already_taken():
    model = make_model()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(6)
    stop = StopAtStep(20)
    history = fit(model, epochs=5, callbacks=[stop])
    assert stop.initial_step == 6
    assert optimizer_steps(model) == 20
    assert history.epoch == [0, 1]


def test_runs_one_step_when_the_optimizer_is_already_at_total_steps():
    # Keras checks `stop_training` only after a batch.
    model = make_model()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(20)
    history = fit(model, epochs=5, callbacks=[StopAtStep(20)])
    assert optimizer_steps(model) == 21
    assert history.epoch == [0]


def test_does_not_stop_a_run_that_ends_before_total_steps():
    model = make_model()
    history = fit(model, epochs=2, callbacks=[StopAtStep(100)])
    assert optimizer_steps(model) == 2 * STEPS_PER_EPOCH
    assert history.epoch == [0, 1]


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="steps_per_execution must be 1 on torch",
)
@pytest.mark.parametrize("total_steps, expected", [(8, 8), (9, 11), (12, 14)])
def test_stops_at_the_first_execution_end_past_total_steps(total_steps, expected):
    # Batches run 3 at a time, 8 per epoch as 3 + 3 + 2 (Keras reports the
    # last execution as 3), so a run can stop after 3, 6, 8, 11, 14, ... steps.
    model = make_model(steps_per_execution=3)
    fit(model, epochs=5, callbacks=[StopAtStep(total_steps)])
    assert optimizer_steps(model) == expected


@pytest.mark.parametrize("stop_first", [False, True])
def test_resumes_a_mid_epoch_backup_with_the_planned_steps(tmp_path, stop_first):
    backup_dir = str(tmp_path / "backup")
    planned = 3 * STEPS_PER_EPOCH
    model = make_model()
    with pytest.raises(RuntimeError, match="crash"):
        fit(
            model,
            epochs=3,
            callbacks=[
                keras.callbacks.BackupAndRestore(backup_dir, save_freq=1),
                StopAtStep(planned),
                CrashAt(epoch=1, batch=2),
            ],
        )
    with open(os.path.join(backup_dir, "training_metadata.json")) as f:
        assert json.load(f) == {"epoch": 1, "batch": 2}
    crashed_at = STEPS_PER_EPOCH + 3
    assert optimizer_steps(model) == crashed_at

    # The mid-epoch backup holds the state after the last batch, not the
    # state at the start of the epoch (on JAX the trainer keeps its state
    # outside the variables during an epoch).
    restored = make_model()
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(os.path.join(backup_dir, "latest.weights.h5"))
    for expected, actual in zip(
        model.weights + model.optimizer.variables,
        restored.weights + restored.optimizer.variables,
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(expected),
            keras.ops.convert_to_numpy(actual),
        )

    # Keras reruns the interrupted epoch from its first batch; StopAtStep
    # ends the run inside the last epoch. The order of the callbacks does
    # not matter: the start is read before the first batch.
    resumed = make_model()
    stop = StopAtStep(planned)
    backup = keras.callbacks.BackupAndRestore(backup_dir, save_freq=1)
    history = fit(
        resumed, epochs=3, callbacks=[stop, backup] if stop_first else [backup, stop]
    )
    assert stop.initial_step == crashed_at
    assert optimizer_steps(resumed) == planned
    assert history.epoch == [1, 2]
    assert not os.path.exists(backup_dir)


def test_resumes_from_the_previous_backup_when_a_kill_tore_the_newest(tmp_path):
    # A kill while the weights file is written leaves it unreadable; with
    # `double_checkpoint=True` Keras falls back to the backup before it.
    backup_dir = str(tmp_path / "backup")
    planned = 3 * STEPS_PER_EPOCH

    def backup():
        return keras.callbacks.BackupAndRestore(
            backup_dir, save_freq=1, double_checkpoint=True
        )

    with pytest.raises(RuntimeError, match="crash"):
        fit(make_model(), epochs=3, callbacks=[backup(), CrashAt(1, 2)])
    weights_path = os.path.join(backup_dir, "latest.weights.h5")
    with open(weights_path, "r+b") as f:
        f.truncate(os.path.getsize(weights_path) // 2)
    resumed = make_model()
    stop = StopAtStep(planned)
    history = fit(resumed, epochs=3, callbacks=[backup(), stop])
    assert stop.initial_step == STEPS_PER_EPOCH + 2
    assert optimizer_steps(resumed) == planned
    assert history.epoch == [1, 2]


@pytest.mark.parametrize("total_steps", [0, -3, 2.5, True, "10", None])
def test_rejects_a_bad_total_steps(total_steps):
    with pytest.raises(ValueError, match=f"total_steps={total_steps!r}"):
        StopAtStep(total_steps)


def test_rejects_gradient_accumulation():
    model = make_model(gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        fit(model, epochs=1, callbacks=[StopAtStep(4)])
