"""Trains a tiny SimCLRPretrainer for a few steps, alone or on several devices.

Run by tests/distribute/distribute_test.py in a subprocess, so that the device setup
(logical CPU devices, XLA host devices, a multi-worker cluster) cannot leak
into other tests. Writes, for each run, the contrastive loss after every step
and every weight (batch-norm statistics included) to an `.npz` file.

    python distribute_worker.py --mode=mirrored --out=result.npz
    python distribute_worker.py --mode=data_parallel --out=result.npz
    python distribute_worker.py --mode=multi_worker --out=result.npz

`mirrored` (TensorFlow, two logical CPU devices) and `data_parallel` (JAX, two
host devices; set XLA_FLAGS before starting) also run the one-device
reference in the same process. `mirrored` adds ablations: the same step with
the cross-replica gather, the loss scaling or the batch-norm sync removed,
which must *not* match the reference. `multi_worker` is one worker of a
MultiWorkerMirroredStrategy cluster described by TF_CONFIG;
`multi_worker_data` records which images such a worker gets of a shuffled
full-image pipeline. The helpers that make images with ids and read them
back serve the process tests (torch_ddp_worker.py, jax_processes_worker.py).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GLOBAL_BATCH = 8
STEPS = 3
LEARNING_RATE = 0.01


def make_data():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=(GLOBAL_BATCH * STEPS, 8, 8, 3)).astype("float32")


def fixed_views():
    """A deterministic stand-in for the random augmentation: the first call
    of a step gives the images, the second their mirror image at half
    contrast. Random views would differ between one device and several (each
    replica draws its own), and a dict of views cannot be fed to
    MultiWorkerMirroredStrategy (Keras 3.15 reduces the first distributed
    batch with `strategy.reduce`, which fails on a dict there)."""
    import keras

    class FixedViews(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def call(self, images):
            # Counted while the step is traced: view_a, then view_b.
            self.calls += 1
            if self.calls % 2:
                return images
            return 0.5 * keras.ops.flip(images, axis=2)

        def compute_output_shape(self, input_shape):
            return input_shape

    return FixedViews()


def id_images(count):
    """`count` images, image `i` filled with the value `(i + 1) / 100`, so
    that the images a step trains on can be read back (`image_ids`)."""
    import numpy as np

    values = (np.arange(count, dtype="float32") + 1) / 100
    return np.broadcast_to(values[:, None, None, None], (count, 8, 8, 3)).copy()


def image_ids(images):
    """The ids of `id_images` in a batch of them (or of views of them
    that keep the top left pixel)."""
    import numpy as np

    return np.round(np.asarray(images)[:, 0, 0, 0] * 100).astype("int64") - 1


def recording_views():
    """`fixed_views` that also records the ids of the images of every
    training step it runs eagerly (the PyTorch backend's steps), and a
    callback that marks where each epoch ends in that record."""
    import keras

    class RecordingViews(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.seen = []
            self.eager_calls = 0

        def call(self, images):
            if not isinstance(images, keras.KerasTensor):
                # view_a, then view_b of the same images: record once.
                if self.eager_calls % 2 == 0:
                    self.seen.extend(image_ids(keras.ops.convert_to_numpy(images)))
                self.eager_calls += 1
            if self.eager_calls % 2:
                return images
            return 0.5 * keras.ops.flip(images, axis=2)

        def compute_output_shape(self, input_shape):
            return input_shape

    views = RecordingViews()

    class EpochEnds(keras.callbacks.Callback):
        ends = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(len(views.seen))

    return views, EpochEnds()


def epochs_of_ids(dataset, epochs, key=None):
    """The image ids of each epoch of `dataset` (a pass each), in order."""
    import numpy as np

    passes = []
    for _ in range(epochs):
        ids = []
        for element in dataset.as_numpy_iterator():
            images = element[0] if isinstance(element, tuple) else element
            if key is not None:
                images = images[key]
            ids.extend(image_ids(images))
        passes.append(np.array(ids, "int64"))
    return passes


def full_image_pipeline(num_images, batch_size):
    """`pretraining_dataset` of `id_images`, shuffled (seed 5), each image's
    views made before batching, in parallel, with `deterministic=False`
    and a random delay per image, so that a map that may yield out of
    order does."""
    import time

    import tensorflow as tf

    from keras_simclr import data

    def slow_view(image):
        delay = tf.py_function(
            lambda seconds: time.sleep(float(seconds)) or 0.0,
            [tf.random.uniform([], 0.0, 0.004)],
            tf.float32,
        )
        delay.set_shape([])
        return image + 0.0 * delay

    return data.pretraining_dataset(
        data.from_arrays(id_images(num_images)),
        batch_size,
        augmentation=slow_view,
        augment_per_image=True,
        deterministic=False,
        shuffle_buffer=num_images,
        seed=5,
    )


# Cached gradients (`gradient_chunk_size`): 2 chunks a step. A chunk holds
# that many images on each device, so one device's chunks of 4 hold what
# two devices' chunks of 2 hold together (image i in chunk i % 2 of its
# device's 4 images is image i in chunk i % 2 of the 8).
CHUNKED_OBJECTIVES = ("simclr", "supcon", "barlow_twins")
SINGLE_CHUNK, DEVICE_CHUNK = 4, 2


def train_chunked(arrays, prefix, objective, chunk, make=None, as_dataset=False):
    """Trains `objective` with `gradient_chunk_size=chunk` (in the current
    strategy or distribution, `make` wrapping the construction), results
    under `chunked/<objective>/<prefix>`."""
    make = make or (lambda build: build())
    pretrainer = make(
        lambda: make_pretrainer(objective=objective, gradient_chunk_size=chunk)
    )
    losses, weights = train(pretrainer, make_data(), as_dataset)
    arrays.update(result_arrays(f"chunked/{objective}/{prefix}", losses, weights))


# "simclr_memory": NT-Xent with SimCLR v2's queue of momentum negatives.
OBJECTIVES = (
    "supcon", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "unigrad",
    "simclr_memory",
)


def loss_name(objective):
    return "contrastive_loss" if objective == "simclr" else f"{objective}_loss"


def make_pretrainer(
    global_bn=True, objective="simclr", num_classes=None, weight_decay=None,
    augmentation=None, gradient_chunk_size=None,
):
    import keras

    import keras_simclr

    keras.utils.set_random_seed(0)
    encoder = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="encoder",
    )
    pretrainer = keras_simclr.models.SimCLRPretrainer(
        encoder=encoder,
        augmentation=augmentation or fixed_views(),
        projection_head=keras_simclr.layers.ProjectionHead(
            hidden_dim=16, output_dim=8, num_layers=2
        ),
        global_bn=global_bn,
        objective=keras_simclr.objectives.get(
            objective.replace("_memory", ""), **objective_arguments(objective)
        ),
        num_classes=num_classes,
        gradient_chunk_size=gradient_chunk_size,
    )
    pretrainer.compile(
        optimizer=keras.optimizers.SGD(
            LEARNING_RATE, momentum=0.9, weight_decay=weight_decay
        )
    )
    return pretrainer


def objective_arguments(objective):
    import keras_simclr

    arguments = {}
    if objective in ("simclr", "supcon", "moco", "simclr_memory"):
        arguments["temperature"] = 0.5
    if objective in ("byol", "simsiam"):
        arguments["prediction_head"] = keras_simclr.layers.PredictionHead(
            hidden_dim=16, name="prediction_head"
        )
    if objective in ("moco", "byol", "unigrad", "simclr_memory"):
        arguments["momentum"] = 0.9
    if objective in ("moco", "simclr_memory"):
        arguments["queue_size"] = 4 * GLOBAL_BATCH
    if objective == "simclr_memory":
        arguments["memory_queue"] = True
    return arguments


def step_loss_callback(objective="simclr"):
    """A callback that collects each step's loss from Keras's running means."""
    import keras

    class StepLosses(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.running = []

        def on_train_batch_end(self, batch, logs=None):
            self.running.append(float(logs[loss_name(objective)]))

        def losses(self):
            # Step k's loss from the running means after steps k and k - 1.
            return [
                mean * (k + 1) - (self.running[k - 1] * k if k else 0.0)
                for k, mean in enumerate(self.running)
            ]

    return StepLosses()


def train(pretrainer, data, as_dataset=False):
    """Trains 3 steps on `data` given as arrays, or with `as_dataset` as a
    `tf.data` dataset whose batches have no static size."""
    import numpy as np

    callback = step_loss_callback(pretrainer.objective.key)
    labels = None
    if pretrainer.objective.key == "supcon":
        labels = np.arange(len(data)) % 3
    batch_size = GLOBAL_BATCH
    if as_dataset:
        import tensorflow as tf

        elements = data if labels is None else (data, labels)
        data = tf.data.Dataset.from_tensor_slices(elements).batch(GLOBAL_BATCH)
        labels = batch_size = None
    pretrainer.fit(
        data,
        labels,
        batch_size=batch_size,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[callback],
    )
    return np.array(callback.losses()), [
        np.asarray(w) for w in pretrainer.get_weights()
    ]


def result_arrays(prefix, losses, weights):
    arrays = {f"{prefix}/losses": losses}
    for index, weight in enumerate(weights):
        arrays[f"{prefix}/weight_{index}"] = weight
    return arrays


def run_mirrored(out):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import numpy as np

    from keras_simclr import distribute

    data = make_data()
    arrays = {}
    arrays.update(result_arrays("single", *train(make_pretrainer(), data)))

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2

    def distributed(prefix, global_bn=True):
        with strategy.scope():
            pretrainer = make_pretrainer(global_bn=global_bn)
        arrays.update(result_arrays(prefix, *train(pretrainer, data)))
        return pretrainer

    pretrainer = distributed("distributed")
    # Global batch norm is for training only: never saved in the config.
    layers = [
        layer
        for layer in pretrainer.encoder.layers + [pretrainer.projection_head]
        if "batch_normalization" in layer.name
    ]
    arrays["synchronized_after_fit"] = np.array(
        [layer.synchronized for layer in layers], dtype=bool
    )

    originals = (
        distribute.cross_replica_concat,
        distribute.replica_id,
        distribute.scale_loss,
    )
    distribute.cross_replica_concat = lambda tensor: tensor
    distribute.replica_id = lambda: 0
    distributed("no_gather")
    distribute.cross_replica_concat, distribute.replica_id, _ = originals

    distribute.scale_loss = lambda loss: loss
    distributed("no_scale")
    distribute.scale_loss = originals[2]

    distributed("no_sync_bn", global_bn=False)

    # Every other objective, on one device and on two.
    for objective in OBJECTIVES:
        single = make_pretrainer(objective=objective)
        arrays.update(result_arrays(f"{objective}/single", *train(single, data)))
        with strategy.scope():
            pretrainer = make_pretrainer(objective=objective)
        arrays.update(
            result_arrays(f"{objective}/distributed", *train(pretrainer, data))
        )

    # Cached gradients on each replica, and the ablation: without the
    # gather, the cache holds each replica's own loss's gradient. The
    # batches of a dataset have no static size: the chunks of such a step
    # are counted before training, from each replica's share.
    def in_strategy(build):
        with strategy.scope():
            return build()

    for objective in CHUNKED_OBJECTIVES:
        train_chunked(arrays, "single", objective, SINGLE_CHUNK)
        train_chunked(
            arrays, "distributed", objective, DEVICE_CHUNK, in_strategy,
            as_dataset=True,
        )
    distribute.cross_replica_concat = lambda tensor: tensor
    distribute.replica_id = lambda: 0
    train_chunked(arrays, "no_gather", "simclr", DEVICE_CHUNK, in_strategy)
    distribute.cross_replica_concat, distribute.replica_id, _ = originals
    np.savez(out, **arrays)


def run_data_parallel(out):
    import jax
    import keras
    import numpy as np

    assert len(jax.devices()) == 2, jax.devices()
    data = make_data()
    arrays = {}
    arrays.update(result_arrays("single", *train(make_pretrainer(), data)))
    # BYOL: prediction head, momentum target and its EMA under sharding.
    arrays.update(
        result_arrays("byol/single", *train(make_pretrainer(objective="byol"), data))
    )
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    pretrainer = make_pretrainer()
    arrays.update(result_arrays("distributed", *train(pretrainer, data)))
    arrays.update(
        result_arrays(
            "byol/distributed", *train(make_pretrainer(objective="byol"), data)
        )
    )
    keras.distribution.set_distribution(None)
    for objective in CHUNKED_OBJECTIVES:
        train_chunked(arrays, "single", objective, SINGLE_CHUNK)
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    for objective in CHUNKED_OBJECTIVES:
        train_chunked(arrays, "distributed", objective, DEVICE_CHUNK)
    # The variables really live on both devices.
    arrays["devices_per_variable"] = np.array(
        [len(v.value.sharding.device_set) for v in pretrainer.weights]
    )
    # Per-device batch norm cannot be had here, and is refused.
    try:
        train(make_pretrainer(global_bn=False), data)
        arrays["global_bn_false_error"] = np.array("")
    except ValueError as error:
        arrays["global_bn_false_error"] = np.array(str(error))
    np.savez(out, **arrays)


def run_multi_worker(out):
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import numpy as np

    assert strategy.num_replicas_in_sync == 2
    data = make_data()

    def dataset_fn(context):
        local = context.get_per_replica_batch_size(GLOBAL_BATCH)
        start = context.input_pipeline_id * local
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH)
        # This worker's slice of every global batch, as MirroredStrategy
        # would split it.
        return dataset.map(lambda images: images[start : start + local])

    with strategy.scope():
        pretrainer = make_pretrainer()
    callback = step_loss_callback()
    pretrainer.fit(
        strategy.distribute_datasets_from_function(dataset_fn),
        epochs=1,
        steps_per_epoch=STEPS,
        verbose=0,
        callbacks=[callback],
    )
    weights = [np.asarray(w) for w in pretrainer.get_weights()]
    np.savez(out, **result_arrays("distributed", np.array(callback.losses()), weights))


def run_multi_worker_data(out):
    """One worker of a MultiWorkerMirroredStrategy cluster: the image ids
    of each epoch that the strategy gives this worker of a shuffled
    full-image pipeline, each worker with its own global seed."""
    import json

    import keras
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    keras.utils.set_random_seed(100 + index)
    # Keras's TensorFlow trainer distributes a dataset so: each worker
    # takes its replicas' slices of every global batch.
    distributed = strategy.experimental_distribute_dataset(
        full_image_pipeline(64, 16)
    )
    arrays = {}
    for epoch in range(2):
        ids = []
        for batch in distributed:
            for local in strategy.experimental_local_results(batch):
                ids.extend(image_ids(local["view_a"]))
        arrays[f"full_image/epoch_{epoch}"] = np.array(ids, "int64")
    np.savez(out, **arrays)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--mode",
        choices=["mirrored", "data_parallel", "multi_worker", "multi_worker_data"],
    )
    parser.add_argument("--out")
    args = parser.parse_args()
    {
        "mirrored": run_mirrored,
        "data_parallel": run_data_parallel,
        "multi_worker": run_multi_worker,
        "multi_worker_data": run_multi_worker_data,
    }[args.mode](args.out)


if __name__ == "__main__":
    main()
