"""Cross-replica helpers: the one place that asks which backend and strategy run.

SimCLR contrasts every view with all the other views of the *global* batch, and
normalises with batch-norm statistics of the global batch. How that is done
depends on the engine that splits the batch:

- TensorFlow (`tf.distribute.MirroredStrategy`, `MultiWorkerMirroredStrategy`,
  `TPUStrategy`): each replica runs the step on its slice of the batch.
  `cross_replica_concat` gathers the projections of all replicas (with a
  gradient that reaches every replica), `scale_loss` divides each replica's
  loss by the number of replicas (the gradients are summed across replicas,
  as Keras's own losses assume), and `global_batch_norm` makes batch norm
  use the statistics of the global batch.
- JAX (`keras.distribution.DataParallel`): the step is one program over the
  global batch, sharded by XLA, so the loss and batch norm already see every
  view; these helpers do nothing.
- PyTorch (`torch.distributed`, one process per device, e.g. under
  `torchrun`): Keras has no distribution path there, so the library brings
  its own: the same gather, loss scaling and global batch norm as under
  `tf.distribute`, with the gradients summed across processes by the
  pretrainer's `train_step`. Models without that step refuse such a run
  (`check_supported`) instead of silently training each process on its own
  batch.

With several processes (PyTorch, or JAX across hosts), `batch_size` stays
the global batch: `per_process_data` gives each process its slice of every
global batch. Every process runs the input pipeline, so all must give the
same global batches: the library's shuffles draw their order from a seed
shared by the processes, never from each process's global seed, and its
pipelines keep their order where several processes read them
(`processes_share_the_batches`), so that every image of an epoch is
trained once, by one process.

Each backend has its own module (`_tensorflow`, `_jax`, `_torch`; `_local`
for one process on one device, which is also the NumPy and OpenVINO
backends'), chosen once, when this package is imported, from
`keras.backend.backend()`. They share one interface: replica count and id,
the gather, process count and index, barrier, the shared seed, global batch
norm and each process's share of the data (see `_local`). The functions
here are the public API over it: they hold what every backend shares, so
that tests and callers may replace one of them (`distribute.replica_id =
...`) for every caller at once.
"""

import contextlib
import importlib
import os

import keras
import numpy as np
from keras import ops

from keras_simclr import _keras_compat
from keras_simclr.distribute import _common

_BACKEND = keras.backend.backend()
_backend = importlib.import_module(
    f"keras_simclr.distribute._{_BACKEND}"
    if _BACKEND in ("tensorflow", "jax", "torch")
    else "keras_simclr.distribute._local"
)


# === Replicas: the slices of one step's batch ===


def torch_process_count():
    """Processes of the `torch.distributed` group on the PyTorch backend, else 1."""
    return _backend.torch_process_count()


def num_replicas_in_sync(model=None):
    """How many replicas each compute a slice of the step's batch.

    On the TensorFlow backend, the number of replicas of `model`'s
    `tf.distribute` strategy (the one it was created under), or without a
    model of the strategy in scope; on PyTorch, the processes of the
    `torch.distributed` group; 1 otherwise: under the JAX distribution API a
    step is one program over the global batch, even across several devices
    and processes.
    """
    return _backend.num_replicas_in_sync(model)


def num_data_parallel_devices(model=None):
    """How many devices share the batch: TF replicas or JAX data shards."""
    return _backend.num_data_parallel_devices(model)


def replica_id():
    """Index of this replica in the sync group (a tensor under TF; the rank
    of the process under `torch.distributed`), else 0."""
    return _backend.replica_id()


