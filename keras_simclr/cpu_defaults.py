"""Fast CPU defaults that must be decided before TensorFlow or JAX start.

TensorFlow leaves its oneDNN kernels off on x86 CPUs without AVX-512 (most
AMD and older Intel machines), and reads `TF_ENABLE_ONEDNN_OPTS` once, when it
is imported: set afterwards, the variable has no effect (measured with
TensorFlow 2.21: `TF_ENABLE_ONEDNN_OPTS=0` set after `import tensorflow` left
oneDNN on, and `=1` left it off). docs/speed.md and docs/design.md
(decisions 9 and 16) give the gain on a CPU without AVX-512.

`import keras_simclr` therefore sets `TF_ENABLE_ONEDNN_OPTS=1` when it runs
before TensorFlow is loaded, on x86 machines, unless the user has set the
variable (to any value) themselves. When TensorFlow was loaded first with
oneDNN off, `check_onednn()` prints one line at the start of training with
the remedy.

JAX: XLA's CPU convolutions run faster through XNNPACK
(`--xla_cpu_use_xnnpack=true`; docs/speed.md gives the gain, and that no
other XLA CPU flag helped). `enable_fast_xla_cpu()` adds it
to `XLA_FLAGS`, which JAX reads when it first creates its CPU client; the
example scripts call it. An unknown flag makes XLA abort, so it is added only
for the jaxlib versions it was measured with.

This module imports neither Keras, TensorFlow nor JAX.
"""

import importlib.metadata as importlib_metadata
import os
import platform
import sys

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# Measured on 2 AMD EPYC cores (AVX2): small CNN 4.83 -> 2.34 s/step,
# ResNet-18 CIFAR stem (256 views) 14.5 -> 9.3 s/step.
MEASURED_GAIN = "2.1x on a small CNN, 1.6x on ResNet-18, on a 2-core AVX2 CPU"

_notice_printed = False

XLA_CPU_FLAGS = ("--xla_cpu_use_xnnpack=true",)
# jaxlib versions whose XLA knows XLA_CPU_FLAGS (measured with 0.10.2).
XLA_CPU_FLAGS_JAXLIB = ((0, 10), (0, 11))


def _is_x86():
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def enable_onednn():
    """Turns TensorFlow's oneDNN kernels on if TensorFlow is not loaded yet.

    Does nothing when the user set `TF_ENABLE_ONEDNN_OPTS`, when
    TensorFlow is already imported (too late, see the module docstring), or
    off x86. Returns whether it set the variable.
    """
    if (
        ONEDNN_VARIABLE in os.environ
        or "tensorflow" in sys.modules
        or not _is_x86()
    ):
        return False
    os.environ[ONEDNN_VARIABLE] = "1"
    return True


def onednn_enabled():
    """Whether the loaded TensorFlow runs its oneDNN kernels; `None` if
    TensorFlow is not loaded or cannot tell."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def check_onednn(file=None):
    """Prints one line, once per process, if TensorFlow runs without oneDNN
    on an x86 CPU and the user did not ask for that."""
    global _notice_printed
    if _notice_printed or not _is_x86():
        return False
    if os.environ.get(ONEDNN_VARIABLE, "1") == "0" or onednn_enabled() is not False:
        return False
    _notice_printed = True
    print(
        "keras_simclr: TensorFlow was loaded before keras_simclr with its "
        f"oneDNN kernels off; set {ONEDNN_VARIABLE}=1 before TensorFlow is "
        f"imported (or import keras_simclr first) for faster steps "
        f"(measured {MEASURED_GAIN}).",
        file=file or sys.stderr,
    )
    return True


def enable_fast_xla_cpu():
    """Adds `XLA_CPU_FLAGS` to `XLA_FLAGS` for JAX on a CPU.

    Must run before JAX first uses a device (importing JAX is fine). Leaves
    `XLA_FLAGS` alone if it already names the flag, if JAX has started, or
    if the installed jaxlib is not one it was measured with. Returns whether
    it added the flags.
    """
    try:
        version = importlib_metadata.version("jaxlib")
    except importlib_metadata.PackageNotFoundError:
        return False
    if tuple(int(part) for part in version.split(".")[:2]) not in XLA_CPU_FLAGS_JAXLIB:
        return False
    jax_bridge = sys.modules.get("jax._src.xla_bridge")
    if jax_bridge is not None and getattr(jax_bridge, "_backends", None):
        return False
    current = os.environ.get("XLA_FLAGS", "")
    missing = [
        flag for flag in XLA_CPU_FLAGS if flag.split("=")[0] not in current
    ]
    if not missing:
        return False
    os.environ["XLA_FLAGS"] = " ".join([current] + missing).strip()
    return True
