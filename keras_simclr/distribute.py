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
  its own (`keras_simclr._torch_distributed`): the same gather, loss scaling
  and global batch norm as under `tf.distribute`, with the gradients summed
  across processes by the pretrainer's `train_step`. Models without that
  step refuse such a run (`check_supported`) instead of silently training
  each process on its own batch.

With several processes (PyTorch, or JAX across hosts), `batch_size` stays
the global batch: `per_process_data` gives each process its slice of every
global batch. Every process runs the input pipeline, so all must give the
same global batches: the library's shuffles draw their order from a seed
shared by the processes, never from each process's global seed, and its
pipelines keep their order where several processes read them
(`processes_share_the_batches`), so that every image of an epoch is
trained once, by one process.

TensorFlow is imported here only when the TensorFlow backend runs, PyTorch
only on the PyTorch backend.
"""

import contextlib
import functools

import keras
from keras import ops


def _tf():
    import tensorflow as tf

    return tf


def _torch():
    from keras_simclr import _torch_distributed

    return _torch_distributed


def torch_process_count():
    """Processes of the `torch.distributed` group on the PyTorch backend, else 1."""
    if keras.backend.backend() != "torch":
        return 1
    return _torch().world_size()


def _tf_replica_context():
    """The TF replica context of a step with several replicas, else `None`."""
    if keras.backend.backend() != "tensorflow":
        return None
    tf = _tf()
    if not tf.distribute.has_strategy():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync < 2:
        # `None` in a cross-replica context (e.g. while Keras builds the
        # model under `strategy.scope()`).
        return None
    return context


def num_replicas_in_sync(model=None):
    """How many replicas each compute a slice of the step's batch.

    On the TensorFlow backend, the number of replicas of `model`'s
    `tf.distribute` strategy (the one it was created under), or without a
    model of the strategy in scope; on PyTorch, the processes of the
    `torch.distributed` group; 1 otherwise: under the JAX distribution API a
    step is one program over the global batch, even across several devices
    and processes.
    """
    if keras.backend.backend() == "torch":
        return torch_process_count()
    if keras.backend.backend() != "tensorflow":
        return 1
    tf = _tf()
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        if not tf.distribute.has_strategy():
            return 1
        strategy = tf.distribute.get_strategy()
    return int(strategy.num_replicas_in_sync)


def num_data_parallel_devices(model=None):
    """How many devices share the batch: TF replicas or JAX data shards."""
    if keras.backend.backend() == "jax":
        distribution = keras.distribution.distribution()
        if distribution is None:
            return 1
        mesh = distribution.device_mesh
        batch_axis = getattr(distribution, "batch_dim_name", None)
        if batch_axis in mesh.axis_names:
            return int(mesh.shape[mesh.axis_names.index(batch_axis)])
        return 1
    return num_replicas_in_sync(model)


def replica_id():
    """Index of this replica in the sync group (a tensor under TF; the rank
    of the process under `torch.distributed`), else 0."""
    if torch_process_count() > 1:
        return _torch().rank()
    context = _tf_replica_context()
    if context is None:
        return 0
    return context.replica_id_in_sync_group


def cross_replica_concat(tensor):
    """Concatenates `tensor` of every replica along axis 0, in replica order.

    Outside a TensorFlow replica context with several replicas, returns
    `tensor` unchanged (under a `torch.distributed` group of several
    processes, the processes play the replicas). The gradient reaches the
    replica each slice came from: the gather is written as an `all_reduce(SUM)` of a tensor holding
    this replica's slice at its own position and zeros elsewhere (the
    official SimCLR TPU route), and `all_reduce` sums the gradients of all
    replicas in its backward pass. `all_reduce` is implemented by every
    `tf.distribute` strategy, TPUStrategy included, and the shapes stay
    static, as TPUs require.

    Args:
        tensor: a tensor `(n, ...)`, the same shape on every replica.

    Returns:
        A tensor `(num_replicas * n, ...)`.
    """
    if torch_process_count() > 1:
        return _torch().all_gather(tensor)
    context = _tf_replica_context()
    if context is None:
        return tensor
    tf = _tf()
    num_replicas = context.num_replicas_in_sync
    one_hot = tf.one_hot(
        context.replica_id_in_sync_group, num_replicas, dtype=tensor.dtype
    )
    one_hot = tf.reshape(one_hot, [num_replicas] + [1] * len(tensor.shape))
    scattered = one_hot * tensor[None]
    gathered = context.all_reduce(tf.distribute.ReduceOp.SUM, scattered)
    return tf.reshape(gathered, tf.concat([[-1], tf.shape(tensor)[1:]], axis=0))


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
    if keras.backend.backend() != "tensorflow":
        return logs
    tf = _tf()
    strategy = getattr(model, "distribute_strategy", None)
    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    ):
        return logs
    return {
        name: tf.reshape(value, [1]) if value.shape.rank == 0 else value
        for name, value in logs.items()
    }


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
    strategy = getattr(model, "distribute_strategy", None)
    if keras.backend.backend() == "tensorflow" and strategy is not None:
        return strategy.scope()
    return contextlib.nullcontext()


def _batch_norm_layers(layers):
    seen = set()
    for layer in layers:
        if layer is None:
            continue
        # `_flatten_layers` walks nested models and layers, including
        # sublayers held as attributes, which `Model.layers` does not list.
        for sublayer in layer._flatten_layers(include_self=True, recursive=True):
            if isinstance(
                sublayer, keras.layers.BatchNormalization
            ) and id(sublayer) not in seen:
                seen.add(id(sublayer))
                yield sublayer


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
    if not enabled and num_data_parallel_devices(model) > 1 and (
        keras.backend.backend() == "jax"
    ):
        raise ValueError(
            "global_bn=False is not available under the JAX distribution "
            "API: the step is one program over the global batch, so batch "
            "norm always uses its statistics. Received: global_bn=False with "
            f"{num_data_parallel_devices(model)} data-parallel devices"
        )
    changed = []
    synchronize = enabled and num_replicas_in_sync(model) > 1
    torch_group = synchronize and keras.backend.backend() == "torch"
    if synchronize:
        for layer in _batch_norm_layers(layers):
            if torch_group and not batch_norm_is_synchronized(layer):
                # Keras's torch moments refuse `synchronized`; the layer's
                # own `_moments` is replaced on this instance instead.
                layer._moments = functools.partial(_torch_moments, layer)
                changed.append(layer)
            elif not torch_group and not layer.synchronized:
                layer.synchronized = True
                changed.append(layer)
    try:
        yield
    finally:
        for layer in changed:
            if torch_group:
                del layer._moments
            else:
                layer.synchronized = False


def batch_norm_is_synchronized(layer):
    """Whether `layer` (a batch norm) reduces its moments across replicas or
    processes now, so that no fused single-device kernel may replace them."""
    return bool(layer.synchronized) or "_moments" in vars(layer)


def _torch_moments(layer, inputs, mask):
    if mask is not None:
        raise ValueError(
            "Global batch norm across torch.distributed processes takes no "
            f"mask. Received: a mask of shape {tuple(mask.shape)} in layer "
            f"{layer.name!r}"
        )
    return _torch().synchronized_moments(inputs, layer._reduction_axes)


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
    backend = keras.backend.backend()
    if backend == "torch":
        return torch_process_count()
    if backend == "jax":
        import jax

        return jax.process_count()
    return 1


def process_index():
    """This process's index among `process_count()`; 0 with one process."""
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch().rank()
    if backend == "jax":
        import jax

        return jax.process_index()
    return 0


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
    import os

    if keras.backend.backend() != "torch":
        raise RuntimeError(
            "initialize_torch_processes joins a torch.distributed group and "
            "needs the PyTorch backend; on JAX use initialize_jax_processes, "
            "on TensorFlow tf.distribute.MultiWorkerMirroredStrategy. "
            f"Received: backend={keras.backend.backend()!r}"
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
    _torch().initialize(backend, timeout_seconds)


def torch_train_step(model, data):
    """The training step of `model` across a `torch.distributed` group: the
    gradients summed over the processes before the optimizer step
    (`keras_simclr._torch_distributed.train_step`)."""
    return _torch().train_step(model, data)


def torch_test_step(model, data):
    """The evaluation step across a `torch.distributed` group, on this
    process's share of the batch."""
    return _torch().test_step(model, data)


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
        with _torch().metric_states_over_processes(model.metrics):
            return result()
    return result()


def mean_over_processes(logs):
    """Each scalar of `logs` averaged over a `torch.distributed` group (each
    process's metrics cover its own slice of the batch); unchanged
    elsewhere (TensorFlow reduces over replicas itself, JAX steps see the
    global batch)."""
    if torch_process_count() > 1:
        return _torch().mean_of_logs(logs)
    return logs


def barrier():
    """Waits until every process of a PyTorch or JAX multi-process run gets
    here; does nothing with one process."""
    if process_count() == 1:
        return
    if keras.backend.backend() == "torch":
        _torch().dist.barrier()
    else:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("keras_simclr.distribute.barrier")


def broadcast_weights(model):
    """Gives every process process 0's weights (PyTorch group; in place).

    Processes seeded differently build different initial weights; after
    this call they all start from the same ones, which the summed gradients
    then keep equal. Variables outside `model.weights` (the augmentation's
    random state, the metrics) stay each process's own.
    """
    if torch_process_count() > 1:
        _torch().broadcast_variables(model.weights)


def shared_seed():
    """One random seed, the same in every process of a PyTorch or JAX
    multi-process run (process 0's); a collective step, so every process
    must call it. With one process, a fresh random seed."""
    import numpy as np

    seed = np.array([np.random.SeedSequence().entropy % (2**31)], "int64")
    if process_count() == 1:
        return int(seed[0])
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        tensor = torch.as_tensor(seed)
        _torch().dist.broadcast(tensor, src=0)
        return int(tensor[0])
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(seed)[0])


