"""Runs SimCLR v2's three stages and the export with the example scripts'
smallest flags, each reading the run directory the one before wrote."""

import json
import os
import re

import keras
import numpy as np
import pytest

import keras_simclr  # noqa: F401  (registers its classes for load_model)
from tests.testing import ROOT, flags_only, run_example, script_behaviour



def run_script(name, *flags):
    return run_example(name, *flags, timeout=900)


@script_behaviour
def test_pretrain_finetune_distill_export(tmp_path):
    run = str(tmp_path / "run")
    result = run_script(
        "pretrain.py", f"--model_dir={run}", "--epochs=1", "--max_images=64",
        "--batch_size=32", "--image_size=8", "--projection_layers=3",
        "--memory_queue", "--queue_size=128", "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]

    result = run_script(
        "finetune.py", f"--model_dir={run}", "--label_fraction=0.1",
        "--head_layers=1", "--epochs=1", "--batch_size=32", "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    finetune = json.loads((tmp_path / "run" / "finetune.json").read_text())
    # 10% of the 1,438 training digits, class-balanced: 14 or 15 per class.
    assert 140 <= finetune["labelled_images"] <= 150
    assert 0.0 <= finetune["pretrained"]["top1"] <= finetune["pretrained"]["top5"] <= 1.0
    classifier = keras.saving.load_model(tmp_path / "run" / "classifier.keras")
    assert classifier.head_layers == 1 and classifier.num_classes == 10

    result = run_script(
        "distill.py", f"--model_dir={run}", "--epochs=1", "--max_images=64",
        "--batch_size=32", "--student_depth=18", "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    distill = json.loads((tmp_path / "run" / "distill.json").read_text())
    for key in ("teacher_top1", "student_top1", "agreement"):
        assert 0.0 <= distill[key] <= 1.0
    # The teacher's accuracy is the fine-tuned classifier's.
    np.testing.assert_allclose(
        distill["teacher_top1"], finetune["pretrained"]["top1"], atol=1e-6
    )

    result = run_script("export.py", f"--model_dir={run}", "--check_images=8")
    assert result.returncode == 0, result.stderr[-3000:]
    exports = json.loads((tmp_path / "run" / "export.json").read_text())["exports"]
    assert sorted(exports) == ["classifier", "encoder", "pretrainer", "student"]
    for name, export in exports.items():
        assert export["max_abs_difference"] < 1e-4, name
        assert os.path.exists(os.path.join(export["path"], "saved_model.pb"))
    assert sorted(exports["classifier"]["outputs"]) == [
        "features", "head_features", "logits",
    ]
    assert sorted(exports["pretrainer"]["outputs"]) == [
        "features", "logits", "projection",
    ]


@script_behaviour
def test_finetune_and_distill_run_in_their_own_precision(tmp_path):
    """--precision of a later stage is its own, whatever the stage before
    saved: the pretrainer saved in float32 fine-tunes in bfloat16, and that
    bfloat16 teacher distils into a float32 student. Each stage's JSON says
    which, and the models it saves compute in it."""
    run = str(tmp_path / "run")
    result = run_script(
        "pretrain.py", f"--model_dir={run}", "--epochs=1", "--max_images=64",
        "--batch_size=32", "--image_size=8", "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]

    result = run_script(
        "finetune.py", f"--model_dir={run}", "--epochs=1", "--batch_size=32",
        "--precision=mixed_bfloat16", "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("precision=mixed_bfloat16: chosen by the user\n")
    finetune = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert finetune["precision"] == "mixed_bfloat16"
    classifier = keras.saving.load_model(tmp_path / "run" / "classifier.keras")
    assert classifier.encoder.compute_dtype == "bfloat16"
    assert classifier.linear_classifier.compute_dtype == "bfloat16"

    result = run_script(
        "distill.py", f"--model_dir={run}", "--epochs=1", "--max_images=32",
        "--batch_size=32", "--student_depth=18", "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    distill = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert distill["precision"] == "float32"
    student = keras.saving.load_model(tmp_path / "run" / "student.keras")
    assert student.encoder.compute_dtype == "float32"


@flags_only
def test_later_stages_need_the_earlier_ones(tmp_path):
    result = run_script("finetune.py", f"--model_dir={tmp_path}")
    assert result.returncode != 0
    assert "examples/pretrain.py" in result.stderr
    assert f"Received: --model_dir={tmp_path}" in result.stderr
    (tmp_path / "flags.json").write_text(json.dumps({"dataset": "digits"}))
    result = run_script("distill.py", f"--model_dir={tmp_path}")
    assert result.returncode != 0
    assert "examples/finetune.py" in result.stderr
    result = run_script("export.py", f"--model_dir={tmp_path}")
    assert result.returncode != 0
    assert "examples/pretrain.py" in result.stderr


def defined_flags(script):
    """The flags a script defines, read from its source."""
    with open(os.path.join(ROOT, "examples", script)) as f:
        return set(re.findall(r'DEFINE_\w+\(\s*"(\w+)"', f.read()))


@flags_only
@pytest.mark.parametrize(
    "case, message",
    [
        ("no_run", "--model_dir must be a run directory written by examples/pretrain.py"),
        ("unfinished_run", "holds no pretrainer.keras"),
        ("images_gone", "The images of the pretraining run are gone"),
        ("--label_fraction=0", "--label_fraction must be a number in (0, 1]"),
        ("--batch_size=0", "--batch_size"),
    ],
)
def test_finetune_errors_name_only_its_own_flags(tmp_path, case, message):
    flags = [f"--model_dir={tmp_path}"]
    if case == "unfinished_run":
        (tmp_path / "flags.json").write_text(json.dumps({"dataset": "digits"}))
    elif case == "images_gone":
        (tmp_path / "flags.json").write_text(
            json.dumps({"dataset": "image_folder", "data_dir": str(tmp_path / "gone")})
        )
    elif case.startswith("--"):
        flags.append(case)
    result = run_script("finetune.py", *flags)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    named = set(re.findall(r"(?<![\w-])--([a-z_]+)", result.stderr))
    own = defined_flags("finetune.py") | {"helpshort", "helpfull"}
    assert named <= own, named - own
