"""Shared checks: config and `.keras` round trips, as keras-hub's TestCase,
the backend's own autodiff and compilation for tests of objectives, a free
port for tests that start processes, and the example scripts run as a user
runs them."""

import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops


def _autodiff(fn, arrays):
    """Gradients of the scalar `fn(*arrays)`; `None` where none flows."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            for tensor in tensors:
                tape.watch(tensor)
            loss = fn(*tensors)
        return tape.gradient(loss, tensors)
    if backend == "jax":
        import jax

        return jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    loss = fn(*tensors)
    # Nothing to differentiate when every input is behind a stop_gradient.
    if loss.requires_grad:
        loss.backward()
    return [tensor.grad for tensor in tensors]


def backend_gradients(fn, *arrays):
    """Gradients of the scalar `fn(*arrays)` by the backend's own autodiff.

    Returns one NumPy array per input, zeros where no gradient flows.
    """
    arrays = [np.asarray(a, "float32") for a in arrays]
    return [
        np.zeros_like(a) if g is None else ops.convert_to_numpy(g)
        for a, g in zip(arrays, _autodiff(fn, arrays))
    ]


def gradient(fn, x):
    """The gradient of the scalar `fn(x)` with respect to `x`, as NumPy; it
    must exist."""
    (result,) = _autodiff(fn, [np.asarray(x, "float32")])
    assert result is not None, "no gradient flows to x"
    return np.asarray(ops.convert_to_numpy(result))


def compiled(fn):
    """`fn` as a compiled step would run it: a tf.function, a jax.jit (eager
    on PyTorch)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def run_serialization_test(instance):
    """`get_config` -> `from_config` gives an object with the same config."""
    config = instance.get_config()
    revived = instance.__class__.from_config(config)
    assert revived.get_config() == config
    serialized = keras.saving.serialize_keras_object(instance)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert revived.get_config() == config
    return revived


def run_model_saving_test(model, inputs, tmp_path, atol=1e-5, output_fn=None):
    """Saves `model` as `.keras`, loads it back and compares inference outputs.

    `output_fn(model, inputs)` gives the outputs to compare; by default
    `model(inputs, training=False)`.
    """
    output_fn = output_fn or (lambda m, x: m(x, training=False))
    expected = keras.tree.map_structure(
        keras.ops.convert_to_numpy, output_fn(model, inputs)
    )
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    actual = keras.tree.map_structure(
        keras.ops.convert_to_numpy, output_fn(restored, inputs)
    )
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5),
        expected,
        actual,
    )
    return restored


def tiny_encoder(name="encoder"):
    """An 8x8 RGB encoder small enough for a step in milliseconds: one
    convolution, batch norm, pooling to 4 features."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name=name,
    )


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The example scripts check their flags and the run directory before any
# backend work, so the tests of those refusals start the script once, in the
# TensorFlow pass, instead of once per backend.
flags_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="checks flags and messages only, which do not depend on the "
    "backend: run in the TensorFlow pass",
)

# Tests of what an example script does with its data, its run directory or
# its objective flag train through the whole script, which takes minutes on a
# compiling backend. The scripts' backend parts are tested in every pass (each
# script's smoke test, and the library's own tests), so these run once, in
# the PyTorch pass, the quickest.
script_behaviour = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="trains through an example script to check what it does with its "
    "data and run directory, which does not depend on the backend: run in "
    "the PyTorch pass",
)


# The example scripts with a --precision flag.
PRECISION_SCRIPTS = ("pretrain.py", "finetune.py", "distill.py")


def run_example(script, *flags, timeout=600):
    """Runs `examples/<script>` with `flags` in the current backend, as a user
    runs it (the script decides TensorFlow's C++ log level), and returns the
    `subprocess.CompletedProcess` with its output as text.

    The scripts that train run in float32 unless `flags` choose a
    precision: their default, `--precision=auto`, depends on the CPU, and
    the tests' figures must not."""
    if script in PRECISION_SCRIPTS and not any(
        flag.startswith(("--precision", "--mixed_precision", "--nomixed_precision"))
        for flag in flags
    ):
        flags = (*flags, "--precision=float32")
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def built_once(tmp_path_factory, name, build, directory=None, timeout=900):
    """A directory that `build(directory)` fills once, even when
    pytest-xdist runs the session in several worker processes: the first
    worker to ask builds it while the others wait for it.

    Args:
        tmp_path_factory: pytest's fixture.
        name: the directory's name in the session's shared temporary
            directory, and the name of its lock.
        build: `build(directory)` fills the directory.
        directory: where to build instead, for a directory kept between
            sessions (such as `config.cache.mkdir(...)`): a complete one
            (holding `.done`) is returned as it is.
        timeout: seconds a worker waits for another's build.

    Returns:
        The `pathlib.Path` of the built directory.
    """
    import shutil
    import time

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Each worker's base is a directory of the session's base.
        root = root.parent
    directory = root / name if directory is None else directory
    done, failed = directory / ".done", root / f"{name}.failed"
    if done.exists():
        return directory
    try:
        os.close(os.open(root / f"{name}.lock", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        deadline = time.monotonic() + timeout
        while not (done.exists() or failed.exists()):
            if time.monotonic() > deadline:
                pytest.fail(f"{name} was not built within {timeout} s by another worker")
            time.sleep(1)
        if failed.exists():
            pytest.fail(f"building {name} failed in another worker: {failed.read_text()}")
        return directory
    # A partial directory of an interrupted session is built again.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    try:
        build(directory)
    except BaseException as error:
        failed.write_text(repr(error))
        raise
    done.touch()
    return directory
