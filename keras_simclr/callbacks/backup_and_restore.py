"""Keras's `BackupAndRestore`, with the random state its backup leaves out."""

import json
import os
import shutil
import warnings

import keras
import numpy as np

from keras_simclr import _keras_compat
from keras_simclr import distribute

# Backups whose random state is kept: the newest, the previous one (which
# `double_checkpoint=True` falls back to) and one more for a backup cut off
# while its weights were being written.
KEPT_BACKUPS = 3


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that also restores the random state.

    Keras's callback backs up what `model.save_weights()` writes: weights,
    non-trainable variables such as batch-norm moving statistics, and every
    optimizer variable. It leaves out the state of the model's
    `keras.random.SeedGenerator`s, such as those of the augmentation layers
    (`model.save()` leaves it out too). A run resumed from such a backup
    draws its augmentations from the generators' initial state again: its
    first steps repeat the views of the first steps of the run instead of
    continuing them. This callback backs that state up with each backup and
    restores it with the weights, so that a resumed run starts from exactly
    the state that was backed up.

    The random state is every variable of the model that its weights leave
    out: `model.variables` less `model.weights` and less the metrics'
    variables (`fit()` resets those at the start of every epoch, and a
    resumed run reruns its interrupted epoch from the first batch). It is
    written to `random_state.json` in `backup_dir`, before the weights, and
    keyed by the optimizer's step count, with the states of the last
    three backups: whichever weights file Keras restores (the newest or,
    with `double_checkpoint=True`, the previous one), the random state of
    the same step is there, even if the run was killed between the writes.
    The file is written with Python's own file functions, so `backup_dir`
    must be a local (or mounted) directory.

    With several processes (PyTorch `torch.distributed`, JAX across hosts),
    `backup_dir` is one directory all processes share: process 0 alone
    writes the weights, every process writes its own random state
    (`random_state.process<i>.json`: the processes draw different views),
    and every process restores both, at once, after process 0 has checked
    that the newest backup can be read (else it falls back to the previous
    one, as Keras does).

    Args:
        backup_dir: string, the directory of the backup; see
            `keras.callbacks.BackupAndRestore`.
        save_freq: `"epoch"`, or an int: back up every this many batches.
        double_checkpoint: bool, whether to keep the previous backup too,
            restored if the newest cannot be read.
        delete_checkpoint: bool, whether to delete the backup when training
            ends.

    Raises:
        ValueError: when training begins, naming `backup_dir`: if the
            backup's weights do not fit the model (a backup of another
            model), or come with no random state of their step, or with one
            of other variables than the model's.

    Example:

    ```python
    pretrainer.fit(
        images,
        batch_size=256,
        epochs=100,
        callbacks=[
            keras_simclr.callbacks.BackupAndRestore("backup", save_freq=500),
            keras_simclr.callbacks.StopAtStep(total_steps),
        ],
    )
    # Run the same script again after a crash: it resumes from the last
    # backup, augmentation included.
    ```
    """

    def __init__(
        self,
        backup_dir,
        save_freq="epoch",
        double_checkpoint=False,
        delete_checkpoint=True,
    ):
        super().__init__(
            backup_dir,
            save_freq=save_freq,
            double_checkpoint=double_checkpoint,
            delete_checkpoint=delete_checkpoint,
        )

    @property
    def random_state_path(self):
        """This process's random-state file in `backup_dir`."""
        name = "random_state.json"
        if distribute.process_count() > 1:
            name = f"random_state.process{distribute.process_index()}.json"
        return os.path.join(self.backup_dir, name)

    def on_train_begin(self, logs=None):
        if distribute.process_count() > 1:
            # Process 0 alone falls back to the previous backup if the
            # newest cannot be read; then every process restores at once
            # (under a JAX distribution, loading weights is a collective
            # step).
            if distribute.process_index() == 0:
                self._replace_unreadable_backup()
            distribute.barrier()
        self._restore_weights(logs)
        self._restore_random_state()

    def _restore_weights(self, logs):
        """Keras's restore of the weights (and the step count), with a
        backup of another model refused in one error that names it.

        Keras would warn once per layer that does not match, then fail with
        "N objects could not be loaded", without naming the backup.
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                super().on_train_begin(logs)
            except (ValueError, KeyError) as error:
                reason = (str(error).strip().splitlines() or [""])[0]
                reason = reason.split(". Example error message")[0].rstrip(".:")
                raise ValueError(
                    f"The backup in {self.backup_dir} does not fit this model: "
                    f"its weights could not be loaded ({reason}). A backup "
                    "restores only into the model that wrote it, built the "
                    "same way. Delete the backup directory to start a new run, "
                    "or give this model another backup_dir. Received: "
                    f"backup_dir={self.backup_dir}"
                ) from None
        for warning in caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )

    def _replace_unreadable_backup(self):
        """Keras's fallback to the previous backup, done on the files alone."""
        import h5py

        paths = _keras_compat.backup_paths(self)
        if not os.path.exists(paths["weights"]):
            return
        try:
            with h5py.File(paths["weights"], "r") as f:
                f.visititems(
                    lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None
                )
        except OSError:
            if not os.path.exists(paths["previous_weights"]):
                raise
            shutil.copy(paths["previous_weights"], paths["weights"])
            if os.path.exists(paths["previous_metadata"]):
                shutil.copy(paths["previous_metadata"], paths["metadata"])
            elif os.path.exists(paths["metadata"]):
                os.remove(paths["metadata"])

    def _save_model(self):
        # Keras's private hook (`keras_simclr._keras_compat.INTERNALS`),
        # called for every backup. The random state goes first, so
        # that no weights file is ever newer than the random state of its
        # step. Only process 0 writes the weights, which all processes share,
        # and only once every process has written its random state.
        self._save_random_state()
        distribute.barrier()
        if distribute.process_index() == 0:
            # Keras's save makes a throwaway optimizer: a collective step
            # under a JAX distribution, which process 0 would take alone.
            with distribute.process_local_variables():
                super()._save_model()

    def on_train_end(self, logs=None):
        # Every process is done with the backup before process 0 deletes it.
        distribute.barrier()
        if distribute.process_index() == 0:
            super().on_train_end(logs)

    def _save_random_state(self):
        model = self.model
        step = _step(model)
        backups = self._read_random_state() or {}
        backups[str(step)] = [
            {
                "path": variable.path,
                "dtype": keras.backend.standardize_dtype(variable.dtype),
                "value": keras.ops.convert_to_numpy(variable).tolist(),
            }
            for variable in random_state_variables(model)
        ]
        newest = sorted(backups, key=int)[-KEPT_BACKUPS:]
        os.makedirs(self.backup_dir, exist_ok=True)
        # Written whole, then renamed: a kill leaves the old file or the new.
        partial = self.random_state_path + ".partial"
        with open(partial, "w") as f:
            json.dump({key: backups[key] for key in newest}, f)
        os.replace(partial, self.random_state_path)

    def _restore_random_state(self):
        backups = self._read_random_state()
        if backups is None:
            # No backup, or one written without its random state.
            return
        model = self.model
        step = _step(model)
        saved = backups.get(str(step))
        if saved is None:
            if step == 0:
                # A run killed before its first backup: nothing restored.
                return
            raise ValueError(
                f"The backup in {self.backup_dir} restored the weights of "
                f"step {step} but holds no random state of that step (only "
                f"of steps {', '.join(sorted(backups, key=int))}). Delete "
                "the backup directory to start again. Received: "
                f"backup_dir={self.backup_dir}"
            )
        variables = random_state_variables(model)
        shapes = [tuple(variable.shape) for variable in variables]
        saved_shapes = [np.shape(entry["value"]) for entry in saved]
        if shapes != saved_shapes:
            raise ValueError(
                f"The random state backed up in {self.backup_dir} does not "
                f"fit this model: it holds variables of shapes {saved_shapes}, "
                f"the model has {shapes}. Restore a backup into the model "
                f"that wrote it. Received: backup_dir={self.backup_dir}"
            )
        for variable, entry in zip(variables, saved):
            variable.assign(np.asarray(entry["value"], dtype=entry["dtype"]))

    def _read_random_state(self):
        if not os.path.exists(self.random_state_path):
            return None
        with open(self.random_state_path) as f:
            return json.load(f)


def random_state_variables(model):
    """The variables of `model` that its weights and metrics leave out.

    These are the states of its `keras.random.SeedGenerator`s: every
    variable of `model.variables` that is neither in `model.weights` nor a
    metric's, in the order of `model.variables`.

    Args:
        model: a built `keras.Model`.

    Returns:
        A list of variables.
    """
    left_out = {id(variable) for variable in model.weights}
    left_out.update(id(variable) for variable in model.metrics_variables)
    variables = []
    for variable in model.variables:
        if id(variable) not in left_out:
            left_out.add(id(variable))
            variables.append(variable)
    return variables


def _step(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))
