"""Trains the tiny pretrainers of distribute_worker.py on the PyTorch backend,
in one process or as one process of a `torch.distributed` (gloo) group.

Run by tests/torch_ddp_test.py:

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


def evaluation(pretrainer, data):
    """`evaluate()`'s loss and contrastive accuracy over all the data."""
    import numpy as np

    logs = pretrainer.evaluate(data, batch_size=8, verbose=0, return_dict=True)
    return np.array([logs["contrastive_loss"], logs["contrastive_accuracy"]])


def run_single(out):
    import numpy as np

    data = make_data()
    arrays = {}
    pretrainer = make_pretrainer()
    arrays.update(result_arrays("simclr", *train(pretrainer, data)))
    arrays["evaluation"] = evaluation(pretrainer, data)
    for objective in OBJECTIVES:
        pretrainer = make_pretrainer(objective=objective)
        arrays.update(result_arrays(objective, *train(pretrainer, data)))
    np.savez(out, **arrays)


def run_ddp(out):
    import numpy as np
    import torch.distributed as dist

    from keras_simclr import _torch_distributed, distribute

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
    arrays["evaluation"] = evaluation(pretrainer, data)
    for objective in OBJECTIVES:
        pretrainer = make_pretrainer(objective=objective)
        arrays.update(result_arrays(objective, *train(pretrainer, data)))

    # The three parts, each removed in turn.
    gather, replica_id = distribute.cross_replica_concat, distribute.replica_id
    distribute.cross_replica_concat = lambda tensor: tensor
    distribute.replica_id = lambda: 0
    arrays.update(result_arrays("no_gather", *train(make_pretrainer(), data)))
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
