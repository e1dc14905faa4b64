"""Pretrainers saved before unused arguments were refused still load.

`data/*.keras` were written by `data/make_saved_pretrainers.py` with the
earlier release, whose configs hold every argument (BYOL's file has
`temperature=0.1` and `queue_size=65536`, which BYOL never used).
"""

import io
import os
import warnings
import zipfile

import keras
import numpy as np
import h5py
import pytest
from keras import ops

import keras_simclr  # noqa: F401  (registers the serialisable classes)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.mark.parametrize("objective", ["simclr", "byol"])
def test_a_file_of_the_earlier_release_loads_and_trains(objective):
    expected = np.load(os.path.join(DATA, "saved_pretrainers.npz"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(
            os.path.join(DATA, f"{objective}_pretrainer.keras")
        )
    assert [str(w.message) for w in caught] == []
    assert model.objective.key == objective
    if objective == "byol":
        # Arguments BYOL ignores are dropped, the ones it uses kept.
        assert not hasattr(model.objective, "temperature")
        assert not hasattr(model.objective, "queue_size")
        assert model.objective.momentum == 0.996
        # The momentum target and its step count came back too.
        assert float(ops.convert_to_numpy(model.objective.target_updates)) == 2.0
    else:
        assert model.objective.temperature == 0.1
        assert not model.objective.memory_queue and model.objective.momentum is None
    images = expected["images"]
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(images)["projection"]),
        expected[f"{objective}_projection"],
        rtol=1e-4,
        atol=1e-5,
    )
    # The optimizer state came back with the weights; training goes on.
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 2
    # Saved without an augmentation: views go in as a dict.
    views = {"view_a": images, "view_b": images[:, :, ::-1].copy()}
    model.fit(views, np.arange(8) % 2, batch_size=4, epochs=1, verbose=0)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 4


def saved_weights(objective, path):
    """The arrays the earlier release wrote at `path` of its weights file."""
    archive = zipfile.ZipFile(os.path.join(DATA, f"{objective}_pretrainer.keras"))
    with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
        group = f[path]["vars"]
        return [np.array(group[str(i)]) for i in range(len(group))]


def test_byol_networks_and_state_come_from_where_the_earlier_release_put_them():
    model = keras.saving.load_model(os.path.join(DATA, "byol_pretrainer.keras"))
    objective = model.objective
    conv, batch_norm = [l for l in objective.target_encoder.layers if l.weights]
    # The earlier release kept them as the pretrainer's own layers, saved by
    # class name in the order it tracked them: prediction head, target
    # encoder ("functional"), target head ("projection_head"; the online
    # head came after it, "projection_head_1").
    for layer, path in [
        (objective.prediction_head.hidden, "layers/prediction_head/hidden"),
        (conv, "layers/functional/layers/conv2d"),
        (batch_norm, "layers/functional/layers/batch_normalization"),
        (
            objective.target_projection_head.dense_layers[0],
            "layers/projection_head/dense_layers/dense",
        ),
        (
            model.projection_head.dense_layers[0],
            "layers/projection_head_1/dense_layers/dense",
        ),
    ]:
        expected = saved_weights("byol", path)
        assert len(layer.weights) == len(expected), path
        for weight, value in zip(layer.weights, expected):
            np.testing.assert_array_equal(
                ops.convert_to_numpy(weight), value, err_msg=path
            )
    # The EMA step count was the last of the pretrainer's own variables.
    own = saved_weights("byol", "/")
    assert float(ops.convert_to_numpy(objective.target_updates)) == own[-1] == 2.0
    # The two heads differ, so the comparison above tells them apart.
    online = saved_weights("byol", "layers/projection_head_1/dense_layers/dense")[0]
    target = saved_weights("byol", "layers/projection_head/dense_layers/dense")[0]
    assert np.abs(online - target).max() > 1.0
