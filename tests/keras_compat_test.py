"""Guards every use of Keras's private API (`keras_simclr._keras_compat`).

Each internal the library reaches is checked on the installed Keras; when a
Keras release removes or changes one, its test fails naming the internal,
the file that uses it and what for. The module is loaded from its file, so
that these tests run (and name the culprit) even when the package itself
can no longer be imported.
"""

import importlib.util
import pathlib

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_simclr"


def _load_compat():
    spec = importlib.util.spec_from_file_location(
        "keras_simclr_compat_under_test", PACKAGE / "_keras_compat.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compat = _load_compat()


@pytest.mark.parametrize(
    "internal", compat.INTERNALS, ids=[i.used_by for i in compat.INTERNALS]
)
def test_keras_internal_is_still_there(internal):
    try:
        internal.check()
    except Exception as error:  # noqa: BLE001 - any failure names the internal
        pytest.fail(
            f"Keras internal {internal.name}, used by keras_simclr/"
            f"{internal.used_by} ({internal.purpose}), checked on Keras "
            f"{compat.KERAS_VERSION_CHECKED}, is gone or changed in Keras "
            f"{keras.__version__}: {type(error).__name__}: {error}. Update "
            "keras_simclr/_keras_compat.py.",
            pytrace=False,
        )


def test_a_missing_internal_names_itself():
    with pytest.raises(ImportError, match=r"keras\.src\.no_such_module\.Thing"):
        compat._keras_src("no_such_module", "Thing", "a test")


def test_no_other_module_reads_keras_src():
    offenders = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if path.name != "_keras_compat.py" and "keras.src" in path.read_text()
    ]
    assert not offenders, (
        "Keras's private API is reached through keras_simclr/_keras_compat.py "
        f"alone. Received: keras.src in {offenders}"
    )
