import io
import os
import subprocess
import sys

import keras
import pytest

from keras_simclr import cpu_defaults

VARIABLE = cpu_defaults.ONEDNN_VARIABLE


@pytest.fixture
def fresh_process(monkeypatch):
    """As if TensorFlow were not loaded yet, on an x86 machine."""
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(cpu_defaults.platform, "machine", lambda: "x86_64")
    return monkeypatch


def test_turns_onednn_on_before_tensorflow_loads(fresh_process):
    assert cpu_defaults.enable_onednn()
    assert os.environ[VARIABLE] == "1"


def test_leaves_a_user_setting_alone(fresh_process):
    fresh_process.setenv(VARIABLE, "0")
    assert not cpu_defaults.enable_onednn()
    assert os.environ[VARIABLE] == "0"


def test_does_nothing_once_tensorflow_is_loaded(fresh_process):
    fresh_process.setitem(sys.modules, "tensorflow", object())
    assert not cpu_defaults.enable_onednn()
    assert VARIABLE not in os.environ


def test_does_nothing_off_x86(fresh_process):
    fresh_process.setattr(cpu_defaults.platform, "machine", lambda: "aarch64")
    assert not cpu_defaults.enable_onednn()
    assert VARIABLE not in os.environ


def test_notice_when_tensorflow_runs_without_onednn(fresh_process):
    fresh_process.setattr(cpu_defaults, "onednn_enabled", lambda: False)
    fresh_process.setattr(cpu_defaults, "_notice_printed", False)
    out = io.StringIO()
    assert cpu_defaults.check_onednn(file=out)
    line = out.getvalue()
    assert line.count("\n") == 1
    assert f"{VARIABLE}=1" in line and "import keras_simclr first" in line
    # Once per process.
    assert not cpu_defaults.check_onednn(file=out)
    assert out.getvalue() == line


@pytest.mark.parametrize("enabled,user_value", [(True, None), (None, None),
                                                (False, "0")])
def test_no_notice_when_onednn_is_on_or_refused(fresh_process, enabled, user_value):
    fresh_process.setattr(cpu_defaults, "onednn_enabled", lambda: enabled)
    fresh_process.setattr(cpu_defaults, "_notice_printed", False)
    if user_value is not None:
        fresh_process.setenv(VARIABLE, user_value)
    out = io.StringIO()
    assert not cpu_defaults.check_onednn(file=out)
    assert out.getvalue() == ""


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="starts TensorFlow processes; run once, in the TensorFlow pass",
)
@pytest.mark.parametrize("user_value,expected", [(None, ("1", True)),
                                                 ("0", ("0", False))])
def test_import_keras_simclr_first_in_a_new_process(user_value, expected):
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    if user_value is not None:
        env[VARIABLE] = user_value
    env["KERAS_BACKEND"] = "tensorflow"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    code = (
        "import os, keras_simclr, tensorflow\n"
        "from keras_simclr import cpu_defaults\n"
        "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), "
        "cpu_defaults.onednn_enabled())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    value, enabled = result.stdout.split()[-2:]
    assert (value, enabled == "True") == expected


class _Bridge:
    def __init__(self, backends):
        self._backends = backends


@pytest.fixture
def jax_not_started(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", _Bridge({}))
    monkeypatch.setattr(
        cpu_defaults.importlib_metadata, "version", lambda name: "0.10.2"
    )
    return monkeypatch


def test_xnnpack_flag_added_before_jax_starts(jax_not_started):
    jax_not_started.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert cpu_defaults.enable_fast_xla_cpu()
    assert os.environ["XLA_FLAGS"] == (
        "--xla_force_host_platform_device_count=2 --xla_cpu_use_xnnpack=true"
    )
    # Once is enough, and a user's own value wins.
    assert not cpu_defaults.enable_fast_xla_cpu()
    jax_not_started.setenv("XLA_FLAGS", "--xla_cpu_use_xnnpack=false")
    assert not cpu_defaults.enable_fast_xla_cpu()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_xnnpack=false"


def test_xla_flags_left_alone_once_jax_started(jax_not_started):
    jax_not_started.setitem(sys.modules, "jax._src.xla_bridge", _Bridge({"cpu": 0}))
    assert not cpu_defaults.enable_fast_xla_cpu()
    assert "XLA_FLAGS" not in os.environ


@pytest.mark.parametrize("version", ["0.4.30", "0.9.0", "1.0.0"])
def test_xla_flags_only_for_measured_jaxlib_versions(jax_not_started, version):
    # An unknown flag makes XLA abort at start-up.
    jax_not_started.setattr(
        cpu_defaults.importlib_metadata, "version", lambda name: version
    )
    assert not cpu_defaults.enable_fast_xla_cpu()
    assert "XLA_FLAGS" not in os.environ
