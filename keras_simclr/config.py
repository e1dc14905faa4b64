"""The precision a machine trains fastest in, chosen for the user.

On hardware that computes in bfloat16 natively (x86 CPUs with AVX-512-bf16
or AMX, GPUs of compute capability 8.0 and above, TPUs) Keras's
`mixed_bfloat16` policy (variables in float32, computations in bfloat16)
trains more steps in the same minutes than float32, with the library's
losses kept in float32 (docs/speed.md gives the figures and the machines).
Elsewhere bfloat16 is emulated and slower, and float32 is the fast choice. `fast_precision()` makes that choice from what the
machine reports; `use_fast_precision()` also sets it as Keras's global
dtype policy; `with_precision()` copies a saved or built model into
another precision, since a loaded model keeps the policy it was saved with.
Importing keras_simclr changes no dtype policy.
"""

import copy
import dataclasses
import os
import platform
import sys
import tempfile

import keras

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# x86 CPU flags (Linux's /proc/cpuinfo names) of native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# The first NVIDIA compute capability with bfloat16 tensor cores (Ampere).
BF16_COMPUTE_CAPABILITY = (8, 0)


@dataclasses.dataclass(frozen=True)
class Precision:
    """A precision for training: the Keras dtype policy and why.

    Attributes:
        policy: the dtype policy name, `"float32"` or `"mixed_bfloat16"`.
        reason: what on the machine decided it, in words.
    """

    policy: str
    reason: str

    def __str__(self):
        return f"{self.policy} ({self.reason})"


def fast_precision():
    """The precision this machine trains fastest in, changing nothing.

    The accelerator that the Keras backend in use computes on decides when
    there is one (a TPU, or a GPU of compute capability 8.0 and above:
    `mixed_bfloat16`; an older GPU: `float32`); else the CPU
    (`mixed_bfloat16` when it has AVX-512-bf16 or AMX instructions, which
    Linux reports in `/proc/cpuinfo`; `float32` otherwise). On the JAX
    backend a CPU keeps `float32`: XLA's CPU compiler runs bfloat16
    convolutions no faster than float32 even there (docs/speed.md).

    Returns:
        A `Precision`, whose `policy` is `"mixed_bfloat16"` or `"float32"`
        and whose `reason` says why.
    """
    backend = keras.backend.backend()
    accelerator = _accelerator_precision(backend)
    if accelerator is not None:
        return accelerator
    return _cpu_precision(_cpu_flags(), backend)


def use_fast_precision():
    """Sets Keras's global dtype policy to `fast_precision()`.

    Call it before making the models, as `keras.config.set_dtype_policy`.
    The library's losses and objectives compute in float32 under every
    policy; exported models return float32.

    Returns:
        The `Precision` chosen.

    Example:

    ```python
    precision = keras_simclr.config.use_fast_precision()
    print(precision)  # mixed_bfloat16 (the CPU has avx512_bf16 ...)
    pretrainer = keras_simclr.models.SimCLRPretrainer(...)
    ```
    """
    precision = fast_precision()
    keras.config.set_dtype_policy(precision.policy)
    return precision


def resolve_precision(name):
    """The `Precision` of a command-line choice: `"auto"` for
    `fast_precision()`, or a policy name of `POLICIES`, as given.

    Raises:
        ValueError: for another name, naming what was received.
    """
    if name == "auto":
        return fast_precision()
    if name not in POLICIES:
        raise ValueError(
            f"`precision` must be 'auto' or one of {POLICIES}. "
            f"Received: precision={name!r}"
        )
    return Precision(name, "chosen by the user")


