"""`keras_simclr.distribute` on the JAX backend (`keras.distribution`).

Under `keras.distribution.DataParallel` a step is one program over the
global batch, sharded by XLA: the loss and batch norm already see every
view, so there is one replica and nothing to gather. Across hosts, every
process runs the input pipeline and Keras gives each its slice of every
global batch (`per_process_data` makes arrays a pipeline of global
batches).
"""

import contextlib

import jax
import keras

from keras_simclr.distribute import _common
from keras_simclr.distribute._local import cross_replica_concat
from keras_simclr.distribute._local import model_scope
from keras_simclr.distribute._local import num_replicas_in_sync
from keras_simclr.distribute._local import reducible_logs
from keras_simclr.distribute._local import replica_id
from keras_simclr.distribute._local import torch_process_count
from keras_simclr.distribute._local import workers_share_the_batches

__all__ = [
    "barrier",
    "broadcast_seed",
    "cross_replica_concat",
    "global_batch_norm",
    "initialize",
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


def num_data_parallel_devices(model=None):
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    batch_axis = getattr(distribution, "batch_dim_name", None)
    if batch_axis in mesh.axis_names:
        return int(mesh.shape[mesh.axis_names.index(batch_axis)])
    return 1


def process_count():
    return jax.process_count()


def process_index():
    return jax.process_index()


def barrier():
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("keras_simclr.distribute.barrier")


def broadcast_seed(seed):
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(seed)[0])


def global_batch_norm(model, layers, enabled):
    # Batch norm sees the global batch: there is nothing to synchronise,
    # and `enabled=False` cannot be honoured.
    devices = num_data_parallel_devices(model)
    if not enabled and devices > 1:
        raise ValueError(
            "global_bn=False is not available under the JAX distribution "
            "API: the step is one program over the global batch, so batch "
            "norm always uses its statistics. Received: global_bn=False with "
            f"{devices} data-parallel devices"
        )
    return contextlib.nullcontext()


def per_process_data(x, y, batch_size, shuffle, evaluation, shared_seed):
    from keras_simclr import _data_checks

    # Keras's `DataParallel` slices a `tf.data` pipeline per process itself.
    if _data_checks.is_tf_dataset(x):
        return x, y, batch_size
    import tensorflow as tf

    dataset = _common.global_batches(
        x, y, batch_size, process_count(), shuffle, False, shared_seed
    )
    return dataset.prefetch(tf.data.AUTOTUNE), None, None


@contextlib.contextmanager
def process_local_variables():
    # Making a variable under a distribution of several processes is a
    # collective step; with the distribution unset it stays on this
    # process's own devices.
    if process_count() == 1:
        yield
        return
    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


def initialize(coordinator_address, num_processes, process_id):
    """Starts `jax.distributed` through `keras.distribution.initialize`,
    with gloo for the CPU collectives; the arguments are checked."""
    if jax.distributed.is_initialized():
        raise RuntimeError(
            "jax.distributed is initialised already in this process; call "
            "initialize_jax_processes once per process, before JAX computes "
            f"anything. Received: process_id={process_id}"
        )
    if not jax.config.jax_cpu_collectives_implementation:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(coordinator_address, num_processes, process_id)
