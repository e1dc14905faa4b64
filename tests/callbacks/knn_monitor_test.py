import csv
import math

import keras
import numpy as np
import pytest

from keras_simclr.callbacks import StopAtStep
from keras_simclr.callbacks.knn_monitor import KNNMonitor
from keras_simclr.evaluation import knn_accuracy
from keras_simclr.layers import ProjectionHead
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.objectives import SimCLR

NUM_CLASSES = 6


def labelled_images(num_images, seed):
    """Six well-separated classes of 4x4 one-channel images."""
    centers = np.random.default_rng(7).normal(size=(NUM_CLASSES, 4, 4, 1)) * 4.0
    rng = np.random.default_rng(seed)
    labels = np.arange(num_images) % NUM_CLASSES
    images = centers[labels] + rng.normal(size=(num_images, 4, 4, 1)) * 0.3
    return images.astype("float32"), labels


def tiny_encoder():
    return keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(8)],
        name="encoder",
    )


def make_pretrainer():
    # The images themselves as both views: these tests follow the monitor,
    # not what the encoder learns.
    pretrainer = SimCLRPretrainer(
        encoder=tiny_encoder(),
        augmentation=keras.layers.Identity(),
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
        objective=SimCLR(temperature=0.5),
    )
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.1))
    return pretrainer


TRAIN = labelled_images(36, seed=0)
TEST = labelled_images(18, seed=1)


def test_logs_the_knn_accuracy_of_the_pretrainer_encoder():
    pretrainer = make_pretrainer()
    monitor = KNNMonitor(TRAIN, TEST, k=10)
    history = pretrainer.fit(
        TRAIN[0], batch_size=12, epochs=2, callbacks=[monitor], verbose=0
    )
    expected = knn_accuracy(pretrainer.encoder, TRAIN, TEST, k=10)
    assert history.history["knn_accuracy"][-1] == pytest.approx(expected["top1"])
    assert history.history["knn_top5"][-1] == pytest.approx(expected["top5"])
    assert len(history.history["knn_accuracy"]) == 2
    assert sorted(monitor.results) == [0, 1]
    assert monitor.results[1] == pytest.approx(expected)
    # The classes are well separated: the features keep them apart.
    assert expected["top1"] > 0.9


def make_classifier():
    """A supervised model and its encoder, for a fast `fit()`."""
    encoder = tiny_encoder()
    model = keras.Sequential([encoder, keras.layers.Dense(NUM_CLASSES)])
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, encoder


def test_every_n_epochs_and_the_last_epoch():
    model, encoder = make_classifier()
    monitor = KNNMonitor(TRAIN, TEST, encoder=encoder, k=10, every_n_epochs=2)
    history = model.fit(
        *TRAIN, batch_size=12, epochs=5, callbacks=[monitor], verbose=0
    )
    logged = history.history["knn_accuracy"]
    assert len(logged) == 5
    assert [math.isnan(value) for value in logged] == [
        True, False, True, False, False
    ]
    assert sorted(monitor.results) == [1, 3, 4]
    assert logged[3] == pytest.approx(monitor.results[3]["top1"])
    assert math.isnan(history.history["knn_top5"][0])


def test_evaluates_when_training_stops_early():
    model, encoder = make_classifier()
    monitor = KNNMonitor(TRAIN, TEST, encoder=encoder, k=10, every_n_epochs=10)
    # 3 steps per epoch: the fifth step ends training inside epoch 1.
    history = model.fit(
        *TRAIN,
        batch_size=12,
        epochs=20,
        callbacks=[StopAtStep(5), monitor],
        verbose=0,
    )
    assert history.epoch == [0, 1]
    assert sorted(monitor.results) == [1]
    assert not math.isnan(history.history["knn_accuracy"][1])


def test_later_callbacks_see_the_keys(tmp_path):
    path = str(tmp_path / "log.csv")
    model, encoder = make_classifier()
    monitor = KNNMonitor(TRAIN, TEST, encoder=encoder, k=5, every_n_epochs=2)
    model.fit(
        *TRAIN,
        batch_size=12,
        epochs=2,
        verbose=0,
        callbacks=[monitor, keras.callbacks.CSVLogger(path)],
    )
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [row["knn_accuracy"] for row in rows][0] == "nan"
    assert float(rows[1]["knn_accuracy"]) == pytest.approx(
        knn_accuracy(encoder, TRAIN, TEST, k=5)["top1"]
    )
    assert "knn_top5" in rows[0]


