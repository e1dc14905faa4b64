"""Kills examples/pretrain.py mid-epoch (SIGKILL) and checks that a rerun resumes it."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# 64 images in batches of 16: 4 steps per epoch, 12 in all, a backup every step.
STEPS_PER_EPOCH = 4
EPOCHS = 3


def script_command(model_dir):
    return [
        sys.executable,
        os.path.join(ROOT, "examples", "pretrain.py"),
        f"--model_dir={model_dir}",
        f"--epochs={EPOCHS}",
        "--max_images=64",
        "--batch_size=16",
        "--image_size=8",
        "--checkpoint_steps=1",
        "--verbose=0",
    ]


def read_backup_position(backup_dir):
    """`(epoch, batch)` of the newest backup, or `None` while there is none."""
    try:
        with open(os.path.join(backup_dir, "training_metadata.json")) as f:
            metadata = json.load(f)
    except (OSError, ValueError):  # Not written yet, or being written.
        return None
    return metadata["epoch"], metadata["batch"]


def kill_during_second_epoch(model_dir, env, timeout=300):
    """Runs the script, SIGKILLs it once a backup from inside epoch 2 exists.

    Returns the optimizer steps that backup holds.
    """
    backup_dir = os.path.join(model_dir, "backup")
    log_path = os.path.join(model_dir, "killed_run.log")
    with open(log_path, "w") as log:
        # The script's own process, not a shell around it, gets the signal.
        process = subprocess.Popen(
            script_command(model_dir), env=env, stdout=log, stderr=log
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


def test_run_killed_mid_epoch_resumes_and_ends_at_the_planned_step(tmp_path):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    backed_up_steps = kill_during_second_epoch(str(tmp_path), env)
    assert not os.path.exists(tmp_path / "results.json")
    assert os.path.exists(tmp_path / "backup")

    result = subprocess.run(
        script_command(tmp_path), env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    planned = STEPS_PER_EPOCH * EPOCHS
    assert results["steps"] == planned
    # Exactly the planned steps in all, although Keras reran the interrupted
    # epoch from its first batch.
    assert results["optimizer_steps"] == planned
    # It went on from the backup (the one seen before the kill or a newer
    # one), inside epoch 2, not from scratch.
    assert backed_up_steps <= results["resumed_from_step"] < planned
    assert results["epochs_run"][0] >= 2
    assert results["epochs_run"][-1] == EPOCHS
    losses = results["history"]["contrastive_loss"]
    assert len(losses) == len(results["epochs_run"])
    assert np.all(np.isfinite(losses))
    assert np.isfinite(results["final_contrastive_loss"])
    # A finished run leaves no backup behind.
    assert not os.path.exists(tmp_path / "backup")


def test_script_rejects_a_non_positive_checkpoint_steps(tmp_path):
    for value in ("0", "-5"):
        command = script_command(tmp_path)
        command[command.index("--checkpoint_steps=1")] = f"--checkpoint_steps={value}"
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        assert f"--checkpoint_steps={value}" in result.stderr
        assert "positive integer" in result.stderr
