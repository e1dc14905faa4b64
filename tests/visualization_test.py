import math
import sys

import keras
import numpy as np
import pytest

from keras_simclr import visualization
from keras_simclr.layers import SimCLRAugmentation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=2000):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    return data


def uint8_images(num_images=2, size=12):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(num_images, size, size, 3)).astype("uint8")


# One shape of images and views throughout: on JAX each new shape compiles
# the augmentation's ops again.


def test_augmentation_preview_writes_a_png(tmp_path):
    path = str(tmp_path / "views.png")
    augmentation = SimCLRAugmentation(12, preset="cifar", seed=0)
    returned = visualization.augmentation_preview(
        augmentation, uint8_images(3), path, num_images=2
    )
    assert returned == path
    assert_png(path)


def test_augmentation_preview_is_reproducible_with_a_seed(tmp_path):
    augmentation = SimCLRAugmentation(12, preset="cifar", seed=0)
    images = uint8_images(2)
    outputs = []
    for name in ("a.png", "b.png"):
        path = tmp_path / name
        visualization.augmentation_preview(augmentation, images, path, seed=3)
        outputs.append(assert_png(path))
    assert outputs[0] == outputs[1]
    visualization.augmentation_preview(augmentation, images, tmp_path / "c.png", seed=4)
    assert assert_png(tmp_path / "c.png") != outputs[0]


def test_augmentation_preview_float_images_and_the_layer_value_range(tmp_path):
    augmentation = SimCLRAugmentation(12, preset="cifar", value_range=(0, 1), seed=1)
    images = np.random.default_rng(1).uniform(size=(2, 12, 12, 3)).astype("float32")
    figure = visualization.augmentation_preview(augmentation, images, num_images=8)
    from matplotlib.figure import Figure

    assert isinstance(figure, Figure)
    # Two rows of the image and two views.
    assert len(figure.axes) == 6
    shown = figure.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(shown, images[0], atol=1e-6)
    figure.savefig(tmp_path / "figure.png")
    assert_png(tmp_path / "figure.png")


def test_augmentation_preview_one_channel_with_a_keras_layer(tmp_path):
    images = np.random.default_rng(2).uniform(0, 255, size=(2, 8, 8, 1))
    figure = visualization.augmentation_preview(
        keras.layers.RandomFlip("horizontal", seed=0), images
    )
    shown = figure.axes[0].get_images()[0].get_array()
    # No value_range on the layer: values above 1 are taken as 0..255.
    np.testing.assert_allclose(shown, images[0, ..., 0] / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"augmentation": lambda x: x}, "augmentation"),
        ({"images": np.zeros((4, 8, 8))}, "images"),
        ({"images": np.zeros((4, 8, 8, 2))}, "images"),
        ({"images": np.zeros((0, 8, 8, 3))}, "images"),
        ({"num_images": 0}, "num_images"),
        ({"seed": 1.5}, "seed"),
        ({"path": 3}, "path"),
    ],
)
def test_augmentation_preview_rejects_bad_arguments(kwargs, match):
    arguments = {
        "augmentation": SimCLRAugmentation(12, seed=0),
        "images": uint8_images(2),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        visualization.augmentation_preview(**arguments)


def test_plot_history_from_a_keras_history(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    history = model.fit(x, x[:, :1], epochs=3, verbose=0, validation_data=(x, x[:, :1]))
    path = str(tmp_path / "history.png")
    assert visualization.plot_history(history, path) == path
    assert_png(path)


def test_plot_history_from_a_dict_with_gaps_and_time(tmp_path):
    history = {
        "loss": [3.0, 2.0, 1.5, 1.2],
        "contrastive_accuracy": [0.1, 0.3, 0.5, 0.6],
        "knn_accuracy": [math.nan, 0.4, math.nan, 0.7],
        "time": [10.0, 20.5, 30.1, 41.0],
    }
    visualization.plot_history(history, tmp_path / "epochs.png")
    assert_png(tmp_path / "epochs.png")
    visualization.plot_history(
        history, tmp_path / "time.png", metrics=None, x_axis="time"
    )
    assert_png(tmp_path / "time.png")
    # Absent metrics are skipped.
    visualization.plot_history(
        history, tmp_path / "some.png", metrics=("loss", "probe_accuracy")
    )
    assert_png(tmp_path / "some.png")


@pytest.mark.parametrize(
    "history, kwargs, match",
    [
        ([1.0, 2.0], {}, "history"),
        ({"loss": [1.0]}, {"metrics": "loss"}, "metrics"),
        ({"loss": [1.0]}, {"metrics": ()}, "metrics"),
        ({"loss": [1.0]}, {"metrics": ("accuracy",)}, "None of the metrics"),
        ({"loss": [1.0]}, {"x_axis": "step"}, "x_axis"),
        ({"loss": [1.0]}, {"x_axis": "time"}, "time"),
        ({"loss": [1.0, 2.0], "time": [1.0]}, {"x_axis": "time"}, "one value per"),
        ({"loss": [[1.0, 2.0]]}, {}, "one per epoch"),
        ({"loss": ["a"]}, {}, "list of numbers"),
        ({"loss": [1.0]}, {"path": None}, "path"),
    ],
)
def test_plot_history_rejects_bad_arguments(tmp_path, history, kwargs, match):
    arguments = {"path": tmp_path / "out.png"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        visualization.plot_history(history, **arguments)


def test_a_missing_matplotlib_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        visualization.plot_history({"loss": [1.0]}, tmp_path / "out.png")
