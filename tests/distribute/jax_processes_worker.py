"""One process of a JAX training group on 127.0.0.1, or its one-process reference.

Run by tests/distribute/jax_processes_test.py in subprocesses, so that
`jax.distributed` (which can be initialised once per process) cannot leak
into other tests. Each process of the group has one CPU device; together
they form the global device list of `keras.distribution.DataParallel()`.

    python jax_processes_worker.py --role=process --coordinator=127.0.0.1:PORT \
        --num_processes=2 --process_id=0 --backup_dir=DIR --out=process_0.npz
    python jax_processes_worker.py --role=reference --backup_dir=DIR \
        --out=reference.npz

A process trains the tiny pretrainer of tests/distribute/distribute_worker.py for 3
steps for each objective, fed a `tf.data` dataset of *global* batches (Keras
shards it per process) and, where the library splits arrays per process,
NumPy arrays with the global `batch_size`. It writes the loss of every step
(from the logs that process sees) and every weight (batch-norm statistics
included) to an `.npz` file, with what it learnt about the group: its
devices, its initial weights before any seed is set, the error of
`global_bn=False`, and the ablation `simclr_same`, where every process is
handed the same half of each global batch and the group must *not* match
the reference. It writes to `--backup_dir` a `BackupAndRestore` backup after
step 2 and, from process 0 alone, `save_weights()` and `save()`. The
reference trains the same models in one process on one device and reads
those files back.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "jax")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import distribute_worker  # noqa: E402
from distribute_worker import GLOBAL_BATCH  # noqa: E402

# Files the group writes, read back by the reference: Keras's backup after
# step 2, and save_weights() and save() from process 0 alone.
SAVED_FILES = {
    "backup": "latest.weights.h5",
    "process_0_weights": "process_0_only.weights.h5",
    "process_0_model": "process_0_only.keras",
}

# Shuffled data: images and global batch.
SHUFFLED_IMAGES, SHUFFLED_BATCH = 64, 16

# SimCLR, a momentum objective (its EMA target under sharding) and a
# batch-statistics objective (variance and covariance of the global batch).
OBJECTIVES = ("simclr", "byol", "vicreg")


def global_dataset(data, feed="sharded"):
    """Batches of `GLOBAL_BATCH` images; Keras shards them per process.

    With `feed="same"`, every batch is its first half twice, so that
    Keras's sharding hands each process the same images: the group sees
    the first half of each batch twice and the second half never.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(data).batch(
        GLOBAL_BATCH, drop_remainder=True
    )
    if feed == "same":
        half = GLOBAL_BATCH // 2
        dataset = dataset.map(
            lambda images: tf.concat([images[:half], images[:half]], axis=0)
        )
    return dataset


def train_dataset(pretrainer, dataset, callbacks=()):
    import numpy as np

    callback = distribute_worker.step_loss_callback(pretrainer.objective.key)
    pretrainer.fit(
        dataset, epochs=1, verbose=0, callbacks=[callback, *callbacks]
    )
    return np.array(callback.losses()), [
        np.asarray(w) for w in pretrainer.get_weights()
    ]


def weights_after_step(step):
    """A callback that keeps the weights after training step `step`."""
    import keras
    import numpy as np

    class WeightsAfterStep(keras.callbacks.Callback):
        weights = None

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == step:
                # Keras's JAX trainer holds the state outside the variables
                # until asked.
                self.model.jax_state_sync()
                self.weights = [np.asarray(w) for w in self.model.get_weights()]

    return WeightsAfterStep()


def run_reference(out, backup_dir):
    import numpy as np

    data = distribute_worker.make_data()
    arrays = {}
    for objective in OBJECTIVES:
        pretrainer = distribute_worker.make_pretrainer(objective=objective)
        callbacks = []
        if objective == "simclr":
            pretrainer.build((None, 8, 8, 3))
            arrays.update(
                distribute_worker.result_arrays(
                    "simclr_initial", [], pretrainer.get_weights()
                )
            )
            # The state that the backup written after step 2 holds.
            callbacks.append(weights_after_step(2))
        arrays.update(
            distribute_worker.result_arrays(
                objective,
                *train_dataset(pretrainer, global_dataset(data), callbacks),
            )
        )
        if callbacks:
            arrays.update(
                distribute_worker.result_arrays(
                    "simclr_2_steps", [], callbacks[0].weights
                )
            )
    if backup_dir:
        # What the group wrote, read back in one process without a
        # distribution.
        for prefix, name in SAVED_FILES.items():
            pretrainer = distribute_worker.make_pretrainer()
            pretrainer.build((None, 8, 8, 3))
            pretrainer.load_weights(os.path.join(backup_dir, name))
            arrays.update(
                distribute_worker.result_arrays(
                    prefix, [], pretrainer.get_weights()
                )
            )
    np.savez(out, **arrays)


