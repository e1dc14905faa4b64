"""The in-step augmentation, compiled on its own with XLA on TensorFlow.

Keras runs a TensorFlow step without XLA on a CPU (`jit_compile="auto"`
resolves to False there, and XLA's CPU convolutions are slow:
docs/design.md, decision 6). Without XLA, the colour distortion's
hundred-odd elementwise operations each make a pass over the batch in
memory. Compiled with XLA they
fuse, while the encoder stays on TensorFlow's own (oneDNN) kernels: a
`tf.function(jit_compile=True)` called inside the step's graph becomes one
XLA cluster in it (docs/design.md, decision 17). docs/speed.md gives the
gain, and the machine it was measured on.

Only the library's own augmentation layers take this path: they are written
to compile with XLA (no `ImageProjectiveTransformV3` and the like,
docs/design.md, decision 8), where a user's layer may not be, and an XLA
compilation error would only surface when the step first runs.
"""

import keras

from keras_simclr.layers import data_layer
from keras_simclr.layers.augmentation_pair import AugmentationPair
from keras_simclr.layers.data_layer import ImageDataLayer


def compiles_with_xla(layer):
    """Whether `layer` is one of the library's augmentation layers (or a
    pair of them), all of which compile with XLA."""
    if isinstance(layer, AugmentationPair):
        return all(
            compiles_with_xla(view) for view in (layer.view_a, layer.view_b)
        )
    return isinstance(layer, ImageDataLayer)


def uses_xla(model, augmentation):
    """Whether `model`'s step, being traced now, should run `augmentation`
    as its own XLA cluster: TensorFlow, inside a graph function that is
    not compiled with XLA as a whole, outside `tf.distribute` strategies
    (each replica's call would need its own cluster placement), and one of
    the library's layers."""
    if keras.backend.backend() != "tensorflow" or model.jit_compile:
        return False
    import tensorflow as tf

    return (
        tf.inside_function()
        and not tf.distribute.has_strategy()
        and compiles_with_xla(augmentation)
    )


def run(model, augmentation, function, images):
    """`function(images)`, compiled with XLA where `uses_xla` says so.

    The images' range is then checked outside the XLA cluster, which would
    drop the layers' assertions.
    """
    if not uses_xla(model, augmentation):
        return function(images)
    import tensorflow as tf

    images = augmentation._check_value_range(images)

    def compiled(images):
        with data_layer.inputs_checked():
            return function(images)

    # Made while the step is traced, so once per trace: the step's graph
    # holds the call, and XLA compiles it once per input shape.
    return tf.function(compiled, jit_compile=True, autograph=False)(images)
