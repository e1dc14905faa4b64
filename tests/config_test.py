"""The fast precision: bfloat16 where the hardware has it, float32 elsewhere,
no global policy changed by importing the package, and saved models copied
into another precision."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr import config
from keras_simclr.layers import ProjectionHead
from keras_simclr.layers import SimCLRAugmentation
from keras_simclr.models import ResNet
from keras_simclr.models import SimCLRClassifier
from keras_simclr.models import SimCLRPretrainer
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


# === with_precision ===


def _build(kind, policy):
    """A small pretrainer or classifier made under the global `policy`, as a
    user's script would make it, with seeded weights."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(3)
        model = SimCLRPretrainer(
            ResNet(depth=18, width_multiplier=0.125, cifar_stem=True, input_shape=(8, 8, 3), value_range=(0, 1)),
            augmentation=SimCLRAugmentation(8, preset="cifar", value_range=(0, 1), seed=0),
            projection_head=ProjectionHead(hidden_dim=8, output_dim=4, num_layers=3),
            num_classes=3,
        )
        model.build((None, 8, 8, 3))
        if kind == "classifier":
            model = SimCLRClassifier(model, 3, head_layers=1)
            model.build((None, 8, 8, 3))
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def _policies(model):
    """Each layer's policy; input layers keep the dtype of their inputs."""
    return [
        (type(layer).__name__, layer.dtype_policy.name)
        for layer in model._flatten_layers(include_self=True)
        if not isinstance(layer, keras.layers.InputLayer)
    ]


def _features(model, images):
    outputs = model.export_outputs(images)
    return {
        name: np.asarray(ops.convert_to_numpy(ops.cast(value, "float32")))
        for name, value in outputs.items()
    }


@pytest.mark.parametrize("kind", ["pretrainer", "classifier"])
@pytest.mark.parametrize(
    "source, target", [("float32", "mixed_bfloat16"), ("mixed_bfloat16", "float32")]
)
def test_with_precision_is_the_model_made_under_the_policy(tmp_path, kind, source, target):
    """A saved model loaded and copied into another policy is the model made
    under that global policy with the same weights: the same policy on every
    layer, the same weights, the same outputs; the loaded model unchanged."""
    path = str(tmp_path / "model.keras")
    _build(kind, source).save(path)
    loaded = keras.saving.load_model(path, compile=False)
    loaded_policies = _policies(loaded)
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype("float32")
    loaded_outputs = _features(loaded, images)

    copy = config.with_precision(loaded, target)

    reference = _build(kind, target)
    reference.set_weights(loaded.get_weights())
    assert _policies(copy) == _policies(reference)
    compute = "bfloat16" if target == "mixed_bfloat16" else "float32"
    assert copy.encoder.compute_dtype == compute
    for copied, original in zip(copy.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(copied), ops.convert_to_numpy(original)
        )
    copy_outputs = _features(copy, images)
    reference_outputs = _features(reference, images)
    for name in reference_outputs:
        np.testing.assert_array_equal(copy_outputs[name], reference_outputs[name])
    # The other precision computes otherwise: 8-bit against 24-bit mantissas.
    features = loaded_outputs["features"]
    assert np.max(np.abs(copy_outputs["features"] - features)) > 1e-4 * np.max(np.abs(features))
    # The loaded model is as it was.
    assert _policies(loaded) == loaded_policies
    for name, value in _features(loaded, images).items():
        np.testing.assert_array_equal(value, loaded_outputs[name])


def test_with_precision_keeps_a_model_already_in_the_policy():
    model = _build("pretrainer", "float32")
    assert config.with_precision(model, config.Precision("float32", "given")) is model


def test_with_precision_refuses_what_it_cannot_copy():
    model = _build("pretrainer", "float32")
    with pytest.raises(ValueError, match=r"`policy` must be one of .*Received: policy='bf16'"):
        config.with_precision(model, "bf16")
    with pytest.raises(ValueError, match=r"`model` must be a Keras model or layer. Received: model='model.keras'"):
        config.with_precision("model.keras", "float32")
    unbuilt = keras.layers.Dense(3, name="head")
    with pytest.raises(ValueError, match=r"`model` must be built .*Received: 'head', not built"):
        config.with_precision(unbuilt, "mixed_bfloat16")
