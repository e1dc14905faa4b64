"""Pretrainers saved before unused arguments were refused still load.

`data/*.keras` were written by `data/make_saved_pretrainers.py` with the
earlier release, whose configs hold every argument (BYOL's file has
`temperature=0.1` and `queue_size=65536`, which BYOL never used).
"""

import os
import warnings

import keras
import numpy as np
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
    assert model.objective == objective
    if objective == "byol":
        # Arguments BYOL ignores are dropped, the ones it uses kept.
        assert model.temperature is None and model.queue_size is None
        assert model.momentum == 0.996
    else:
        assert model.temperature == 0.1 and model.momentum is None
    images = expected["images"]
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(images)["projection"]),
        expected[f"{objective}_projection"],
        rtol=1e-4,
        atol=1e-5,
    )
    # The optimizer state came back with the weights; training goes on.
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 2
    model.fit(images, np.arange(8) % 2, batch_size=4, epochs=1, verbose=0)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 4
