import json
import os
import warnings

import keras
import numpy as np
import pytest

from keras_simclr.callbacks import BackupAndRestore
from keras_simclr.callbacks.backup_and_restore import random_state_variables

# 32 samples in batches of 4: 8 steps per epoch.
STEPS_PER_EPOCH = 8


def make_model():
    # Fresh names, so that both runs name their variables alike.
    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((3,)),
            # Two layers that draw from their own SeedGenerator each step.
            keras.layers.GaussianNoise(0.1, seed=1),
            keras.layers.Dense(4),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2, seed=2),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    return model


def fit(model, callbacks):
    x = np.random.default_rng(0).normal(size=(4 * STEPS_PER_EPOCH, 3))
    y = x.sum(axis=1, keepdims=True)
    return model.fit(
        x.astype("float32"),
        y.astype("float32"),
        batch_size=4,
        epochs=3,
        shuffle=False,
        callbacks=callbacks,
        verbose=0,
    )


def training_state(model):
    """Every variable of the model and of its optimizer, by path."""
    variables = model.variables + model.optimizer.variables
    return {
        variable.path: np.array(keras.ops.convert_to_numpy(variable))
        for variable in variables
    }


def optimizer_steps(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class RecordThenCrash(keras.callbacks.Callback):
    """After each batch, records the training state (the backup, before it
    in the list, has just been written); raises after `crash_step` steps."""

    def __init__(self, crash_step):
        super().__init__()
        self.crash_step = crash_step
        self.states = {}

    def on_train_batch_end(self, batch, logs=None):
        step = optimizer_steps(self.model)
        self.states[step] = training_state(self.model)
        if step == self.crash_step:
            raise RuntimeError("crash")


class RecordFirstBatch(keras.callbacks.Callback):
    """Records the state before the first step of `fit()`, then stops."""

    def on_train_batch_begin(self, batch, logs=None):
        self.state = training_state(self.model)
        raise RuntimeError("recorded")


def crash_then_resume(backup_dir, crash_step, damage=None):
    """A run that crashes after `crash_step` steps, then one resumed from its
    backup. Returns the states recorded by the first after each step, and
    the state of the second before its first step."""

    def backup():
        return BackupAndRestore(backup_dir, save_freq=1, double_checkpoint=True)

    crashing = RecordThenCrash(crash_step)
    with pytest.raises(RuntimeError, match="crash"):
        fit(make_model(), [backup(), crashing])
    if damage is not None:
        damage(backup_dir)
    resumed = make_model()
    record = RecordFirstBatch()
    with pytest.raises(RuntimeError, match="recorded"):
        fit(resumed, [backup(), record])
    return crashing.states, record.state, resumed


def assert_same_state(expected, actual):
    assert sorted(actual) == sorted(expected)
    for path, value in expected.items():
        np.testing.assert_array_equal(actual[path], value, err_msg=path)


def test_resumed_run_starts_from_every_backed_up_variable(tmp_path):
    crash_step = STEPS_PER_EPOCH + 3
    states, resumed_state, resumed = crash_then_resume(
        str(tmp_path / "backup"), crash_step
    )
    assert_same_state(states[crash_step], resumed_state)
    # What the comparison covered: the two generators' states among others,
    # and they had moved on from their initial state.
    random_state = random_state_variables(resumed)
    assert len(random_state) == 2
    fresh = training_state(make_model())
    for variable in random_state:
        assert not np.array_equal(resumed_state[variable.path], fresh[variable.path])


def test_random_state_of_the_previous_backup_when_the_newest_is_torn(tmp_path):
    # A kill while the weights file is written leaves it unreadable: Keras
    # restores the previous weights, and the random state of their step.
    def tear_weights(backup_dir):
        path = os.path.join(backup_dir, "latest.weights.h5")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)

    crash_step = STEPS_PER_EPOCH + 3
    states, resumed_state, _ = crash_then_resume(
        str(tmp_path / "backup"), crash_step, damage=tear_weights
    )
    assert_same_state(states[crash_step - 1], resumed_state)


def test_keeps_the_random_state_of_the_last_three_backups(tmp_path):
    backup_dir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="crash"):
        fit(
            make_model(),
            [BackupAndRestore(backup_dir, save_freq=2), RecordThenCrash(7)],
        )
    with open(os.path.join(backup_dir, "random_state.json")) as f:
        assert sorted(json.load(f), key=int) == ["2", "4", "6"]


def test_backup_without_the_random_state_of_its_step_is_refused(tmp_path):
    def forget_newest(backup_dir):
        path = os.path.join(backup_dir, "random_state.json")
        with open(path) as f:
            backups = json.load(f)
        del backups[max(backups, key=int)]
        with open(path, "w") as f:
            json.dump(backups, f)

    with pytest.raises(ValueError, match="Received: backup_dir="):
        crash_then_resume(str(tmp_path / "backup"), 5, damage=forget_newest)


def test_finished_run_leaves_no_backup(tmp_path):
    backup_dir = str(tmp_path / "backup")
    model = make_model()
    fit(model, [BackupAndRestore(backup_dir, save_freq=3)])
    assert optimizer_steps(model) == 3 * STEPS_PER_EPOCH
    assert not os.path.exists(backup_dir)


def test_a_backup_of_another_model_is_refused_naming_it(tmp_path):
    backup_dir = str(tmp_path / "backup")
    crash_then_resume(backup_dir, crash_step=5)

    def other_model():
        keras.backend.clear_session()
        model = keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.Dense(6),
                keras.layers.Dense(5),
                keras.layers.BatchNormalization(),
                keras.layers.Dense(1),
            ]
        )
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
        return model

    for model in (other_model(), make_model_with_units(5)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError) as error:
                fit(model, [BackupAndRestore(backup_dir, save_freq=2)])
        message = str(error.value)
        assert message.startswith(
            f"The backup in {backup_dir} does not fit this model: its weights "
            "could not be loaded (A total of "
        )
        assert message.endswith(f"Received: backup_dir={backup_dir}")
        # One error, without Keras's warning for each layer.
        assert [str(w.message) for w in caught] == []
    # The backup is left for its own model, which resumes from it.
    assert os.path.exists(os.path.join(backup_dir, "latest.weights.h5"))
    model = make_model()
    fit(model, [BackupAndRestore(backup_dir, save_freq=2)])
    # Resumed from step 5, with its interrupted epoch run again in full.
    assert optimizer_steps(model) == 5 + 3 * STEPS_PER_EPOCH


def make_model_with_units(units):
    """`make_model` with another width of its first Dense layer."""
    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.GaussianNoise(0.1, seed=1),
            keras.layers.Dense(units),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2, seed=2),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    return model