def cross_replica_concat(tensor):
    """Concatenates `tensor` of every replica along axis 0, in replica order.

    Outside a TensorFlow replica context with several replicas, returns
    `tensor` unchanged (under a `torch.distributed` group of several
    processes, the processes play the replicas). The gradient reaches the
    replica each slice came from: the gather is written as an
    `all_reduce(SUM)` of a tensor holding this replica's slice at its own
    position and zeros elsewhere (the official SimCLR TPU route), and
    `all_reduce` sums the gradients of all replicas in its backward pass. `all_reduce` is implemented by every
    `tf.distribute` strategy, TPUStrategy included, and the shapes stay
    static, as TPUs require.

    Args:
        tensor: a tensor `(n, ...)`, the same shape on every replica.

    Returns:
        A tensor `(num_replicas * n, ...)`.
    """
    return _backend.cross_replica_concat(tensor)


def reducible_logs(model, logs):
    """Makes a step's logs reducible by Keras under multi-worker training.

    Keras 3.15's TensorFlow trainer reduces every log of a
    `MultiWorkerMirroredStrategy` step with `strategy.reduce("MEAN", value,
    axis=0)`, which fails for the scalars that metrics return ("Invalid
    reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388). Giving each scalar a leading axis of
    length 1 makes that reduction the mean over replicas, a scalar again.
    Elsewhere the logs are returned unchanged.
    """
    return _backend.reducible_logs(model, logs)


def scale_loss(loss):
    """Divides a replica's loss by the number of replicas in sync.

    Keras's TensorFlow trainer sums the replicas' gradients and multiplies
    the loss it reports by the number of replicas; its own `compute_loss`
    divides by it first. A model that overrides `compute_loss` must do the
    same, or each step is `num_replicas` times too large.
    """
    num_replicas = num_replicas_in_sync()
    if num_replicas > 1:
        loss = ops.divide(loss, ops.cast(num_replicas, loss.dtype))
    return loss


def model_scope(model):
    """The scope in which `model` creates variables: its `tf.distribute`
    strategy's scope on TensorFlow (variables built later, e.g. by an
    explicit `build()` before `fit()`, must be mirrored too); else a no-op."""
    return _backend.model_scope(model)


@contextlib.contextmanager
def global_batch_norm(model, layers, enabled=True):
    """Makes batch norm in `layers` use global-batch statistics while active.

    Under a TensorFlow strategy with several replicas, sets `synchronized`
    on every `keras.layers.BatchNormalization` inside `layers` (nested ones
    included), so that the batch mean and variance of training steps are
    all-reduced across replicas (the official `global_bn`). Under a
    `torch.distributed` group of several processes, gives each such layer
    moments reduced across the processes (with gradient), in Keras's formula.
    Either way the previous state is restored on exit: global batch norm is
    for the duration of training only and never reaches a saved config (a
    `.keras` file with `synchronized=True` cannot be loaded on JAX or
    PyTorch).

    Under the JAX distribution API batch norm already sees the global
    batch; there `enabled=False` cannot be honoured and raises. Elsewhere
    (one device) it does nothing.

    Args:
        model: the model being trained; its strategy decides.
        layers: layers or models whose batch norm is synchronised.
        enabled: whether to synchronise.
    """
    with _backend.global_batch_norm(model, layers, enabled):
        yield


def batch_norm_is_synchronized(layer):
    """Whether `layer` (a batch norm) reduces its moments across replicas or
    processes now, so that no fused single-device kernel may replace them."""
    return bool(layer.synchronized) or _keras_compat.batch_norm_moments_replaced(
        layer
    )


def check_supported(model):
    """Raises if `model` would train wrongly across the running processes.

    On the PyTorch backend, Keras has no multi-process training: under a
    `torch.distributed` group of several processes, a model without the
    library's distributed `train_step` (`SimCLRPretrainer` has it) would
    train each process on its own batch with its own weights. This is
    refused rather than silently wrong.

    Args:
        model: the model about to be trained.
    """
    count = torch_process_count()
    if count > 1:
        raise RuntimeError(
            f"{type(model).__name__} does not train across processes on the "
            "PyTorch backend: Keras has no distribution path there, so the "
            "processes would neither share their batches nor synchronise "
            "their weights. Train it in one process, or on TensorFlow "
            "(tf.distribute) or JAX (keras.distribution.DataParallel); "
            "SimCLRPretrainer trains across torch.distributed processes. "
            f"Received: a torch.distributed process group of {count} processes"
        )


