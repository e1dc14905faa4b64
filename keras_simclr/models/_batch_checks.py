"""Checks of the batches of `SimCLRPretrainer.fit`, made before training.

A batch that cannot train fails otherwise at the first step, or after a
few, in terms the user never wrote: a queue smaller than the keys of a
batch as `keys.shape` / `queue.shape`; a batch that does not split evenly
over the replicas of a `tf.distribute` strategy as a collective shape
mismatch or an `AddN` error, after the steps whose batches did split. The
checks here name `fit()`'s arguments instead.
"""

import keras
import numpy as np

from keras_simclr import _data_checks
from keras_simclr import distribute
from keras_simclr.models import _gradient_cache
from keras_simclr.objectives.base import Objective

# Keras's default `batch_size` in `fit()`.
KERAS_DEFAULT_BATCH_SIZE = 32


def check_fit_batches(model, x, batch_size, kwargs):
    """Refuses `fit(x, batch_size=..., **kwargs)` arguments with which
    `model` (a `SimCLRPretrainer`) cannot train.

    Checks that the objective can take the global batch
    (`objective.check_batch_size`: MoCo's queue, SimCLR's memory), and
    under a `tf.distribute` strategy that every batch, the last one
    included, splits evenly over the replicas.

    Args:
        model: the pretrainer.
        x: `fit()`'s `x`: arrays, a dict of views, or a `tf.data` dataset.
        batch_size: `fit()`'s `batch_size`, the global batch.
        kwargs: `fit()`'s other keyword arguments.

    Raises:
        ValueError: naming the argument and what was received.
    """
    objective = getattr(model, "objective", None)
    checks_batch = objective is not None and (
        type(objective).check_batch_size is not Objective.check_batch_size
    )
    replicas = 1
    if keras.backend.backend() == "tensorflow":
        replicas = distribute.num_replicas_in_sync(model)
    chunk_size = getattr(model, "gradient_chunk_size", None)
    if not checks_batch and replicas < 2 and chunk_size is None:
        # Nothing to check: a dataset's first batch is not read for nothing.
        return
    batch, num_images = batch_and_images(x, batch_size)
    if batch is None:
        return
    if checks_batch:
        objective.check_batch_size(batch)
    check_replica_split(batch, num_images, replicas)
    if chunk_size is not None:
        model._fit_chunk_count = check_chunked_batches(
            batch, num_images, chunk_size, replicas
        )


def check_chunked_batches(batch, num_images, chunk_size, replicas=1):
    """The number of chunks of a batch of `batch` images (the global batch,
    split evenly over `replicas` `tf.distribute` replicas) at
    `gradient_chunk_size=chunk_size`, after refusing a last partial batch
    of `num_images` that could not fill them (a TensorFlow step traced
    without a static batch splits every batch into as many chunks as a
    full one)."""
    count = _gradient_cache.num_chunks(batch // replicas, chunk_size)
    last = num_images % batch if num_images is not None else 0
    # JAX and PyTorch see each batch's size, and split a short one into
    # fewer chunks.
    if keras.backend.backend() == "tensorflow" and 0 < last // replicas < count:
        usable = num_images - last
        per_replica = f" ({last // replicas} on each replica)" if replicas > 1 else ""
        raise ValueError(
            f"The last batch of `x` holds {last} images{per_replica} "
            f"({num_images} images at batch_size={batch}), fewer than the "
            f"{count} chunks that gradient_chunk_size={chunk_size} makes of "
            "a batch, so a chunk would be empty. Train on the first "
            f"{usable} images "
            f"(x[:{usable}]), or choose a batch_size that leaves no "
            f"remainder or one of at least {count * replicas} images. Received: "
            f"{num_images} images, batch_size={batch}"
        )
    return count


def batch_and_images(x, batch_size):
    """`(global batch, number of images)` of `fit()`'s `x`, each None when
    unknown before training.

    Arrays (or a dict of views) are batched by Keras at `batch_size`, 32 by
    default, at most the number of images. A `tf.data` dataset comes
    batched: its batch is the static batch dimension of its elements, or
    else the size of its first batch; its number of images is not known.
    """
    if _data_checks.is_tf_dataset(x):
        return _dataset_batch(x), None
    arrays = list(x.values()) if isinstance(x, dict) else [x]
    if not arrays or not all(_data_checks.is_array_like(a) for a in arrays):
        return None, None
    shape = getattr(arrays[0], "shape", None)
    num_images = int(shape[0]) if shape is not None else len(arrays[0])
    if num_images == 0:
        return None, None
    if batch_size is None:
        batch_size = KERAS_DEFAULT_BATCH_SIZE
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        return None, num_images
    return min(int(batch_size), num_images), num_images


def _dataset_batch(dataset):
    x_spec, _ = _data_checks.split_element(dataset.element_spec)
    specs = list(x_spec.values()) if isinstance(x_spec, dict) else [x_spec]
    shape = getattr(specs[0], "shape", None)
    if shape is not None and shape.rank and shape[0] is not None:
        return int(shape[0])
    try:
        element = next(iter(dataset.take(1)))
    except StopIteration:
        return None
    first, _ = _data_checks.split_element(element)
    first = list(first.values())[0] if isinstance(first, dict) else first
    return int(first.shape[0])


def check_replica_split(batch, num_images, replicas):
    """Refuses a global batch, or a last partial batch of `num_images` at
    `batch`, that does not split evenly over `replicas`: the objective
    gathers equal shares from every replica (`examples/pretrain.py` checks
    its flags the same way)."""
    if replicas < 2:
        return
    if batch % replicas:
        raise ValueError(
            f"`batch_size` is the global batch and must split evenly over the "
            f"{replicas} replicas of the distribution strategy: each replica "
            "computes an equal share, which the loss gathers from all of them. "
            f"Received: batch_size={batch}, which leaves a remainder of "
            f"{batch % replicas} over {replicas} replicas. Use a multiple of "
            f"{replicas}, such as {batch - batch % replicas or replicas}."
        )
    last = num_images % batch if num_images is not None else 0
    if last % replicas:
        usable = num_images - last
        raise ValueError(
            f"The last batch of `x` holds {last} images ({num_images} images at "
            f"batch_size={batch}), which do not split evenly over the "
            f"{replicas} replicas of the distribution strategy (a remainder of "
            f"{last % replicas}): every batch must, as the loss gathers equal "
            f"shares from all replicas. Train on the first {usable} images "
            f"(x[:{usable}]), or on a number of images whose remainder at "
            f"batch_size={batch} is a multiple of {replicas}. Received: "
            f"{num_images} images, batch_size={batch}"
        )