def run_process(out, coordinator, num_processes, process_id, backup_dir):
    import jax
    import keras
    import numpy as np

    from keras_simclr import distribute

    distribute.initialize_jax_processes(coordinator, num_processes, process_id)
    arrays = {
        "process_index": np.array(jax.process_index()),
        "list_devices": np.array(keras.distribution.list_devices()),
        "local_devices": np.array([str(d) for d in jax.local_devices()]),
    }
    # Before any seed is set: Keras's initialize agrees on one global seed.
    probe = keras.layers.Dense(4)
    probe.build((None, 3))
    arrays["unseeded_kernel"] = np.asarray(probe.kernel)

    keras.distribution.set_distribution(keras.distribution.DataParallel())
    data = distribute_worker.make_data()
    for objective in OBJECTIVES:
        pretrainer = distribute_worker.make_pretrainer(objective=objective)
        callbacks = []
        if objective == "simclr" and backup_dir:
            from keras_simclr.callbacks import BackupAndRestore

            callbacks.append(
                BackupAndRestore(backup_dir, save_freq=2, delete_checkpoint=False)
            )
        arrays.update(
            distribute_worker.result_arrays(
                objective,
                *train_dataset(
                    pretrainer,
                    global_dataset(data),
                    callbacks,
                ),
            )
        )
        if objective == "simclr":
            arrays["devices_per_variable"] = np.array(
                [len(v.value.sharding.device_set) for v in pretrainer.weights]
            )
            arrays["fully_replicated"] = np.array(
                [v.value.sharding.is_fully_replicated for v in pretrainer.weights]
            )
            if backup_dir and process_id == 0:
                # Process 0 alone: every variable is replicated on every
                # device, so it holds all the values.
                with distribute.process_local_variables():
                    pretrainer.save_weights(
                        os.path.join(backup_dir, "process_0_only.weights.h5")
                    )
                    pretrainer.save(
                        os.path.join(backup_dir, "process_0_only.keras")
                    )
    if hasattr(distribute, "per_process_data"):
        # NumPy arrays and the global batch_size, as on one device.
        pretrainer = distribute_worker.make_pretrainer()
        arrays.update(
            distribute_worker.result_arrays(
                "simclr_arrays", *distribute_worker.train(pretrainer, data)
            )
        )
    # The ablation: each process given the same images.
    arrays.update(
        distribute_worker.result_arrays(
            "simclr_same",
            *train_dataset(
                distribute_worker.make_pretrainer(),
                global_dataset(data, feed="same"),
            ),
        )
    )
    try:
        train_dataset(
            distribute_worker.make_pretrainer(global_bn=False),
            global_dataset(data),
        )
        arrays["global_bn_false_error"] = np.array("")
    except ValueError as error:
        arrays["global_bn_false_error"] = np.array(str(error))
    arrays.update(shuffled_batches(process_id))
    np.savez(out, **arrays)


def shuffled_batches(process_id):
    """The image ids of each epoch that Keras gives this process to train
    on, each process seeded its own way (as users seed processes): from
    shuffled arrays (`fit(x, batch_size=..., shuffle=True)`) and from a
    full-image pipeline whose views are made in parallel out of order.
    Keras's JAX trainer feeds `fit()` the dataset that
    `DataParallel.distribute_dataset` makes of the pipeline of global
    batches: read the same here."""
    import keras

    from keras_simclr import distribute

    keras.utils.set_random_seed(100 + process_id)
    distribution = keras.distribution.distribution()
    arrays = {}
    pipelines = {
        "shuffled": distribute.per_process_data(
            distribute_worker.id_images(SHUFFLED_IMAGES), None, SHUFFLED_BATCH
        )[0],
        "full_image": distribute.per_process_data(
            distribute_worker.full_image_pipeline(SHUFFLED_IMAGES, SHUFFLED_BATCH),
            None,
            None,
        )[0],
    }
    for name, dataset in pipelines.items():
        key = "view_a" if name == "full_image" else None
        local = distribution.distribute_dataset(dataset)
        for epoch, ids in enumerate(distribute_worker.epochs_of_ids(local, 2, key)):
            arrays[f"{name}/epoch_{epoch}"] = ids
    return arrays


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["reference", "process"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--coordinator")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--process_id", type=int)
    parser.add_argument("--backup_dir")
    args = parser.parse_args()
    if args.role == "reference":
        run_reference(args.out, args.backup_dir)
    else:
        run_process(
            args.out,
            args.coordinator,
            args.num_processes,
            args.process_id,
            args.backup_dir,
        )


if __name__ == "__main__":
    main()
