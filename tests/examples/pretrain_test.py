"""Runs examples/pretrain.py with its smallest flags, as a user would."""

import json
import os
import re

import keras
import numpy as np
import pytest

import keras_simclr  # (also registers its classes for load_model)
from tests.data.image_files import write_image
from tests.testing import flags_only, run_example, script_behaviour

def run_script(model_dir, *extra):
    return run_example(
        "pretrain.py",
        f"--model_dir={model_dir}",
        "--epochs=1",
        "--max_images=64",
        "--batch_size=32",
        "--image_size=8",
        "--eval_images=64",
        "--verbose=0",
        *extra,
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
    # --eval_images=64 caps both sets of the evaluation, not the training.
    assert results["train_images"] == 64
    assert results["eval_train_images"] == 64
    assert results["test_images"] == 64
    assert results["held_out_images"] == 359
    assert "64 images" in result.stdout
    assert np.isfinite(results["final_contrastive_loss"])
    for accuracy in results["linear_probe_accuracy"].values():
        assert 0.0 <= accuracy <= 1.0
    flags = json.loads((tmp_path / "flags.json").read_text())
    assert flags["batch_size"] == 32 and flags["dataset"] == "digits"
    encoder = keras.saving.load_model(tmp_path / "encoder.keras")
    assert encoder.output_shape == (None, 512)
    # No C++ log lines of TensorFlow or XLA, no retracing warnings.
    output = result.stdout + result.stderr
    assert not re.search(r"^[IWEF]\d{4} |cuInit|absl::InitializeLog", output, re.M)
    assert "retracing" not in output


@script_behaviour
def test_pretrain_script_trains_in_chunks(tmp_path):
    """--gradient_chunk_size reaches the pretrainer, which trains and saves
    with it."""
    result = run_script(tmp_path, "--gradient_chunk_size=8")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert np.isfinite(results["final_contrastive_loss"])
    assert json.loads((tmp_path / "flags.json").read_text())["gradient_chunk_size"] == 8
    pretrainer = keras.saving.load_model(tmp_path / "pretrainer.keras")
    assert pretrainer.gradient_chunk_size == 8


@script_behaviour
def test_pretrain_script_chooses_the_fast_precision_and_says_why(tmp_path):
    """--precision=auto, the default: the machine's fast precision, named with
    its reason on the run's first line and in results.json."""
    result = run_script(tmp_path, "--precision=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = keras_simclr.config.fast_precision()
    assert result.stdout.splitlines()[0] == (
        f"precision={chosen.policy}: {chosen.reason}"
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["precision"] == chosen.policy
    assert results["precision_reason"] == chosen.reason
    encoder = keras.saving.load_model(tmp_path / "encoder.keras")
    compute = "bfloat16" if chosen.policy == "mixed_bfloat16" else "float32"
    assert encoder.compute_dtype == compute
    assert np.isfinite(results["final_contrastive_loss"])


@script_behaviour
def test_the_deprecated_mixed_precision_flag_still_works(tmp_path):
    result = run_script(tmp_path, "--mixed_precision")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--mixed_precision is deprecated" in result.stdout
    assert "use --precision=mixed_bfloat16" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["precision"] == "mixed_bfloat16"


@flags_only
def test_precision_given_twice_is_refused(tmp_path):
    result = run_script(tmp_path, "--precision=float32", "--mixed_precision")
    assert result.returncode != 0
    assert (
        "--mixed_precision is the deprecated form of --precision; give "
        "--precision only. Received: --precision=float32 and --mixed_precision"
    ) in result.stderr


@flags_only
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


@flags_only
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--warmup_epochs=2"], "--warmup_epochs must not exceed --epochs=1"),
        (["--optimizer=rmsprop"], "--optimizer"),
        (["--learning_rate_scaling=cubic"], "--learning_rate_scaling"),
        # A flag the objective would ignore, as the library refuses it.
        (
            ["--objective=byol", "--temperature=0.2"],
            "--temperature is not used by --objective=byol (without "
            "--memory_queue); it applies to simclr, supcon and moco.",
        ),
        (
            ["--queue_size=512"],
            "--queue_size is not used by --objective=simclr (without "
            "--memory_queue); it applies to moco and simclr with memory_queue=True.",
        ),
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


@script_behaviour
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
    assert restored.objective.key == objective


@flags_only
def test_pretrain_script_rejects_a_bad_objective_config(tmp_path):
    result = run_script(tmp_path, "--objective=vicreg", "--objective_config={oops")
    assert result.returncode != 0
    assert "--objective_config must be a JSON dict" in result.stderr


def write_folder(folder, count, classes=None, seed=0):
    """`count` random JPEGs, flat or spread over `classes` subfolders."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        where = folder if classes is None else folder / f"class_{i % classes}"
        os.makedirs(where, exist_ok=True)
        write_image(where / f"{i:03d}.jpg", rng.integers(0, 256, (10, 12, 3)))
    return folder


@script_behaviour
def test_flat_folder_pretrains_then_reruns_need_overwrite(tmp_path):
    run = tmp_path / "run"
    flat = write_folder(tmp_path / "photos", 40)
    result = run_script(run, "--dataset=image_folder", f"--data_dir={flat}")
    assert result.returncode == 0, result.stderr[-3000:]
    skipped = [line for line in result.stdout.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "no labels" in skipped[0], result.stdout
    results = json.loads((run / "results.json").read_text())
    assert results["train_images"] == 40
    assert results["steps"] == results["optimizer_steps"] == 1  # 40 // 32
    assert results["linear_probe_accuracy"] is None
    assert "no labels" in results["evaluation_skipped"]
    assert "knn_accuracy" not in results["history"]
    assert np.isfinite(results["final_contrastive_loss"])
    restored = keras.saving.load_model(run / "pretrainer.keras")
    assert restored.num_classes is None

    # Fine-tuning needs labels, and says so without a traceback.
    finetune = run_example("finetune.py", f"--model_dir={run}")
    assert finetune.returncode != 0
    assert "Fine-tuning needs labels" in finetune.stderr
    assert "Traceback" not in finetune.stderr

    # A finished run is not trained again, nor mixed with a new one.
    finished = (run / "results.json").read_text()
    result = run_script(run, "--dataset=image_folder", f"--data_dir={flat}")
    assert result.returncode != 0
    assert f"--model_dir={run} holds a finished run" in result.stderr
    assert "--overwrite" in result.stderr
    assert (run / "results.json").read_text() == finished

    # --overwrite starts afresh: what the old run and the stages after it
    # wrote is gone. Class subfolders: 30 images, 6 held out.
    for stale in ("classifier.keras", "student.keras", "finetune.json"):
        (run / stale).write_text("from the old run")
    classes = write_folder(tmp_path / "classes", 30, classes=3, seed=1)
    result = run_script(
        run, "--dataset=image_folder", f"--data_dir={classes}", "--overwrite",
        "--eval_images=4",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for stale in ("classifier.keras", "student.keras", "finetune.json"):
        assert not os.path.exists(run / stale), stale
    results = json.loads((run / "results.json").read_text())
    assert results["train_images"] == 24
    assert results["held_out_images"] == 6
    assert results["test_images"] == results["eval_train_images"] == 4
    for accuracy in results["linear_probe_accuracy"].values():
        # Scored on 4 images.
        assert accuracy in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert "evaluation_skipped" not in results
    # One epoch in the history, not appended to the old run's.
    assert len((run / "history.csv").read_text().strip().splitlines()) == 2
    assert keras.saving.load_model(run / "pretrainer.keras").num_classes == 3


@script_behaviour
def test_labelled_folder_of_several_sizes_crops_from_full_images(tmp_path):
    # Images of four sizes cannot be batched before the crop: --crop_from=
    # full_image crops each whole image in tf.data, and the evaluations see
    # each image through the evaluation transform.
    rng = np.random.default_rng(3)
    folder = tmp_path / "photos"
    for i in range(36):
        where = folder / f"class_{i % 2}"
        os.makedirs(where, exist_ok=True)
        size = (9 + i % 4, 10 + 3 * (i % 3))
        write_image(where / f"{i:03d}.png", rng.integers(0, 256, (*size, 3)))
    run = tmp_path / "run"
    result = run_script(
        run, "--dataset=image_folder", f"--data_dir={folder}",
        "--crop_from=full_image", "--eval_images=4",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "crops from the full" in result.stdout
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 1
    assert np.isfinite(results["final_contrastive_loss"])
    assert json.loads((run / "flags.json").read_text())["crop_from"] == (
        "full_image"
    )


@flags_only
@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--data_dir={missing}"],
            "--data_dir is read only with --dataset=image_folder (or tfds); "
            "--dataset=digits",
        ),
        (
            ["--dataset=image_folder", "--data_dir={missing}"],
            "--data_dir must be an existing folder of images",
        ),
        (["--dataset=image_folder"], "--dataset=image_folder needs --data_dir"),
        (
            ["--crop_from=full_image"],
            "--crop_from=full_image reads images at their own size from "
            "--dataset=image_folder or tfds",
        ),
    ],
)
def test_pretrain_script_refuses_data_dir_flags_it_cannot_use(
    tmp_path, flags, message
):
    missing = tmp_path / "no_such_folder"
    result = run_script(
        tmp_path / "run", *(flag.format(missing=missing) for flag in flags)
    )
    assert result.returncode != 0
    assert message in result.stderr
    if "{missing}" in flags[-1]:
        assert "Received: --" in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "run")


@flags_only
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_backup_is_resumed_not_refused_or_cleared(tmp_path, overwrite):
    # An interrupted run keeps its backup; rerunning resumes it, with or
    # without --overwrite, so neither the refusal of a finished run nor the
    # clearing of old results applies. This backup is unreadable, so the
    # run stops where Keras restores it, after the clearing would have been.
    os.makedirs(tmp_path / "backup")
    (tmp_path / "backup" / "latest.weights.h5").write_text("not a backup")
    for name in ("results.json", "encoder.keras", "history.csv"):
        (tmp_path / name).write_text("kept")
    result = run_script(tmp_path, *(["--overwrite"] if overwrite else []))
    assert result.returncode != 0
    assert "holds a finished run" not in result.stderr
    # Stopped restoring the backup (Keras's BackupAndRestore), not before.
    assert "backup_and_restore" in result.stderr and "OSError" in result.stderr
    for name in ("results.json", "encoder.keras", "history.csv"):
        assert (tmp_path / name).read_text() == "kept", name