# === Several processes: PyTorch and JAX ===


def process_count():
    """Processes that train together: the `torch.distributed` group on
    PyTorch, `jax.process_count()` on JAX; 1 on TensorFlow, whose
    `tf.distribute` strategies split the data themselves."""
    return _backend.process_count()


def process_index():
    """This process's index among `process_count()`; 0 with one process."""
    return _backend.process_index()


def initialize_torch_processes(backend=None, timeout_seconds=1800):
    """Joins the `torch.distributed` group that `torchrun` starts this
    process in (PyTorch backend), so that `SimCLRPretrainer.fit()` trains
    across its processes.

    Equivalent to `torch.distributed.init_process_group`, except that the
    group survives `torchrun` restarts: its store is keyed by the restart
    count, so a restarted process never reads the address of a peer of the
    failed attempt (a plain `init_process_group` may, and then waits for
    it).

    Args:
        backend: `"gloo"` or `"nccl"`; `None` for NCCL when a GPU is there
            (each process on GPU `LOCAL_RANK`), else gloo.
        timeout_seconds: how long a collective waits for the other
            processes before failing.

    Raises:
        RuntimeError: if the backend is not PyTorch.
        ValueError: if the environment lacks what torchrun sets.

    Example:

    ```python
    # torchrun --nproc_per_node=2 train.py   (KERAS_BACKEND=torch)
    keras_simclr.distribute.initialize_torch_processes()
    pretrainer.fit(images, batch_size=512)  # the global batch
    ```
    """
    if _BACKEND != "torch":
        raise RuntimeError(
            "initialize_torch_processes joins a torch.distributed group and "
            "needs the PyTorch backend; on JAX use initialize_jax_processes, "
            "on TensorFlow tf.distribute.MultiWorkerMirroredStrategy. "
            f"Received: backend={_BACKEND!r}"
        )
    if backend not in (None, "gloo", "nccl"):
        raise ValueError(
            f"backend must be None, 'gloo' or 'nccl'. Received: backend={backend!r}"
        )
    missing = [
        name
        for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
        if name not in os.environ
    ]
    if missing:
        raise ValueError(
            "initialize_torch_processes reads RANK, WORLD_SIZE, MASTER_ADDR "
            "and MASTER_PORT, which torchrun sets: start the script with "
            "torchrun --nproc_per_node=N script.py. Received: an environment "
            f"without {', '.join(missing)}"
        )
    _backend.initialize(backend, timeout_seconds)


def torch_train_step(model, data):
    """The training step of `model` across a `torch.distributed` group: the
    gradients summed over the processes before the optimizer step
    (`keras_simclr.distribute._torch.train_step`)."""
    return _backend.train_step(model, data)


def torch_test_step(model, data):
    """The evaluation step across a `torch.distributed` group, on this
    process's share of the batch."""
    return _backend.test_step(model, data)


def metrics_result(model, result):
    """`result()`, the logs of `model`'s metrics, computed over the data of
    every process of a `torch.distributed` group: each metric's state
    (totals and counts) is reduced across the processes first, as Keras
    reduces metrics across `tf.distribute` replicas, so a mean weighs each
    process by the images it saw. Elsewhere `result()` as it is
    (TensorFlow reduces over replicas itself, JAX steps see the global
    batch).

    Args:
        model: the Keras model whose `metrics` are read.
        result: a function of no arguments returning the logs, e.g. Keras's
            own `get_metrics_result` of `model`.

    Returns:
        The logs.
    """
    if torch_process_count() > 1:
        with _backend.metric_states_over_processes(model.metrics):
            return result()
    return result()


def mean_over_processes(logs):
    """Each scalar of `logs` averaged over a `torch.distributed` group (each
    process's metrics cover its own slice of the batch); unchanged
    elsewhere (TensorFlow reduces over replicas itself, JAX steps see the
    global batch)."""
    if torch_process_count() > 1:
        return _backend.mean_of_logs(logs)
    return logs


