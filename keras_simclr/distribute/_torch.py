"""`keras_simclr.distribute` on the PyTorch backend (`torch.distributed`,
e.g. under `torchrun`).

Keras has no distribution path on the PyTorch backend: under a process group
every process would train on its own slice with its own negatives and its own
weights. This module gives the library's pretrainer what `tf.distribute` gives
it on TensorFlow, with one process per device (gloo on CPUs, NCCL on GPUs):

- `all_gather`: the tensors of every process, concatenated in rank order, with
  a backward pass that returns to each process the gradient of its own slice
  summed over every process's loss (`cross_replica_concat`);
- `synchronized_moments`: the batch mean and variance of the global batch, with
  gradient, for batch norm during `fit()` (`global_batch_norm`);
- `train_step`: Keras's torch `train_step` with the gradients summed across
  processes before the optimizer step (each process's loss is divided by the
  number of processes first, as under `tf.distribute`; a weight with no
  gradient on any process is left alone, as Keras leaves it);
- `metric_states_over_processes`: the metrics of the data of every process
  (the pretrainer's `get_metrics_result`, which Keras reads for every
  step's and every epoch's logs), their states reduced across processes;
- `test_step`: Keras's torch `test_step` on this process's share, the last
  partial global batch of `evaluate()` scored by process 0 alone;
- `per_process_data`: each process's slice of every global batch;
- `initialize`: the group `torchrun` describes, surviving its restarts;
- `broadcast_variables`: rank 0's values of the weights to every process, so
  that all start from the same weights whatever their seeds.
"""

import contextlib
import datetime
import functools
import os

import keras
import torch
import torch.distributed as dist

from keras_simclr import _keras_compat
from keras_simclr.distribute import _common
from keras_simclr.distribute._local import model_scope
from keras_simclr.distribute._local import process_local_variables
from keras_simclr.distribute._local import reducible_logs
from keras_simclr.distribute._local import workers_share_the_batches


# Set while this process scores a batch on its own (`test_step`).
_ALONE = False


def world_size():
    """Processes in the default `torch.distributed` group; 1 without one,
    and while this process computes on its own (`_alone`)."""
    if not _ALONE and dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank():
    """This process's rank in the default group; 0 without one, and while
    this process computes on its own (`_alone`)."""
    if not _ALONE and dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def _device_for_collectives(tensor):
    # gloo reduces CPU tensors; NCCL needs them on this process's GPU.
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


