"""One process on one device (the NumPy and OpenVINO backends): the
interface of `keras_simclr.distribute`'s backend modules, each function
doing nothing.

Every backend module defines these functions; where a backend behaves as
one device does, it imports them from here by name.
"""

import contextlib


def num_replicas_in_sync(model=None):
    """Replicas that each compute a slice of a step's batch."""
    return 1


def num_data_parallel_devices(model=None):
    """Devices that share the batch."""
    return 1


def replica_id():
    """This replica's index in its sync group."""
    return 0


def cross_replica_concat(tensor):
    """`tensor` of every replica, concatenated along axis 0."""
    return tensor


def torch_process_count():
    """Processes of a `torch.distributed` group whose steps the library
    synchronises itself."""
    return 1


def process_count():
    """Processes that train together, each running the input pipeline."""
    return 1


def process_index():
    """This process's index among `process_count()`."""
    return 0


def barrier():
    """Waits for every process (called with several processes only)."""


def broadcast_seed(seed):
    """Process 0's `seed` (a NumPy array of one int64), as an int."""
    return int(seed[0])


def global_batch_norm(model, layers, enabled):
    """A context in which the batch norms of `layers` use the statistics
    of the global batch."""
    return contextlib.nullcontext()


def workers_share_the_batches():
    """Whether this is one worker of several that shard each batch, beyond
    `process_count()` (multi-worker `tf.distribute`)."""
    return False


def per_process_data(x, y, batch_size, shuffle, evaluation, shared_seed):
    """This process's share of the data (called with several processes
    only); `shared_seed` draws one seed that every process shares."""
    return x, y, batch_size


def reducible_logs(model, logs):
    """A step's logs, in a form the trainer can reduce across workers."""
    return logs


def model_scope(model):
    """The scope in which `model` creates variables."""
    return contextlib.nullcontext()


def process_local_variables():
    """A context in which new variables belong to this process alone."""
    return contextlib.nullcontext()
