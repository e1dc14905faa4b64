"""Kills examples/pretrain.py mid-epoch (SIGKILL) and checks that a rerun
resumes it from exactly the state it had backed up.

Both runs execute the script under a probe (`PROBE`, below) that records a
digest of every variable: the killed run after each step, before the backup
of that step is written, and the resumed run when `fit()` begins (before the
restore) and before its first new step (after it). The resumed run must start
from bit-identical weights, batch-norm statistics, optimizer variables and
augmentation random state to those of the step its backup holds.

This starts two training processes, so it runs on one backend only (the CI
runs the suite once per backend): TensorFlow, where it is quickest (about
2 minutes on 2 CPU cores, against 3 to 4 on JAX). The callback that makes the
restore complete is checked in-process on every backend, JAX's trainer
(which keeps the training state outside the variables during an epoch)
included, by tests/callbacks/backup_and_restore_test.py.
"""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="starts training processes: run once, on the TensorFlow backend",
)

# 64 images in batches of 16: 4 steps per epoch, 12 in all, a backup every step.
STEPS_PER_EPOCH = 4
EPOCHS = 3

# Runs examples/pretrain.py (argv[2:]) with a callback first in the list of
# `fit()`, which writes JSON files to the folder argv[1]: `step_<n>.json`
# after step n (before the backup callback writes that step's backup),
# `before_restore.json` at the start of `fit()` and `start.json` before the
# first step. Each maps every variable of the model, its optimizer and its
# metrics to a SHA-256 of its bytes (with dtype and shape), and its value if
# small. Files are written whole and renamed, so a kill leaves none half
# written.
PROBE = r"""
import hashlib
import json
import os
import runpy
import sys

state_dir, script = sys.argv[1], sys.argv[2]
sys.argv = [script] + sys.argv[3:]
sys.path.insert(0, os.path.dirname(script))
import keras_simclr  # before TensorFlow, as the script itself does
import keras
import numpy as np


def describe(variable, group):
    value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
    entry = {
        "group": group,
        "path": variable.path,
        "sha256": hashlib.sha256(
            f"{value.dtype}{value.shape}".encode() + value.tobytes()
        ).hexdigest(),
    }
    if value.size <= 16:
        entry["value"] = value.tolist()
    return entry


def snapshot(model, name):
    optimizer = model.optimizer
    trainable = {id(v) for v in model.trainable_weights}
    non_trainable = {id(v) for v in model.non_trainable_weights}
    metrics = {id(v) for v in model.metrics_variables}
    state = {"step": int(keras.ops.convert_to_numpy(optimizer.iterations))}
    variables = {}
    for index, variable in enumerate(model.variables):
        if id(variable) in trainable:
            group = "trainable"
        elif id(variable) in non_trainable:
            group = "non_trainable"
        elif id(variable) in metrics:
            group = "metrics"
        else:
            group = "other"
        variables[f"model/{index}"] = describe(variable, group)
    for index, variable in enumerate(optimizer.variables):
        variables[f"optimizer/{index}"] = describe(variable, "optimizer")
    for index, variable in enumerate(model.metrics_variables):
        variables[f"metrics/{index}"] = describe(variable, "metrics")
    state["variables"] = variables
    path = os.path.join(state_dir, name)
    with open(path + ".partial", "w") as f:
        json.dump(state, f)
    os.replace(path + ".partial", path)


class Probe(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.started = False
        snapshot(self.model, "before_restore.json")

    def on_train_batch_begin(self, batch, logs=None):
        if not self.started:
            self.started = True
            snapshot(self.model, "start.json")

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        snapshot(self.model, f"step_{step}.json")


pretrainer_fit = keras_simclr.models.SimCLRPretrainer.fit


def fit(self, *args, **kwargs):
    kwargs["callbacks"] = [Probe()] + list(kwargs.get("callbacks") or [])
    return pretrainer_fit(self, *args, **kwargs)


keras_simclr.models.SimCLRPretrainer.fit = fit
os.makedirs(state_dir, exist_ok=True)
runpy.run_path(script, run_name="__main__")
"""


def script_arguments(model_dir):
    return [
        f"--model_dir={model_dir}",
        f"--epochs={EPOCHS}",
        "--max_images=64",
        "--batch_size=16",
        "--image_size=8",
        "--checkpoint_steps=1",
        "--verbose=0",
        # The default, auto, depends on the CPU.
        "--precision=float32",
    ]


def probed_command(model_dir, state_dir):
    script = os.path.join(ROOT, "examples", "pretrain.py")
    return [sys.executable, "-c", PROBE, str(state_dir), script] + script_arguments(
        model_dir
    )


def environment():
    # The library of this tree, whatever the installed one.
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, KERAS_BACKEND=keras.backend.backend(), PYTHONPATH=path)


def read_backup_position(backup_dir):
    """`(epoch, batch)` of the newest backup, or `None` while there is none."""
    try:
        with open(os.path.join(backup_dir, "training_metadata.json")) as f:
            metadata = json.load(f)
    except (OSError, ValueError):  # Not written yet, or being written.
        return None
    return metadata["epoch"], metadata["batch"]