def barrier():
    """Waits until every process of a PyTorch or JAX multi-process run gets
    here; does nothing with one process."""
    if process_count() > 1:
        _backend.barrier()


def broadcast_weights(model):
    """Gives every process process 0's weights (PyTorch group; in place).

    Processes seeded differently build different initial weights; after
    this call they all start from the same ones, which the summed gradients
    then keep equal. Variables outside `model.weights` (the augmentation's
    random state, the metrics) stay each process's own.
    """
    if torch_process_count() > 1:
        _backend.broadcast_variables(model.weights)


def shared_seed():
    """One random seed, the same in every process of a PyTorch or JAX
    multi-process run (process 0's); a collective step, so every process
    must call it. With one process, a fresh random seed."""
    seed = np.array([np.random.SeedSequence().entropy % (2**31)], "int64")
    if process_count() == 1:
        return int(seed[0])
    return _backend.broadcast_seed(seed)


def processes_share_the_batches():
    """Whether several processes each run the input pipeline and take their
    slice of every batch it gives.

    True with several PyTorch or JAX processes (`per_process_data`,
    Keras's `DataParallel`) and for the workers of a multi-worker
    `tf.distribute` strategy (in scope, or described by `TF_CONFIG`),
    whose datasets TensorFlow shards by element. Their pipelines must then
    give the same batches in the same order, whatever each process's own
    global seed.
    """
    return process_count() > 1 or _backend.workers_share_the_batches()


def per_process_data(x, y, batch_size, shuffle=True, evaluation=False):
    """Each process's share of the data when several processes train.

    `batch_size` is the global batch, as on one device and under
    `tf.distribute`. NumPy arrays become a `tf.data` pipeline of global
    batches, shuffled each epoch with a permutation drawn from one seed
    that every process shares (`shared_seed`; the permutation does not
    depend on the processes' global seeds, which may differ), so that all
    processes agree on each batch and every image is in exactly one
    batch of an epoch. On PyTorch each process then takes its slice of
    every global batch, process `r` the `r`-th of `process_count()` equal
    parts, so that the processes' slices, gathered in rank order, are the
    global batch. On JAX, Keras slices a `tf.data` pipeline itself
    (`DataParallel` shards it per process). With one process, nothing
    changes.

    For training, the last, partial global batch is dropped (the
    processes must each contribute the same number of images to a
    step). For evaluation (`evaluation=True`, PyTorch) no image is left
    out: process 0 gets the whole of a partial global batch, which it
    scores on its own, and the other processes an empty batch, so the
    result is one process's (see `torch_test_step`).

    Args:
        x: the `x` given to `fit()`: arrays, or a `tf.data.Dataset` of
            global batches.
        y: the labels, or `None`.
        batch_size: the global batch size, or `None` for a dataset.
        shuffle: whether to shuffle arrays each epoch.
        evaluation: whether the data is for `evaluate()` (every image
            once, in order) rather than `fit()`.

    Returns:
        `(x, y, batch_size)` to give Keras's `fit()` in this process.

    Raises:
        ValueError: if the global batch is not a multiple of the number of
            processes, or the training data gives no full global batch.
    """
    if process_count() == 1:
        return x, y, batch_size
    return _backend.per_process_data(
        x, y, batch_size, shuffle, evaluation, shared_seed
    )


# === JAX across processes ===


