"""Ends `fit()` once the optimizer has taken a given number of steps."""

import keras

from keras_simclr import _validation


class StopAtStep(keras.callbacks.Callback):
    """Stops training once the optimizer has taken `total_steps` steps in all.

    The count includes the steps the optimizer had already taken when `fit()`
    began, so steps restored by `keras.callbacks.BackupAndRestore` count too.
    This makes a resumed run end with exactly the planned number of steps:
    `BackupAndRestore(backup_dir, save_freq=n)` saves the weights and the
    optimizer (with its step counter) every `n` batches, but on restore it only
    skips the finished epochs and runs the interrupted epoch again from its
    first batch, so without this callback a run resumed from a mid-epoch backup
    would take more steps than planned (and run past the end of a step-based
    learning-rate schedule). With it, the run stops inside its last epoch as
    soon as the optimizer reaches `total_steps`. The count comes from the
    restored optimizer, not from the epoch number in the backup, so it stays
    right when that number is wrong: in Keras 3.15 a backup written during the
    first epoch of a resumed run records epoch 0, and a second crash there
    restarts the epoch numbering (not the training) from 0.

    The count is read from `model.optimizer.iterations` before the first
    batch of each epoch, that is after every callback's `on_train_begin`
    (where `BackupAndRestore` restores), so the order of the two callbacks
    does not matter. Within an epoch the callback counts batches itself
    instead of reading the optimizer's variable: on the JAX backend the
    trainer keeps its state outside the variables in the middle of an epoch,
    and reading them would make it write the whole state back at every batch.

    One batch is one optimizer step. With `steps_per_execution > 1`, `fit()`
    can only stop at the end of an execution, so the run may end up to
    `steps_per_execution - 1` steps past `total_steps`. If the optimizer has
    already reached `total_steps` when `fit()` begins, `fit()` still runs one
    step, because Keras checks `model.stop_training` only after a batch.

    Args:
        total_steps: positive int, the number of optimizer steps after which
            training stops, counted from the optimizer's creation (not from
            the start of this `fit()` call).

    Attributes:
        initial_step: the optimizer's step count when the last `fit()` began
            (for a resumed run: the step it resumed from), or `None` before
            training.

    Raises:
        ValueError: if `total_steps` is not a positive integer, or, when
            training begins, if the optimizer accumulates gradients over
            several batches (`gradient_accumulation_steps`).

    Example:

    ```python
    # 1,000 images in batches of 100: 10 steps per epoch, 100 in all.
    model.fit(
        images,
        batch_size=100,
        epochs=10,
        callbacks=[
            keras.callbacks.BackupAndRestore("backup", save_freq=20),
            keras_simclr.callbacks.StopAtStep(100),
        ],
    )
    # Run the same script again after a crash: it resumes from the last
    # backup (at most 19 steps back) and ends after exactly 100 steps in all.
    ```
    """

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = _validation.check_int(total_steps, "total_steps")
        self.initial_step = None
        self._epoch_start_step = None

    def on_train_begin(self, logs=None):
        accumulation = getattr(
            self.model.optimizer, "gradient_accumulation_steps", None
        )
        if accumulation and accumulation > 1:
            raise ValueError(
                "`StopAtStep` counts one optimizer step per batch and does "
                "not support gradient accumulation. Received an optimizer "
                f"with gradient_accumulation_steps={accumulation}"
            )
        self.initial_step = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start_step = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch_start_step is None:
            # Read once per epoch, before its first batch: every callback's
            # `on_train_begin` (such as a restore) has run by then, and on JAX
            # the variables still hold the current state.
            self._epoch_start_step = int(
                keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            )
            if self.initial_step is None:
                self.initial_step = self._epoch_start_step

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index of the last batch of the execution; Keras
        # reports a whole execution even when the epoch ends inside it.
        batches = batch + 1
        if self.params and self.params.get("steps"):
            batches = min(batches, self.params["steps"])
        if self._epoch_start_step + batches >= self.total_steps:
            self.model.stop_training = True