def kill_during_second_epoch(model_dir, state_dir, timeout=300):
    """Runs the script, SIGKILLs it once a backup from inside epoch 2 exists.

    Returns the optimizer steps that backup holds.
    """
    backup_dir = os.path.join(model_dir, "backup")
    log_path = os.path.join(model_dir, "killed_run.log")
    os.makedirs(model_dir, exist_ok=True)
    with open(log_path, "w") as log:
        # The script's own process, not a shell around it, gets the signal.
        process = subprocess.Popen(
            probed_command(model_dir, state_dir),
            env=environment(),
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                with open(log_path) as log:
                    raise AssertionError(
                        "the run ended before it was killed:\n" + log.read()[-3000:]
                    )
            position = read_backup_position(backup_dir)
            if position and position[0] >= 1 and position[1] < STEPS_PER_EPOCH - 1:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("no backup from inside epoch 2 appeared in time")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    epoch, batch = position
    return epoch * STEPS_PER_EPOCH + batch + 1


def load_state(path):
    with open(path) as f:
        return json.load(f)


def changed_groups(before, after):
    """Groups (and variable kinds) of which some variable differs."""
    groups = set()
    for key, entry in after["variables"].items():
        # Optimizer slots may be created by the restore itself.
        previous = before["variables"].get(key, {}).get("sha256")
        if entry["sha256"] != previous:
            groups.add(entry["group"])
            if entry["path"].endswith("seed_generator_state"):
                groups.add("seed_generator")
            if "moving_" in entry["path"]:
                groups.add("batch_norm_statistics")
    return groups


def test_run_killed_mid_epoch_resumes_from_exactly_the_backed_up_state(tmp_path):
    model_dir = tmp_path / "run"
    killed_states = tmp_path / "killed_states"
    resumed_states = tmp_path / "resumed_states"
    backed_up_steps = kill_during_second_epoch(str(model_dir), killed_states)
    assert not os.path.exists(model_dir / "results.json")
    assert os.path.exists(model_dir / "backup")

    result = subprocess.run(
        probed_command(model_dir, resumed_states),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    # The state before the resumed run's first step is the one the killed
    # run had after the step its backup holds: every variable of the model
    # (weights, batch-norm statistics, the augmentation's seed generators)
    # and of the optimizer (step count, slots), bit for bit.
    start = load_state(resumed_states / "start.json")
    step = start["step"]
    # It went on from the backup (the one seen before the kill or a newer
    # one), inside epoch 2, not from scratch.
    planned = STEPS_PER_EPOCH * EPOCHS
    assert backed_up_steps <= step < planned
    backed_up = load_state(killed_states / f"step_{step}.json")
    assert backed_up["step"] == step
    assert sorted(start["variables"]) == sorted(backed_up["variables"])
    different = [
        f"{key} ({entry['path']})"
        for key, entry in backed_up["variables"].items()
        if entry["group"] != "metrics"
        and start["variables"][key]["sha256"] != entry["sha256"]
    ]
    assert not different, "not restored: " + ", ".join(different)
    # Metrics are not backed up: `fit()` resets them at the start of every
    # epoch, and the resumed run reruns the interrupted epoch.
    for entry in start["variables"].values():
        if entry["group"] == "metrics":
            assert not np.any(entry["value"]), entry["path"]

    # The comparison covered every kind of state, and the restore changed
    # each (the resumed process had built them afresh from the same seed).
    before_restore = load_state(resumed_states / "before_restore.json")
    groups = changed_groups(before_restore, start)
    for kind in (
        "trainable",
        "non_trainable",
        "batch_norm_statistics",
        "optimizer",
        "seed_generator",
    ):
        assert kind in groups, f"the restore changed no {kind} variable"

    # Exactly the planned steps in all, although Keras reran the interrupted
    # epoch from its first batch.
    results = json.loads((model_dir / "results.json").read_text())
    assert results["steps"] == planned
    assert results["optimizer_steps"] == planned
    assert results["resumed_from_step"] == step
    assert results["epochs_run"][0] >= 2
    assert results["epochs_run"][-1] == EPOCHS
    losses = results["history"]["contrastive_loss"]
    assert len(losses) == len(results["epochs_run"])
    assert np.all(np.isfinite(losses))
    # A finished run leaves no backup behind.
    assert not os.path.exists(model_dir / "backup")


def test_script_rejects_a_non_positive_checkpoint_steps(tmp_path):
    script = os.path.join(ROOT, "examples", "pretrain.py")
    for value in ("0", "-5"):
        arguments = script_arguments(tmp_path)
        arguments[arguments.index("--checkpoint_steps=1")] = (
            f"--checkpoint_steps={value}"
        )
        result = subprocess.run(
            [sys.executable, script] + arguments,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert f"--checkpoint_steps={value}" in result.stderr
        assert "positive integer" in result.stderr
