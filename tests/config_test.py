"""The fast precision: bfloat16 where the hardware has it, float32 elsewhere,
and no global policy changed by importing the package."""

import os
import subprocess
import sys

import keras
import pytest

from keras_simclr import config
from tests.testing import ROOT


@pytest.mark.parametrize(
    "flags, policy, named",
    [
        ({"fpu", "avx2", "avx512f", "avx512_bf16"}, "mixed_bfloat16", "avx512_bf16"),
        ({"avx2", "amx_tile", "amx_bf16", "avx512f"}, "mixed_bfloat16", "amx_bf16"),
        # AVX-512 without its bfloat16 extension, and AVX2 alone, emulate it.
        ({"avx2", "avx512f", "avx512_vnni"}, "float32", "no bfloat16 instructions"),
        ({"avx2", "fma"}, "float32", "no bfloat16 instructions"),
        (None, "float32", "does not report its instruction sets"),
    ],
)
def test_the_cpu_decides_by_its_bfloat16_instructions(flags, policy, named):
    for backend in ("tensorflow", "torch"):
        precision = config._cpu_precision(flags, backend)
        assert precision.policy == policy
        assert named in precision.reason
    # XLA on a CPU gains nothing from bfloat16 (docs/speed.md).
    precision = config._cpu_precision(flags, "jax")
    assert precision.policy == "float32"
    if policy == "mixed_bfloat16":
        assert "XLA" in precision.reason and named in precision.reason


@pytest.mark.parametrize(
    "capability, policy",
    [((9, 0), "mixed_bfloat16"), ((8, 0), "mixed_bfloat16"), ((7, 5), "float32")],
)
def test_a_gpu_decides_by_its_compute_capability(capability, policy):
    precision = config._gpu_precision("GPU", capability)
    assert precision.policy == policy
    assert f"{capability[0]}.{capability[1]}" in precision.reason


def test_this_machine_is_read_from_proc_cpuinfo():
    """On a CPU-only machine the choice follows the CPU's flags as the
    kernel lists them (read here independently, with `grep`)."""
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo on this system")
    if config._accelerator_precision(keras.backend.backend()) is not None:
        pytest.skip("an accelerator decides on this machine")
    found = subprocess.run(
        ["grep", "-m1", "-wE", "avx512_bf16|amx_bf16", "/proc/cpuinfo"],
        capture_output=True,
    ).returncode == 0
    fast = found and keras.backend.backend() != "jax"
    expected = "mixed_bfloat16" if fast else "float32"
    assert config.fast_precision().policy == expected
    assert config.resolve_precision("auto") == config.fast_precision()


def test_use_fast_precision_sets_and_returns_the_policy():
    previous = keras.config.dtype_policy()
    try:
        precision = config.use_fast_precision()
        assert keras.config.dtype_policy().name == precision.policy
        assert precision == config.fast_precision()
    finally:
        keras.config.set_dtype_policy(previous)


def test_a_named_precision_is_taken_as_given_and_others_refused():
    assert config.resolve_precision("mixed_float16") == config.Precision(
        "mixed_float16", "chosen by the user"
    )
    with pytest.raises(ValueError, match=r"`precision` must be 'auto' or one of .*Received: precision='bf16'"):
        config.resolve_precision("bf16")


def test_importing_the_package_sets_no_policy():
    result = subprocess.run(
        [
            sys.executable, "-c",
            "import keras_simclr, keras; print(keras.config.dtype_policy().name)",
        ],
        env=dict(os.environ, KERAS_BACKEND=keras.backend.backend()),
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "float32"