def test_accepts_datasets_and_infers_the_classes():
    tf = pytest.importorskip("tensorflow")
    model = keras.Sequential([tiny_encoder(), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    encoder = model.layers[0]
    train = tf.data.Dataset.from_tensor_slices(TRAIN).batch(10)
    test = tf.data.Dataset.from_tensor_slices(TEST)
    monitor = KNNMonitor(train, test, encoder=encoder, k=5)
    history = model.fit(
        TRAIN[0], TRAIN[1].astype("float32"), epochs=1, verbose=0,
        callbacks=[monitor],
    )
    expected = knn_accuracy(encoder, TRAIN, TEST, k=5)
    assert history.history["knn_accuracy"] == pytest.approx([expected["top1"]])
    assert history.history["knn_top5"] == pytest.approx([expected["top5"]])


def test_no_top5_with_five_classes_or_fewer():
    labels = TRAIN[1] % 3
    model = keras.Sequential([tiny_encoder(), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    monitor = KNNMonitor(
        (TRAIN[0], labels), (TRAIN[0], labels), encoder=model.layers[0], k=3
    )
    history = model.fit(
        TRAIN[0], labels.astype("float32"), epochs=1, verbose=0,
        callbacks=[monitor],
    )
    assert "knn_accuracy" in history.history
    assert "knn_top5" not in history.history


def test_needs_an_encoder():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten()])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    with pytest.raises(ValueError, match="encoder="):
        model.fit(
            TRAIN[0], np.zeros((36, 16)), epochs=1, verbose=0,
            callbacks=[KNNMonitor(TRAIN, TEST)],
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"every_n_epochs": 1.5}, "every_n_epochs"),
        ({"k": 0}, "`k`"),
        ({"temperature": -0.1}, "temperature"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_classes": 1}, "num_classes"),
        ({"chunk_size": True}, "chunk_size"),
        ({"encoder": "resnet"}, "encoder"),
        ({"train_data": TRAIN[0]}, r"\(images, labels\)"),
        ({"test_data": (TEST[0], TEST[1][:3])}, "labels for"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    arguments = {"train_data": TRAIN, "test_data": TEST}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        KNNMonitor(**arguments)


# === The images' range, checked when training begins (issue 25, item 5) ===


def test_refuses_images_on_another_scale_before_the_first_epoch():
    import re

    from keras_simclr.layers import SimCLRAugmentation

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(12, 4, 4, 1)).astype("float32")
    labels = np.arange(12) % 3
    # The encoder declares no range; the augmentation does.
    pretrainer = SimCLRPretrainer(
        encoder=tiny_encoder(),
        augmentation=SimCLRAugmentation(4, preset="cifar", seed=0),
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
    )
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.1))
    pretrainer.build(pixels.shape)
    before = [keras.ops.convert_to_numpy(w).copy() for w in pretrainer.weights]
    for train, test, argument, scale in (
        ((pixels / 255.0, labels), (pixels, labels), "train_data[0]", "[0, 1]"),
        ((pixels, labels), (pixels / 127.5 - 1.0, labels), "test_data[0]", "[-1, 1]"),
    ):
        message = (
            f"`{argument}` holds images in {scale} but `value_range` is "
            "(0.0, 255.0) (declared by the pretrainer's augmentation)"
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            pretrainer.fit(
                pixels, batch_size=6, epochs=1, verbose=0,
                callbacks=[KNNMonitor(train, test, k=3)],
            )
    # Refused before any step.
    for old, new in zip(before, pretrainer.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))
    history = pretrainer.fit(
        pixels, batch_size=6, epochs=1, verbose=0,
        callbacks=[KNNMonitor((pixels, labels), (pixels, labels), k=3)],
    )
    assert 0.0 <= history.history["knn_accuracy"][0] <= 1.0
