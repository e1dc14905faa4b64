import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one test process per core, at most 4. Each process holds
    TensorFlow, JAX or PyTorch (1 to 2 GiB), and the tests' models are tiny,
    so more processes add memory, not speed."""
    return max(1, min(os.cpu_count() or 1, 4))


@pytest.fixture(autouse=True)
def _fixed_seed():
    keras.utils.set_random_seed(1234)
    yield
