"""`keras_simclr.distribute` on the TensorFlow backend (`tf.distribute`).

Each replica of a `MirroredStrategy`, `MultiWorkerMirroredStrategy` or
`TPUStrategy` runs the step on its slice of the batch: the projections are
gathered across replicas, batch norm is told to synchronise its moments
(Keras's `synchronized`), and Keras splits and reduces the rest. The
strategies split the data themselves: there is one process as far as the
library is concerned.
"""

import contextlib
import json
import os

import tensorflow as tf

from keras_simclr import _keras_compat
from keras_simclr.distribute import _common
from keras_simclr.distribute._local import barrier
from keras_simclr.distribute._local import broadcast_seed
from keras_simclr.distribute._local import per_process_data
from keras_simclr.distribute._local import process_count
from keras_simclr.distribute._local import process_index
from keras_simclr.distribute._local import process_local_variables
from keras_simclr.distribute._local import torch_process_count

__all__ = [
    "barrier",
    "broadcast_seed",
    "cross_replica_concat",
    "global_batch_norm",
    "model_scope",
    "num_data_parallel_devices",
    "num_replicas_in_sync",
    "per_process_data",
    "process_count",
    "process_index",
    "process_local_variables",
    "reducible_logs",
    "replica_id",
    "torch_process_count",
    "workers_share_the_batches",
]


def _replica_context():
    """The replica context of a step with several replicas, else `None`."""
    if not tf.distribute.has_strategy():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync < 2:
        # `None` in a cross-replica context (e.g. while Keras builds the
        # model under `strategy.scope()`).
        return None
    return context


def num_replicas_in_sync(model=None):
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        if not tf.distribute.has_strategy():
            return 1
        strategy = tf.distribute.get_strategy()
    return int(strategy.num_replicas_in_sync)


def num_data_parallel_devices(model=None):
    return num_replicas_in_sync(model)


def replica_id():
    context = _replica_context()
    if context is None:
        return 0
    return context.replica_id_in_sync_group


def cross_replica_concat(tensor):
    # An all_reduce(SUM) of a tensor holding this replica's slice at its own
    # position and zeros elsewhere (the official SimCLR TPU route): every
    # strategy implements it, TPUStrategy included, the shapes stay static,
    # and its backward pass sums the gradients of all replicas.
    context = _replica_context()
    if context is None:
        return tensor
    num_replicas = context.num_replicas_in_sync
    one_hot = tf.one_hot(
        context.replica_id_in_sync_group, num_replicas, dtype=tensor.dtype
    )
    one_hot = tf.reshape(one_hot, [num_replicas] + [1] * len(tensor.shape))
    scattered = one_hot * tensor[None]
    gathered = context.all_reduce(tf.distribute.ReduceOp.SUM, scattered)
    return tf.reshape(gathered, tf.concat([[-1], tf.shape(tensor)[1:]], axis=0))


def _synchronize(layer):
    if layer.synchronized:
        return False
    layer.synchronized = True
    return True


def _unsynchronize(layer):
    layer.synchronized = False


def global_batch_norm(model, layers, enabled):
    # Keras's `synchronized` all-reduces the moments across replicas.
    if not (enabled and num_replicas_in_sync(model) > 1):
        return contextlib.nullcontext()
    return _common.batch_norm_changed(layers, _synchronize, _unsynchronize)


def workers_share_the_batches():
    # The strategy in scope trains across workers, or (none in scope)
    # `TF_CONFIG` describes several.
    if tf.distribute.has_strategy():
        return _keras_compat.tf_in_multi_worker_mode(tf.distribute.get_strategy())
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    except (ValueError, AttributeError):
        return False
    return len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1


def reducible_logs(model, logs):
    # Keras 3.15's trainer reduces every log of a multi-worker step with
    # `strategy.reduce("MEAN", value, axis=0)`, which fails for scalars
    # (tensorflow/tensorflow#72388): each scalar gets a leading axis of 1.
    strategy = getattr(model, "distribute_strategy", None)
    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and _keras_compat.tf_in_multi_worker_mode(strategy)
    ):
        return logs
    return {
        name: tf.reshape(value, [1]) if value.shape.rank == 0 else value
        for name, value in logs.items()
    }


def model_scope(model):
    # Variables built later (an explicit `build()` before `fit()`) must be
    # mirrored too.
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None:
        return strategy.scope()
    return contextlib.nullcontext()
