"""`SimCLRPretrainer.fit` refuses, before training and in the user's terms,
class weights and batches that do not split evenly over the replicas of a
`tf.distribute` strategy (keras_simclr/models/_batch_checks.py)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from keras_simclr.models import SimCLRPretrainer
from tests.testing import tiny_encoder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def views(n, seed=0):
    rng = np.random.default_rng(seed)
    view_a = rng.uniform(0.0, 255.0, (n, 8, 8, 3)).astype("float32")
    return {"view_a": view_a, "view_b": view_a[:, ::-1].copy()}


def test_class_weight_is_refused_under_its_own_name():
    model = SimCLRPretrainer(
        encoder=tiny_encoder(),
        augmentation=None,
        projection_head=keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=6),
        num_classes=2,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError) as caught:
        model.fit(
            views(8), np.arange(8) % 2, class_weight={0: 1.0, 1: 3.0},
            batch_size=8, verbose=0,
        )
    assert str(caught.value) == (
        "SimCLRPretrainer does not take class weights: each image's loss "
        "depends on the whole batch, and the labels only train the linear "
        "probe. Received: class_weight={0: 1.0, 1: 3.0}"
    )
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0


# Under MirroredStrategy over two logical CPUs, in a process of its own (the
# logical devices must be set before TensorFlow starts).
MIRRORED_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
import keras
import keras_simclr
from tests.testing import tiny_encoder

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = keras_simclr.models.SimCLRPretrainer(
        encoder=tiny_encoder(),
        augmentation=None,
        projection_head=keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=6),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (48, 8, 8, 3)).astype("float32")
results = {}
for name, n, batch_size in (
    ("uneven_last_batch", 47, 16), ("odd_batch", 48, 15), ("even", 48, 16),
):
    x = {"view_a": images[:n], "view_b": images[:n, ::-1]}
    try:
        model.fit(x, batch_size=batch_size, epochs=1, verbose=0)
        results[name] = {"steps": int(model.optimizer.iterations.numpy())}
    except ValueError as error:
        results[name] = {
            "error": str(error), "steps": int(model.optimizer.iterations.numpy())
        }
json.dump(results, open(sys.argv[1], "w"))
"""


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="a tf.distribute strategy"
)
def test_batches_that_do_not_split_over_the_replicas_are_refused(tmp_path):
    out = tmp_path / "results.json"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(out)],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["uneven_last_batch"] == {
        "error": (
            "The last batch of `x` holds 15 images (47 images at batch_size=16), "
            "which do not split evenly over the 2 replicas of the distribution "
            "strategy (a remainder of 1): every batch must, as the loss gathers "
            "equal shares from all replicas. Train on the first 32 images "
            "(x[:32]), or on a number of images whose remainder at "
            "batch_size=16 is a multiple of 2. Received: 47 images, batch_size=16"
        ),
        "steps": 0,
    }
    assert results["odd_batch"]["steps"] == 0
    assert results["odd_batch"]["error"].startswith(
        "`batch_size` is the global batch and must split evenly over the 2 "
        "replicas of the distribution strategy"
    )
    assert results["odd_batch"]["error"].endswith(
        "Received: batch_size=15, which leaves a remainder of 1 over 2 "
        "replicas. Use a multiple of 2, such as 14."
    )
    # A batch that splits trains: 3 steps of 16.
    assert results["even"] == {"steps": 3}
