"""Writes the `.keras` files that `saved_pretrainers_test.py` loads.

They were written by keras_simclr 0.1.0 (commit fef1db0), before the pretrainer refused the
arguments an objective does not use, so they hold every argument at its old
default (`temperature=0.1` for BYOL, `queue_size=65536` for SimCLR...).
Run from the repository root with that version installed:
`KERAS_BACKEND=tensorflow python tests/models/data/make_saved_pretrainers.py`.
"""

import os

import keras
import numpy as np

import keras_simclr

HERE = os.path.dirname(os.path.abspath(__file__))


def encoder():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="encoder")


def main():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 8, 8, 3)).astype("float32")
    labels = np.arange(8) % 2
    outputs = {"images": images}
    for objective in ("simclr", "byol"):
        kwargs = {}
        if objective == "byol":
            kwargs["prediction_head"] = keras_simclr.layers.PredictionHead(
                hidden_dim=6, name="prediction_head"
            )
        model = keras_simclr.models.SimCLRPretrainer(
            encoder(),
            projection_head=keras_simclr.layers.ProjectionHead(
                hidden_dim=6, output_dim=4
            ),
            num_classes=2,
            objective=objective,
            **kwargs,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
        model.save(os.path.join(HERE, f"{objective}_pretrainer.keras"))
        outputs[f"{objective}_projection"] = keras.ops.convert_to_numpy(
            model(images)["projection"]
        )
    np.savez(os.path.join(HERE, "saved_pretrainers.npz"), **outputs)


if __name__ == "__main__":
    main()