class _AllGather(torch.autograd.Function):
    """Concatenation of every process's tensor; backward: the sum over all
    processes of the gradient of this process's slice."""

    @staticmethod
    def forward(ctx, tensor):
        ctx.slice = (rank() * tensor.shape[0], (rank() + 1) * tensor.shape[0])
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        # Every process's loss depends on this slice: sum their gradients.
        # An all-reduce works on gloo as on NCCL (reduce-scatter does not).
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, stop = ctx.slice
        return grad[start:stop]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; backward: the sum over processes of the gradients
    (every process's loss depends on the sum)."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.contiguous().clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_gather(tensor):
    """`tensor` of every process along axis 0, in rank order, with gradient.

    Args:
        tensor: a tensor `(n, ...)` of the same shape on every process.

    Returns:
        A tensor `(world_size * n, ...)`.
    """
    return _AllGather.apply(tensor)


def synchronized_moments(inputs, axes):
    """Mean and variance of `inputs` over `axes` and over every process.

    The formula is Keras's (`E[x²] - E[x]²`, in float32 for float16 inputs),
    on the sums of all processes, with gradient to every process's inputs.
    Each process must hold the same number of elements per channel.

    Args:
        inputs: a torch tensor.
        axes: the reduced axes (the batch and spatial axes of batch norm).

    Returns:
        `(mean, variance)`, each of the kept (channel) shape.
    """
    dtype = inputs.dtype
    if dtype in (torch.float16, torch.bfloat16):
        inputs = inputs.float()
    axes = tuple(int(axis) % inputs.dim() for axis in axes)
    count = 1
    for axis in axes:
        count *= inputs.shape[axis]
    sums = torch.cat(
        [torch.sum(inputs, dim=axes), torch.sum(torch.square(inputs), dim=axes)]
    )
    sums = _AllReduceSum.apply(sums) / float(count * world_size())
    mean, mean_of_squares = torch.chunk(sums, 2)
    variance = mean_of_squares - torch.square(mean)
    return mean.to(dtype), variance.to(dtype)


def broadcast_variables(variables):
    """Gives every process rank 0's value of each variable (in place)."""
    with torch.no_grad():
        for variable in variables:
            value = variable.value
            device = _device_for_collectives(value)
            buffer = value.detach().to(device).contiguous()
            dist.broadcast(buffer, src=0)
            value.copy_(buffer.to(value.device))


def sum_gradients(gradients, variables):
    """Sums each gradient over the processes, in one collective.

    A weight with no gradient (`None`) on some processes contributes zeros
    there, so that every process joins the same collective; a weight with
    no gradient on any process keeps `None`, so that the optimizer skips
    it as Keras does on one process (a zero gradient would still move it
    through momentum and decoupled weight decay). Which weights have a
    gradient is summed in the same collective, so the processes agree.

    Returns:
        The list of summed gradients (or `None`), one per variable.
    """
    filled = [
        torch.zeros_like(v.value) if g is None else g
        for g, v in zip(gradients, variables)
    ]
    if not filled:
        return filled
    present = torch.tensor(
        [0.0 if g is None else 1.0 for g in gradients], dtype=filled[0].dtype
    )
    flat = torch.cat(
        [g.reshape(-1) for g in filled] + [present.to(filled[0].device)]
    )
    device = _device_for_collectives(flat)
    flat = flat.to(device)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    present = flat[-len(filled) :].cpu()
    summed, offset = [], 0
    for g, count in zip(filled, present):
        size = g.numel()
        if float(count) > 0:
            summed.append(flat[offset : offset + size].view_as(g).to(g.device))
        else:
            summed.append(None)
        offset += size
    return summed


def mean_of_logs(logs):
    """Each scalar log averaged over the processes (one collective)."""
    names = [name for name, value in logs.items() if _is_scalar(value)]
    if not names:
        return logs
    values = torch.stack(
        [torch.as_tensor(logs[name], dtype=torch.float64).reshape(()) for name in names]
    )
    device = _device_for_collectives(values)
    values = values.to(device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    values = (values / world_size()).cpu()
    reduced = dict(logs)
    for name, value in zip(names, values):
        reduced[name] = value.to(torch.float32)
    return reduced


def _is_scalar(value):
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, torch.Tensor) and value.numel() == 1


@contextlib.contextmanager
def metric_states_over_processes(metrics):
    """While active, every metric holds the state of all the processes.

    Each metric variable is reduced across the processes as Keras reduces
    it across `tf.distribute` replicas, by its `aggregation`: summed
    (the totals and counts of means and accuracies), averaged, or process
    0's. A metric's result is then the one of the data of every process,
    whatever each process saw: the weighted mean of `Mean` metrics, not
    the mean of the processes' means. The process's own state is put back
    on exit, so that it keeps accumulating its own data. One collective.

    Args:
        metrics: Keras metrics.
    """
    variables = [v for metric in metrics for v in metric.variables]
    if not variables:
        yield
        return
    local = [v.value.detach().clone() for v in variables]
    parts = []
    for variable, value in zip(variables, local):
        value = value.to(torch.float64).reshape(-1)
        if variable.aggregation == "mean":
            value = value / world_size()
        elif variable.aggregation == "only_first_replica" and rank() != 0:
            value = torch.zeros_like(value)
        parts.append(value)
    flat = torch.cat(parts)
    flat = flat.to(_device_for_collectives(flat))
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.cpu()
    offset = 0
    with torch.no_grad():
        for variable, value in zip(variables, local):
            size = value.numel()
            variable.assign(
                flat[offset : offset + size].reshape(value.shape).to(value.dtype)
            )
            offset += size
    try:
        yield
    finally:
        with torch.no_grad():
            for variable, value in zip(variables, local):
                variable.assign(value)


@contextlib.contextmanager
def _alone():
    """While active, this process computes as if it were the only one: no
    gather, no loss division, no synchronised batch norm."""
    global _ALONE
    _ALONE = True
    try:
        yield
    finally:
        _ALONE = False


def _forward(model, data, training):
    """Keras's torch step up to the loss: the outputs and the loss of this
    process's share, the loss tracker given the undivided loss (the loss is
    divided by the number of processes, `keras_simclr.distribute.scale_loss`).

    Returns:
        `(x, y, y_pred, sample_weight, loss)`.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if _keras_compat.call_has_training_arg(model):
        y_pred = model(x, training=training)
    else:
        y_pred = model(x)
    loss = _keras_compat.compute_loss(
        model, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
    )
    batch = _batch_size(x)
    _keras_compat.loss_tracker(model).update_state(
        loss * world_size(), sample_weight=batch
    )
    return x, y, y_pred, sample_weight, loss


def _batch_size(x):
    return next(i for i in keras.tree.flatten(x) if i is not None).shape[0]


def train_step(model, data):
    """Keras's torch `train_step` with gradients summed across processes.

    Each process's loss is divided by the number of processes, so the sum of
    the processes' gradients is the gradient of the global batch's loss.
    The model reduces its metrics over the processes
    (`metric_states_over_processes`), so that every process reports the
    global figures.
    """
    model.zero_grad()
    x, y, y_pred, sample_weight, loss = _forward(model, data, training=True)
    if model.optimizer is not None:
        loss = model.optimizer.scale_loss(loss)
    variables = model.trainable_weights[:]
    if variables:
        loss.backward()
        gradients = sum_gradients([v.value.grad for v in variables], variables)
        with torch.no_grad():
            model.optimizer.apply(gradients, variables)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def test_step(model, data):
    """Keras's torch `test_step` on this process's share of the batch.

    When the processes hold batches of the same size (every full global
    batch), each scores its share against the gathered batch. Otherwise
    (the last, partial global batch of `evaluate()`, which process 0 holds
    whole and the others not at all, `per_process_data`), the processes
    that hold images score them on their own, as one process would score
    that batch, and the others only take part in the metrics' reduction.
    """
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    size = _batch_size(x)
    sizes = torch.zeros(world_size(), dtype=torch.int64)
    sizes[rank()] = size
    sizes = sizes.to(_device_for_collectives(sizes))
    dist.all_reduce(sizes, op=dist.ReduceOp.SUM)
    if bool(torch.all(sizes == size)):
        x, y, y_pred, sample_weight, _ = _forward(model, data, training=False)
    elif size:
        with _alone():
            x, y, y_pred, sample_weight, _ = _forward(model, data, training=False)
    else:
        return model.get_metrics_result()
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def initialize(backend=None, timeout_seconds=1800):
    """Joins the `torch.distributed` group that `torchrun` describes.

    Reads `RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`, and keys the
    group's store by torchrun's restart count (`TORCHELASTIC_RESTART_COUNT`):
    after a restart, a plain `init_process_group("gloo")` may read the
    addresses the processes of the failed attempt left in the store, and
    wait for a dead peer (measured with torch 2.13 and `torchrun
    --standalone --max_restarts=1`).

    Args:
        backend: `"gloo"` or `"nccl"`; `None` for NCCL when a GPU is there
            (each process then takes GPU `LOCAL_RANK`), else gloo.
        timeout_seconds: how long a collective waits for the other
            processes before failing.
    """
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    timeout = datetime.timedelta(seconds=timeout_seconds)
    store, process_rank, size = next(dist.rendezvous("env://", timeout=timeout))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(
        backend,
        store=dist.PrefixStore(f"keras_simclr/attempt_{attempt}", store),
        rank=process_rank,
        world_size=size,
        timeout=timeout,
    )


# === The interface of keras_simclr.distribute's backend modules ===


def num_replicas_in_sync(model=None):
    return world_size()


def num_data_parallel_devices(model=None):
    return world_size()


def replica_id():
    return rank()


def cross_replica_concat(tensor):
    if world_size() > 1:
        return all_gather(tensor)
    return tensor


def torch_process_count():
    return world_size()


def process_count():
    return world_size()


def process_index():
    return rank()


def barrier():
    dist.barrier()


def broadcast_seed(seed):
    tensor = torch.as_tensor(seed)
    dist.broadcast(tensor, src=0)
    return int(tensor[0])


def _moments(layer, inputs, mask):
    if mask is not None:
        raise ValueError(
            "Global batch norm across torch.distributed processes takes no "
            f"mask. Received: a mask of shape {tuple(mask.shape)} in layer "
            f"{layer.name!r}"
        )
    return synchronized_moments(
        inputs, _keras_compat.batch_norm_reduction_axes(layer)
    )


def _synchronize(layer):
    # Keras's torch moments refuse `synchronized`: the layer's own moments
    # are replaced on this instance instead.
    if layer.synchronized or _keras_compat.batch_norm_moments_replaced(layer):
        return False
    _keras_compat.replace_batch_norm_moments(
        layer, functools.partial(_moments, layer)
    )
    return True


def global_batch_norm(model, layers, enabled):
    if not (enabled and world_size() > 1):
        return contextlib.nullcontext()
    return _common.batch_norm_changed(
        layers, _synchronize, _keras_compat.restore_batch_norm_moments
    )


def per_process_data(x, y, batch_size, shuffle, evaluation, shared_seed):
    # For evaluation no image is left out: process 0 scores the last,
    # partial global batch alone (`test_step`).
    from keras_simclr import _data_checks

    count = world_size()
    if not _data_checks.is_tf_dataset(x):
        x = _common.global_batches(
            x, y, batch_size, count, shuffle, evaluation, shared_seed
        )
        y = None
    if y is not None:
        raise ValueError(
            "Give the labels inside the dataset: with several processes, y is "
            "only taken with arrays. Received: y of type "
            f"{type(y).__name__} with a tf.data.Dataset"
        )
    return _shard(x, count, rank(), evaluation), None, None


def _shard(dataset, count, index, keep_partial=False):
    """Process `index`'s slice of every global batch of `dataset`; with
    `keep_partial`, process 0 gets all of a partial global batch and the
    others none of it."""
    import tensorflow as tf

    global_batch = _keras_compat.tf_dataset_batch_size(dataset)
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