def _tf_multi_worker():
    """Whether this is one worker of several of a `tf.distribute` run: the
    strategy in scope trains across workers, or (none in scope)
    `TF_CONFIG` describes several."""
    import json
    import os

    if keras.backend.backend() != "tensorflow":
        return False
    tf = _tf()
    if tf.distribute.has_strategy():
        extended = tf.distribute.get_strategy().extended
        return bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    except (ValueError, AttributeError):
        return False
    return len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1


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
    return process_count() > 1 or _tf_multi_worker()


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
    result is one process's (see `_torch_distributed.test_step`).

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
    count = process_count()
    if count == 1:
        return x, y, batch_size
    tf = _tf()
    from keras_simclr import _validation

    keep_partial = evaluation and keras.backend.backend() == "torch"
    if not _validation.is_tf_dataset(x):
        if batch_size is None:
            batch_size = 32
        if batch_size % count:
            raise ValueError(
                "batch_size is the global batch and must be a multiple of the "
                f"number of processes ({count}). Received: batch_size={batch_size}"
            )
        num_images = len(keras.tree.flatten(x)[0])
        if num_images < batch_size and not keep_partial:
            raise ValueError(
                f"With {count} processes the last partial batch is dropped, so "
                f"x must hold at least one global batch. Received: "
                f"{num_images} images for batch_size={batch_size}"
            )
        elements = x if y is None else (x, y)
        if shuffle:
            dataset = _shuffled_slices(elements, num_images, shared_seed())
        else:
            dataset = tf.data.Dataset.from_tensor_slices(elements)
        x = dataset.batch(batch_size, drop_remainder=not keep_partial)
        y = None
        if keras.backend.backend() == "jax":
            return x.prefetch(tf.data.AUTOTUNE), None, None
    elif keras.backend.backend() == "jax":
        return x, y, batch_size
    if y is not None:
        raise ValueError(
            "Give the labels inside the dataset: with several processes, y is "
            "only taken with arrays. Received: y of type "
            f"{type(y).__name__} with a tf.data.Dataset"
        )
    return _torch_shard(x, count, process_index(), keep_partial), None, None


