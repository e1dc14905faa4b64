"""Logic that several backend modules of `keras_simclr.distribute` share."""

import contextlib

import keras

from keras_simclr import _keras_compat


def batch_norm_layers(layers):
    """Every `keras.layers.BatchNormalization` in `layers`, nested ones and
    sublayers held as attributes included, each once."""
    seen = set()
    for layer in layers:
        if layer is None:
            continue
        for sublayer in _keras_compat.flatten_layers(layer):
            if isinstance(
                sublayer, keras.layers.BatchNormalization
            ) and id(sublayer) not in seen:
                seen.add(id(sublayer))
                yield sublayer


@contextlib.contextmanager
def batch_norm_changed(layers, change, restore):
    """While active, `change(layer)` is in force on every batch norm of
    `layers` for which it returns True; `restore(layer)` undoes it on exit."""
    changed = [layer for layer in batch_norm_layers(layers) if change(layer)]
    try:
        yield
    finally:
        for layer in changed:
            restore(layer)


def global_batches(x, y, batch_size, count, shuffle, keep_partial, shared_seed):
    """Arrays given to `fit()` or `evaluate()` as a `tf.data` pipeline of
    global batches, the same in every process.

    Args:
        x: arrays (or a structure of arrays).
        y: the labels, or `None`.
        batch_size: the global batch size, or `None` for 32.
        count: the number of processes.
        shuffle: whether to shuffle each epoch, in an order drawn from
            `shared_seed()`.
        keep_partial: whether to keep the last, partial global batch.
        shared_seed: a function giving a seed every process shares.

    Returns:
        A `tf.data.Dataset` of global batches.
    """
    import tensorflow as tf

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
    return dataset.batch(batch_size, drop_remainder=not keep_partial)


def _shuffled_slices(elements, num_images, seed):
    """`from_tensor_slices(elements)` in a new order each epoch, drawn from
    `seed` alone."""
    import tensorflow as tf

    from keras_simclr.data.pipeline import permutations

    tensors = tf.nest.map_structure(tf.convert_to_tensor, elements)
    return (
        permutations(num_images, seed)
        .unbatch()
        .map(lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), tensors))
        .apply(tf.data.experimental.assert_cardinality(num_images))
    )


def is_host_and_port(address):
    """Whether `address` reads `host:port`."""
    host, _, port = address.strip().rpartition(":")
    return bool(host) and port.isdigit()
