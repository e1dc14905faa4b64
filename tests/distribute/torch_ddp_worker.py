"""Trains the tiny pretrainers of distribute_worker.py on the PyTorch backend,
in one process or as one process of a `torch.distributed` (gloo) group.

Run by tests/distribute/torch_ddp_test.py:

    python torch_ddp_worker.py --mode=single --out=single.npz
    RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p \\
        python torch_ddp_worker.py --mode=ddp --out=ddp_r.npz

`ddp` trains SimCLR and every other objective with the library's
distributed path, then SimCLR again with each of its three parts removed
in turn (the gather of negatives, the sum of the gradients, the batch-norm
sync). Every process writes its own losses (the logs, averaged across
processes) and weights (batch-norm statistics included), so that the test
can compare the processes with each other as well as with one process.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import distribute_worker  # noqa: E402
from distribute_worker import make_data, make_pretrainer, result_arrays, train  # noqa: E402

# SimCLR, a momentum objective with a queue, a prediction head with a
# momentum target, and the batch-statistics objectives.
OBJECTIVES = distribute_worker.OBJECTIVES


# Shuffled training: images, global batch and epochs.
SHUFFLED_IMAGES, SHUFFLED_BATCH, SHUFFLED_EPOCHS = 64, 16, 2


def evaluation(pretrainer, data, batch_size=8):
    """`evaluate()`'s loss, contrastive accuracy and Keras's `loss` over all
    the data (arrays, or a `tf.data` dataset with `batch_size=None`)."""
    import numpy as np

    logs = pretrainer.evaluate(
        data, batch_size=batch_size, verbose=0, return_dict=True
    )
    return np.array(
        [logs["contrastive_loss"], logs["contrastive_accuracy"], logs["loss"]]
    )


def evaluations(arrays, pretrainer, data):
    """`evaluate()` with every image in one global batch or another, and
    with a last, partial global batch: arrays of 24 images at batch 16 (a
    last batch of 8, 4 per process), and a dataset batched by 10 (a last
    batch of 4)."""
    import tensorflow as tf

    arrays["evaluation"] = evaluation(pretrainer, data)
    arrays["evaluation_partial_arrays"] = evaluation(pretrainer, data, 16)
    arrays["evaluation_partial_dataset"] = evaluation(
        pretrainer, tf.data.Dataset.from_tensor_slices(data).batch(10), None
    )


def train_probe_without_labels(arrays, data):
    """A linear probe trained without labels gets no gradient: with weight
    decay and momentum, only skipping it leaves it untouched."""
    pretrainer = make_pretrainer(num_classes=3, weight_decay=0.5)
    pretrainer.build((None, 8, 8, 3))
    arrays.update(
        result_arrays(
            "probe_initial", [], [w.numpy() for w in pretrainer.probe.weights]
        )
    )
    arrays.update(result_arrays("no_gradient", *train(pretrainer, data)))
    arrays.update(
        result_arrays(
            "probe_trained", [], [w.numpy() for w in pretrainer.probe.weights]
        )
    )


def run_single(out):
    import numpy as np

    data = make_data()
    arrays = {}
    pretrainer = make_pretrainer()
    arrays.update(result_arrays("simclr", *train(pretrainer, data)))
    evaluations(arrays, pretrainer, data)
    for objective in OBJECTIVES:
        pretrainer = make_pretrainer(objective=objective)
        arrays.update(result_arrays(objective, *train(pretrainer, data)))
    train_probe_without_labels(arrays, data)
    for objective in distribute_worker.CHUNKED_OBJECTIVES:
        distribute_worker.train_chunked(
            arrays, "single", objective, distribute_worker.SINGLE_CHUNK
        )
    np.savez(out, **arrays)


def train_shuffled(arrays, rank):
    """Trains on shuffled arrays, each process with its own global seed,
    as users seed processes; records the images each process trained on
    in each epoch."""
    import keras
    import numpy as np

    from distribute_worker import id_images, recording_views

    views, epoch_ends = recording_views()
    pretrainer = make_pretrainer(augmentation=views)
    pretrainer.build((None, 8, 8, 3))
    keras.utils.set_random_seed(100 + rank)
    pretrainer.fit(
        id_images(SHUFFLED_IMAGES),
        batch_size=SHUFFLED_BATCH,
        epochs=SHUFFLED_EPOCHS,
        shuffle=True,
        verbose=0,
        callbacks=[epoch_ends],
    )
    starts = [0] + epoch_ends.ends[:-1]
    for epoch, (start, stop) in enumerate(zip(starts, epoch_ends.ends)):
        arrays[f"shuffled/epoch_{epoch}"] = np.array(views.seen[start:stop])


def full_image_batches(arrays, rank):
    """What fit() takes in each process from a full-image pipeline (views
    made per image, in parallel, `deterministic=False`) of shuffled images,
    each process with its own global seed."""
    import keras

    from distribute_worker import epochs_of_ids, full_image_pipeline
    from keras_simclr import distribute

    keras.utils.set_random_seed(200 + rank)
    batches = full_image_pipeline(SHUFFLED_IMAGES, SHUFFLED_BATCH)
    local, _, _ = distribute.per_process_data(batches, None, None)
    for epoch, ids in enumerate(epochs_of_ids(local, SHUFFLED_EPOCHS, "view_a")):
        arrays[f"full_image/epoch_{epoch}"] = ids


def run_ddp(out):
    import numpy as np
    import torch.distributed as dist

    from keras_simclr import distribute
    from keras_simclr.distribute import _torch as _torch_distributed

    distribute.initialize_torch_processes()
    assert distribute.process_count() == 2
    data = make_data()
    arrays = {}
    # Process 1 starts from other weights: fit() gives it process 0's.
    pretrainer = make_pretrainer()
    pretrainer.build((None, 8, 8, 3))
    if dist.get_rank() == 1:
        for variable in pretrainer.weights:
            variable.assign(variable + 0.5)
    arrays.update(result_arrays("simclr", *train(pretrainer, data)))
    # Each process evaluates its share of every global batch.
    evaluations(arrays, pretrainer, data)
    for objective in OBJECTIVES:
        pretrainer = make_pretrainer(objective=objective)
        arrays.update(result_arrays(objective, *train(pretrainer, data)))
    train_probe_without_labels(arrays, data)
    train_shuffled(arrays, dist.get_rank())
    full_image_batches(arrays, dist.get_rank())
    for objective in distribute_worker.CHUNKED_OBJECTIVES:
        distribute_worker.train_chunked(
            arrays, "distributed", objective, distribute_worker.DEVICE_CHUNK
        )

    # The three parts, each removed in turn.
    gather, replica_id = distribute.cross_replica_concat, distribute.replica_id
    distribute.cross_replica_concat = lambda tensor: tensor
    distribute.replica_id = lambda: 0
    arrays.update(result_arrays("no_gather", *train(make_pretrainer(), data)))
    distribute_worker.train_chunked(
        arrays, "no_gather", "simclr", distribute_worker.DEVICE_CHUNK
    )
    distribute.cross_replica_concat, distribute.replica_id = gather, replica_id

    sum_gradients = _torch_distributed.sum_gradients
    _torch_distributed.sum_gradients = lambda gradients, variables: [
        g * _torch_distributed.world_size() for g in gradients
    ]
    arrays.update(result_arrays("no_gradient_sum", *train(make_pretrainer(), data)))
    _torch_distributed.sum_gradients = sum_gradients

    arrays.update(
        result_arrays("no_sync_bn", *train(make_pretrainer(global_bn=False), data))
    )

    # Models without the distributed step refuse the run.
    import keras

    import keras_simclr

    classifier = keras_simclr.models.SimCLRClassifier(
        keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()]),
        num_classes=3,
    )
    classifier.compile(optimizer="sgd")
    try:
        classifier.fit(data, np.arange(len(data)) % 3, batch_size=8, verbose=0)
        arrays["classifier_error"] = np.array("")
    except RuntimeError as error:
        arrays["classifier_error"] = np.array(str(error))
    dist.destroy_process_group()
    np.savez(out, **arrays)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["single", "ddp"])
    parser.add_argument("--out")
    args = parser.parse_args()
    {"single": run_single, "ddp": run_ddp}[args.mode](args.out)


if __name__ == "__main__":
    main()