def with_precision(model, policy):
    """A copy of `model` that computes in `policy`, with the same weights.

    A Keras model keeps the dtype policy its layers were made under, also
    through `keras.saving.load_model`, whatever the global policy is when
    it is loaded: a pretrainer saved from a bfloat16 run fine-tunes in
    bfloat16 on a machine where bfloat16 is emulated, unless it is copied.
    This makes the copy from the model's config with every layer's policy
    replaced by `policy` (what building it under
    `keras.config.set_dtype_policy(policy)` would give) and loads the
    model's weights into it. Variables are float32 under each of the
    `POLICIES`, so the weights are copied exactly. `model` is not changed;
    the copy shares nothing with it and is not compiled.

    Args:
        model: a built Keras model or layer.
        policy: one of `POLICIES`, or a `Precision`.

    Returns:
        The copy, or `model` itself where every layer already computes in
        `policy`.

    Example:

    ```python
    precision = keras_simclr.config.use_fast_precision()
    pretrainer = keras.saving.load_model("pretrainer.keras")
    pretrainer = keras_simclr.config.with_precision(pretrainer, precision)
    ```
    """
    if isinstance(policy, Precision):
        policy = policy.policy
    if policy not in POLICIES:
        raise ValueError(
            f"`policy` must be one of {POLICIES} or a Precision. "
            f"Received: policy={policy!r}"
        )
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            "`model` must be a Keras model or layer. "
            f"Received: model={model!r}"
        )
    if not model.built:
        raise ValueError(
            "`model` must be built (called once, or loaded) so that its "
            f"weights can be copied. Received: {model.name!r}, not built"
        )
    config = keras.saving.serialize_keras_object(model)
    replacement = keras.saving.serialize_keras_object(keras.DTypePolicy(policy))
    changed = _replace_policies(config, replacement)
    if not changed:
        return model
    converted = keras.saving.deserialize_keras_object(config)
    if not converted.built:
        raise ValueError(
            f"The copy of {model.name!r} could not be built from its config "
            "(it has no build config): build it, then call with_precision."
        )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.weights.h5")
        model.save_weights(path)
        converted.load_weights(path)
    return converted


def _replace_policies(config, replacement):
    """Replaces, in place, each serialised floating-point dtype policy in the
    nested `config` by `replacement`; returns how many differed from it."""
    changed = 0
    if isinstance(config, dict):
        for key, value in config.items():
            if _is_float_policy(value):
                if value["config"]["name"] != replacement["config"]["name"]:
                    changed += 1
                config[key] = copy.deepcopy(replacement)
            else:
                changed += _replace_policies(value, replacement)
    elif isinstance(config, list):
        for item in config:
            changed += _replace_policies(item, replacement)
    return changed


def _is_float_policy(value):
    return (
        isinstance(value, dict)
        and value.get("class_name") == "DTypePolicy"
        and isinstance(value.get("config"), dict)
        and value["config"].get("name") in POLICIES + ("bfloat16", "float16")
    )


def _cpu_flags():
    """The CPU's instruction-set flags from Linux's `/proc/cpuinfo`, or None
    where there is no such file."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def _cpu_precision(flags, backend):
    machine = platform.machine() or "unknown"
    if flags is None:
        return Precision(
            "float32",
            f"the CPU ({machine}) does not report its instruction sets, so "
            "bfloat16 is not known to be native",
        )
    native = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if not native:
        return Precision(
            "float32",
            f"the CPU ({machine}) has no bfloat16 instructions "
            f"({' or '.join(BF16_CPU_FLAGS)}), so bfloat16 would be emulated",
        )
    if backend == "jax":
        return Precision(
            "float32",
            f"the CPU has bfloat16 instructions ({', '.join(native)}), but "
            "XLA's CPU compiler (the JAX backend) runs bfloat16 no faster "
            "than float32",
        )
    return Precision(
        "mixed_bfloat16",
        f"the CPU computes bfloat16 natively: {', '.join(native)}",
    )


def _gpu_precision(name, capability):
    if tuple(capability) >= BF16_COMPUTE_CAPABILITY:
        return Precision(
            "mixed_bfloat16",
            f"the GPU ({name}, compute capability "
            f"{capability[0]}.{capability[1]}) computes bfloat16 natively",
        )
    return Precision(
        "float32",
        f"the GPU ({name}, compute capability {capability[0]}.{capability[1]}) "
        "has no bfloat16 units; mixed_float16 is the faster choice there, "
        "with loss scaling",
    )


def _accelerator_precision(backend):
    """The precision of the backend's accelerator, or None on a CPU."""
    if backend == "torch":
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            index = torch.cuda.current_device()
            return _gpu_precision(
                torch.cuda.get_device_name(index),
                torch.cuda.get_device_capability(index),
            )
        return None
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "tpu":
            return Precision("mixed_bfloat16", "TPUs compute in bfloat16")
        if device.platform == "gpu":
            capability = getattr(device, "compute_capability", "0.0")
            major, minor = (int(part) for part in str(capability).split(".")[:2])
            return _gpu_precision(device.device_kind, (major, minor))
        return None
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("TPU"):
            return Precision("mixed_bfloat16", "TPUs compute in bfloat16")
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return _gpu_precision(
                details.get("device_name", "GPU"),
                details.get("compute_capability", (0, 0)),
            )
    return None
