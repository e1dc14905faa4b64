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
- PyTorch: Keras has no multi-device path; `check_supported` refuses a
  multi-process `torch.distributed` run instead of silently training each
  process on its own negatives.

TensorFlow is imported here only when the TensorFlow backend runs.
"""

import contextlib

import keras
from keras import ops


def _tf():
    import tensorflow as tf

    return tf


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
    model of the strategy in scope; 1 otherwise: under the JAX distribution
    API a step is one program over the global batch, even across several
    devices.
    """
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
    """Index of this replica in the sync group (a tensor under TF), else 0."""
    context = _tf_replica_context()
    if context is None:
        return 0
    return context.replica_id_in_sync_group


def cross_replica_concat(tensor):
    """Concatenates `tensor` of every replica along axis 0, in replica order.

    Outside a TensorFlow replica context with several replicas, returns
    `tensor` unchanged. The gradient reaches the replica each slice came
    from: the gather is written as an `all_reduce(SUM)` of a tensor holding
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
    all-reduced across replicas (the official `global_bn`), and restores
    the previous values on exit. The flag is set for the duration of
    training only and never reaches a saved config (a `.keras` file with
    `synchronized=True` cannot be loaded on JAX or PyTorch).

    Under the JAX distribution API batch norm already sees the global
    batch; there `enabled=False` cannot be honoured and raises. Elsewhere
    (one device, PyTorch) it does nothing.

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
    if enabled and num_replicas_in_sync(model) > 1:
        for layer in _batch_norm_layers(layers):
            if not layer.synchronized:
                layer.synchronized = True
                changed.append(layer)
    try:
        yield
    finally:
        for layer in changed:
            layer.synchronized = False


def check_supported():
    """Raises if the run is split in a way this library cannot train.

    On the PyTorch backend, Keras has no multi-device or multi-process
    training: under a `torch.distributed` process group of several
    processes, each would train on its own batch with its own negatives and
    its own weights. This is refused rather than silently wrong.
    """
    if keras.backend.backend() != "torch":
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise RuntimeError(
            "Multi-process training is not supported on the PyTorch backend: "
            "Keras has no distribution path for torch, so the processes would "
            "neither share negatives nor synchronise weights. Use the "
            "TensorFlow backend (tf.distribute) or the JAX backend "
            "(keras.distribution.DataParallel) for several devices. Received: "
            f"a torch.distributed process group of {dist.get_world_size()} "
            "processes"
        )
