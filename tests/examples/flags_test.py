"""The example scripts refuse bad flags in one line that names the flag and
its value, before training and without printing their whole help, and print
no TensorFlow or XLA C++ log lines."""

import re

import pytest

from tests.testing import flags_only, run_example

# What TensorFlow's and XLA's C++ logging prints at the start of a line.
CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} |cuInit|absl::InitializeLog", re.MULTILINE)


def run_script(name, *flags):
    return run_example(name, *flags, timeout=300)


def assert_one_line_error(result, message):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    # The message and absl's pointer to the help; no help, no traceback.
    assert len(lines) <= 2, result.stderr[-3000:]
    assert message in lines[0], result.stderr[-3000:]
    assert not CPP_LOG_LINE.search(result.stderr + result.stdout)


# Flags are parsed before any backend work, so each script starts once, in
# the TensorFlow pass; the test below runs on every backend.
@flags_only
@pytest.mark.parametrize(
    "script, flag, message",
    [
        ("pretrain.py", "--batch_size=0",
         "flag --batch_size=0: --batch_size must be a positive number of images"),
        ("pretrain.py", "--batch_size=-1",
         "flag --batch_size=-1: --batch_size must be a positive number of images"),
        ("pretrain.py", "--epochs=0",
         "flag --epochs=0: --epochs must be a positive number of epochs"),
        ("pretrain.py", "--max_images=0",
         "flag --max_images=0: --max_images must be a positive number of images"),
        ("pretrain.py", "--gradient_chunk_size=0",
         "flag --gradient_chunk_size=0: --gradient_chunk_size must be a positive number of images"),
        ("finetune.py", "--precision=half",
         "flag --precision=half: value should be one of <auto|float32|mixed_bfloat16|mixed_float16>"),
        ("distill.py", "--batch_size=0",
         "flag --batch_size=0: --batch_size must be a positive number of images"),
        ("finetune.py", "--learning_rate=-0.1",
         "flag --learning_rate=-0.1: --learning_rate must be positive"),
        ("export.py", "--check_images=0", "flag --check_images=0"),
    ],
)
def test_a_bad_number_is_refused_in_one_line(tmp_path, script, flag, message):
    result = run_script(script, f"--model_dir={tmp_path}", flag)
    assert_one_line_error(result, message)


def test_a_usage_error_is_one_line_and_a_batch_above_the_data_is_noted(tmp_path):
    result = run_script(
        "pretrain.py", f"--model_dir={tmp_path}", "--max_images=16",
        "--batch_size=32", "--image_size=8", "--eval_images=16", "--epochs=1",
        "--warmup_epochs=2",
    )
    assert (
        "--batch_size=32 is more than the 16 training images: each step takes "
        "all 16, so each view has 30 negatives instead of 62."
    ) in result.stdout
    assert_one_line_error(
        result,
        "FATAL Flags error: --warmup_epochs must not exceed --epochs=1. "
        "Received: --warmup_epochs=2.0",
    )
