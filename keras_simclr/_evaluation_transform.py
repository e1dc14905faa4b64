"""The evaluation transform: how images meet an encoder outside training.

A model's evaluation transform is the inference call (`training=False`) of
the layer that makes its training views: for `SimCLRAugmentation`, its
preset's evaluation transform (`"imagenet"`: a centre crop of 87.5% of the
image resized bicubically to the view size, as the official SimCLR
`preprocess_for_eval`; `"cifar"`: the whole image resized bilinearly to the
view size). For an `AugmentationPair` it is the one of its first view.

The rule every model and evaluation function of the library follows: images
whose spatial size already equals the view size are taken as already
transformed and pass unchanged (pipelines that applied the transform per
image in `tf.data`, or arrays stored at the view size, such as CIFAR at 32
px); images of any other size go through the transform. The size is read
from the static shape; where a traced TensorFlow graph leaves height or
width unknown (a compiled step fed by a `tf.data` pipeline of open image
size, an exported serving signature, a `tf.data` map), the same test runs
in the graph: with `keras.ops.cond`, or, for a tensor of a `tf.data` graph
on the JAX or PyTorch backend (where `keras.ops` cannot run), with the same
TensorFlow ops that `keras.ops` maps to on TensorFlow. The library's
augmentation layers run there too (decision 7 of the design).
"""

import sys

import keras
from keras import ops

from keras_simclr import _validation


def transform_layer(augmentation):
    """The layer whose inference call is the evaluation transform of
    `augmentation`: the first view's layer of an augmentation pair (an
    object with a `view_a` layer), the augmentation itself otherwise, or
    None for None."""
    if augmentation is None:
        return None
    view_a = getattr(augmentation, "view_a", None)
    if isinstance(view_a, keras.layers.Layer):
        return view_a
    return augmentation


def view_size(layer, input_shape=None):
    """`(height, width)` of what `layer` makes, or None when unknown.

    The layer's `image_size` attribute where it has one (the library's
    augmentation layers), else its `compute_output_shape(input_shape)`.
    """
    if layer is None:
        return None
    image_size = getattr(layer, "image_size", None)
    if image_size is not None:
        return _validation.check_image_size(image_size)
    if input_shape is None or len(input_shape) < 3:
        return None
    try:
        output_shape = tuple(layer.compute_output_shape(tuple(input_shape)))
    except Exception:
        return None
    if len(output_shape) != len(input_shape):
        return None
    height, width = output_shape[-3], output_shape[-2]
    if isinstance(height, int) and isinstance(width, int):
        return (height, width)
    return None


def apply(layer, images):
    """`images` through the evaluation transform `layer`, unless they are at
    its view size already.

    Args:
        layer: the transform layer (see `transform_layer`), or None for no
            transform.
        images: a batch of images `(batch, height, width, channels)`.

    Returns:
        `images` themselves when `layer` is None or their static height and
        width equal the view size; `layer(images, training=False)` when they
        differ, or when the view size is unknown. With an unknown height or
        width (a traced TensorFlow graph), the choice is made in the graph,
        and the result has the view size in its static shape and a float
        dtype in both cases (the images' own when float, else the layer's
        compute dtype).
    """
    if layer is None:
        return images
    shape = tuple(images.shape)
    size = view_size(layer, shape)
    if size is None:
        return layer(images, training=False)
    height, width = shape[-3], shape[-2]
    if height is not None and width is not None:
        if (int(height), int(width)) == size:
            return images
        return layer(images, training=False)

    # The size is only known when the graph runs.
    graph_ops = _graph_ops(images)
    if not layer.built:
        # Not inside a branch of the conditional: building may make variables.
        layer.build(shape)
    dtype = keras.backend.standardize_dtype(images.dtype)
    if "float" not in dtype:
        dtype = getattr(layer, "compute_dtype", None) or "float32"
    dynamic_shape = graph_ops.shape(images)
    at_view_size = graph_ops.logical_and(
        graph_ops.equal(dynamic_shape[-3], size[0]),
        graph_ops.equal(dynamic_shape[-2], size[1]),
    )
    result = graph_ops.cond(
        at_view_size,
        lambda: graph_ops.cast(images, dtype),
        lambda: graph_ops.cast(layer(images, training=False), dtype),
    )
    channels = shape[-1] if shape[-1] is not None else dynamic_shape[-1]
    batch = (-1,) if len(shape) == 4 else ()
    return graph_ops.reshape(result, batch + (size[0], size[1], channels))


def _graph_ops(images):
    """`keras.ops`, or TensorFlow itself for a tensor of a `tf.data` graph
    on another backend: the functions used here (`shape`, `equal`,
    `logical_and`, `cond`, `cast`, `reshape`) have the same names and
    arguments in both."""
    tf = sys.modules.get("tensorflow")
    if (
        keras.backend.backend() != "tensorflow"
        and tf is not None
        and tf.is_tensor(images)
    ):
        return tf
    return ops