def initialize_jax_processes(coordinator_address, num_processes, process_id):
    """Joins this process to a group of JAX processes that train together.

    Every process of the group calls this once, before JAX computes
    anything, with the same `coordinator_address` and `num_processes` and
    its own `process_id`. It makes JAX's CPU collectives run over gloo
    (`jax_cpu_collectives_implementation`; gloo is already the default in
    JAX 0.10, older versions have none, and CPU processes then cannot
    communicate) and calls `keras.distribution.initialize`, which starts
    `jax.distributed` and agrees on one global random seed, unless one was
    set already. Afterwards `keras.distribution.list_devices()` lists the
    devices of every process, so that `keras.distribution.DataParallel()`
    splits each global batch over all of them.

    Every process must then build the same model from the same seed: under
    a distribution, JAX checks that each new variable has the same value in
    every process (an `AssertionError` from `device_put` otherwise). For
    the same reason, creating variables is a collective step: code that
    process 0 runs alone and that makes variables (`model.save()` and
    `model.save_weights()` make a throwaway optimizer) goes inside
    `process_local_variables()`.

    Args:
        coordinator_address: `"host:port"` of process 0, where the group
            meets; every process gives the same. A comma-separated list of
            every process's address is accepted too (Keras's
            `job_addresses`; the first is the coordinator).
        num_processes: int, the number of processes in the group.
        process_id: int, this process's index, from 0 to
            `num_processes - 1`; process 0 runs the coordinator.

    Raises:
        RuntimeError: if the backend is not JAX, or `jax.distributed` is
            initialised already.
        ValueError: for an address without a port, a `num_processes` below
            1, or a `process_id` outside `[0, num_processes)`.

    Example:

    ```python
    # In process `i` of 2 (KERAS_BACKEND=jax):
    keras_simclr.distribute.initialize_jax_processes("10.0.0.1:1234", 2, i)
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    keras.utils.set_random_seed(0)
    pretrainer = keras_simclr.models.SimCLRPretrainer(...)
    pretrainer.compile()
    pretrainer.fit(dataset_of_global_batches, epochs=100)
    ```
    """
    if _BACKEND != "jax":
        raise RuntimeError(
            "initialize_jax_processes starts jax.distributed and needs the "
            "JAX backend; on TensorFlow use "
            "tf.distribute.MultiWorkerMirroredStrategy, on PyTorch "
            "torch.distributed. Received: backend="
            f"{_BACKEND!r}"
        )
    if not isinstance(coordinator_address, str) or not all(
        _common.is_host_and_port(address) for address in coordinator_address.split(",")
    ):
        raise ValueError(
            "coordinator_address must be 'host:port' (or a comma-separated "
            "list of them, the first being the coordinator). Received: "
            f"coordinator_address={coordinator_address!r}"
        )
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or (
        num_processes < 1
    ):
        raise ValueError(
            "num_processes must be an int of at least 1. Received: "
            f"num_processes={num_processes!r}"
        )
    if (
        isinstance(process_id, bool)
        or not isinstance(process_id, int)
        or not 0 <= process_id < num_processes
    ):
        raise ValueError(
            f"process_id must be an int from 0 to {num_processes - 1} "
            f"(num_processes={num_processes}). Received: "
            f"process_id={process_id!r}"
        )
    addresses = coordinator_address.split(",")
    if len(addresses) > 1 and len(addresses) != num_processes:
        raise ValueError(
            "A list of addresses must name every process. Received: "
            f"{len(addresses)} addresses in coordinator_address="
            f"{coordinator_address!r} for num_processes={num_processes}"
        )
    _backend.initialize(coordinator_address, num_processes, process_id)


@contextlib.contextmanager
def process_local_variables():
    """Variables made while active belong to this process alone (JAX).

    Under a `keras.distribution` spanning several JAX processes, making a
    variable is a collective step: JAX places its value on every device of
    the group and checks that every process gave the same value. Code that
    one process runs alone and that makes variables (Keras's `save()` and
    `save_weights()` make a throwaway optimizer the first time they walk a
    model's optimizer) would then wait for, or collide with, the other
    processes' next collective step. Inside this context the distribution
    is unset, so such variables stay on this process's own devices; the
    model's variables, replicated on every device, are read as they are.
    With one process, or on another backend, it does nothing.

    Example:

    ```python
    if keras_simclr.distribute.process_index() == 0:
        with keras_simclr.distribute.process_local_variables():
            pretrainer.save("pretrainer.keras")
    ```
    """
    with _backend.process_local_variables():
        yield