def _shuffled_slices(elements, num_images, seed):
    """`from_tensor_slices(elements)` in a new order each epoch, drawn from
    `seed` alone."""
    tf = _tf()
    from keras_simclr.data.pipeline import permutations

    tensors = tf.nest.map_structure(tf.convert_to_tensor, elements)
    return (
        permutations(num_images, seed)
        .unbatch()
        .map(lambda index: tf.nest.map_structure(lambda t: tf.gather(t, index), tensors))
        .apply(tf.data.experimental.assert_cardinality(num_images))
    )


def _torch_shard(dataset, count, index, keep_partial=False):
    """Process `index`'s slice of every global batch of `dataset`; with
    `keep_partial`, process 0 gets all of a partial global batch and the
    others none of it."""
    tf = _tf()
    from tensorflow.python.data.experimental.ops import distribute as tf_data_distribute

    global_batch = int(tf_data_distribute.compute_batch_size(dataset).numpy())
    if global_batch < 0:
        # compute_batch_size cannot see through a map (such as the check
        # that every batch holds two images): the first batch tells. Every
        # process reads it, so their pipelines stay in step.
        for first in dataset.take(1):
            global_batch = int(tf.shape(tf.nest.flatten(first)[0])[0])
    if global_batch < 0:
        raise ValueError(
            "With several processes the dataset's global batch size must be "
            "known: batch it with dataset.batch(batch_size). Received: a "
            f"dataset of element spec {dataset.element_spec}"
        )
    if global_batch % count:
        raise ValueError(
            "The dataset's batch is the global batch and must be a multiple "
            f"of the number of processes ({count}). Received: batches of "
            f"{global_batch}"
        )
    local = global_batch // count
    steps = int(dataset.cardinality().numpy())
    if keep_partial:

        def own_slice(*batch):
            size = tf.shape(tf.nest.flatten(batch)[0])[0]
            full = tf.equal(size, global_batch)
            start = tf.where(full, index * local, 0 if index == 0 else size)
            stop = tf.where(full, (index + 1) * local, size)
            batch = tf.nest.map_structure(lambda t: t[start:stop], batch)
            return batch if len(batch) > 1 else batch[0]

        return dataset.map(own_slice).prefetch(tf.data.AUTOTUNE)

    def full(*batch):
        first = tf.nest.flatten(batch)[0]
        return tf.equal(tf.shape(first)[0], global_batch)

    # A last, partial global batch would leave the processes with unequal
    # numbers of steps, and the collectives waiting for each other.
    batch_axes = {
        spec.shape[0] for spec in tf.nest.flatten(dataset.element_spec)
    }
    if batch_axes != {global_batch}:
        dataset = dataset.filter(full)
        steps = tf.data.UNKNOWN_CARDINALITY
    dataset = dataset.rebatch(local).shard(num_shards=count, index=index)
    if steps >= 0:
        # Known again, so that Keras knows the length of an epoch.
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return dataset.prefetch(tf.data.AUTOTUNE)


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
    if keras.backend.backend() != "jax":
        raise RuntimeError(
            "initialize_jax_processes starts jax.distributed and needs the "
            "JAX backend; on TensorFlow use "
            "tf.distribute.MultiWorkerMirroredStrategy, on PyTorch "
            "torch.distributed. Received: backend="
            f"{keras.backend.backend()!r}"
        )
    if not isinstance(coordinator_address, str) or not all(
        _is_host_and_port(address) for address in coordinator_address.split(",")
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
    import jax

    if jax.distributed.is_initialized():
        raise RuntimeError(
            "jax.distributed is initialised already in this process; call "
            "initialize_jax_processes once per process, before JAX computes "
            f"anything. Received: process_id={process_id}"
        )
    if not jax.config.jax_cpu_collectives_implementation:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(coordinator_address, num_processes, process_id)


def _is_host_and_port(address):
    host, _, port = address.strip().rpartition(":")
    return bool(host) and port.isdigit()


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
    if keras.backend.backend() != "jax" or process_count() == 1:
        yield
        return
    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)
