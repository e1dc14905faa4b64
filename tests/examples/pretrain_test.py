"""Runs examples/pretrain.py with its smallest flags, as a user would."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_simclr  # noqa: F401  (registers its classes for load_model)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(model_dir, *extra):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    return subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "pretrain.py"),
            f"--model_dir={model_dir}",
            "--epochs=1",
            "--max_images=64",
            "--batch_size=32",
            "--image_size=8",
            "--verbose=0",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_pretrain_script_writes_model_flags_and_results(tmp_path):
    result = run_script(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SimCLR-pretrained encoder" in result.stdout
    for name in ("pretrainer.keras", "encoder.keras", "flags.json", "results.json"):
        assert os.path.exists(tmp_path / name), name
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["backend"] == keras.backend.backend()
    assert results["steps"] == 2
    assert np.isfinite(results["final_contrastive_loss"])
    for accuracy in results["linear_probe_accuracy"].values():
        assert 0.0 <= accuracy <= 1.0
    flags = json.loads((tmp_path / "flags.json").read_text())
    assert flags["batch_size"] == 32 and flags["dataset"] == "digits"
    encoder = keras.saving.load_model(tmp_path / "encoder.keras")
    assert encoder.output_shape == (None, 512)


def test_pretrain_script_rejects_bad_flags(tmp_path):
    result = run_script(tmp_path, "--temperature=0")
    assert result.returncode != 0
    assert "temperature" in result.stderr


BACKEND = keras.backend.backend()
MULTI_DEVICE = {"tensorflow": "mirrored", "jax": "data_parallel"}


@pytest.mark.skipif(BACKEND == "torch", reason="the PyTorch backend has one device")
def test_pretrain_script_on_two_cpu_devices(tmp_path):
    strategy = MULTI_DEVICE[BACKEND]
    result = run_script(tmp_path, f"--strategy={strategy}", "--cpu_devices=2")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["strategy"] == strategy and results["devices"] == 2
    assert results["optimizer_steps"] == results["steps"] == 2
    assert np.isfinite(results["final_contrastive_loss"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--warmup_epochs=2"], "--warmup_epochs must not exceed --epochs=1"),
        (["--optimizer=rmsprop"], "--optimizer"),
        (["--learning_rate_scaling=cubic"], "--learning_rate_scaling"),
    ],
)
def test_pretrain_script_rejects_bad_training_flags(tmp_path, flags, message):
    result = run_script(tmp_path, *flags)
    assert result.returncode != 0
    assert message in result.stderr


def test_pretrain_script_rejects_a_strategy_of_another_backend(tmp_path):
    strategy = "data_parallel" if BACKEND != "jax" else "mirrored"
    result = run_script(tmp_path, f"--strategy={strategy}")
    assert result.returncode != 0
    assert f"--strategy={strategy}" in result.stderr
    assert "KERAS_BACKEND" in result.stderr


@pytest.mark.parametrize("objective", ["byol"])
def test_pretrain_script_with_another_objective(tmp_path, objective):
    result = run_script(
        tmp_path, f"--objective={objective}", "--prediction_hidden_dim=16"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["objective"] == objective
    assert np.isfinite(results["final_objective_loss"])
    restored = keras.saving.load_model(tmp_path / "pretrainer.keras")
    assert restored.objective == objective


def test_pretrain_script_rejects_a_bad_objective_config(tmp_path):
    result = run_script(tmp_path, "--objective=vicreg", "--objective_config={oops")
    assert result.returncode != 0
    assert "--objective_config must be a JSON dict" in result.stderr
