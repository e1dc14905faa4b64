"""What `SimCLRPretrainer` checks of its inputs before training starts.

Shapes against the encoder's input, the images' value range against the
layer that reads them, labels, batch sizes and the first batch of a
`tf.data` pipeline: each bad input gets a `ValueError` naming the argument
and what was received, before the first step.
"""

import types

import keras
import numpy as np

from keras_simclr import _graph_checks
from keras_simclr import _keras_compat
from keras_simclr import _data_checks
from keras_simclr import _validation
from keras_simclr.layers import data_layer
from keras_simclr.layers.augmentation_pair import AugmentationPair

VIEW_KEYS = ("view_a", "view_b")


class PretrainerInputChecks:
    """The pretrainer's input checks; a mixin of `SimCLRPretrainer`, which
    has `encoder`, `augmentation`, `objective` and `num_classes`."""

    def _image_channels(self):
        inputs = getattr(self.encoder, "inputs", None)
        if inputs:
            return inputs[0].shape[-1]
        return None

    def _check_image_shape(self, shape, argument):
        shape = tuple(shape)
        if len(shape) != 4:
            raise ValueError(
                f"`{argument}` must be a batch of images of shape (batch, "
                f"height, width, channels). Received: {argument}.shape={shape}"
            )
        channels = self._image_channels()
        if channels is not None and shape[-1] is not None and shape[-1] != channels:
            raise ValueError(
                f"`{argument}` has {shape[-1]} channels but the encoder expects "
                f"{channels}. Received: {argument}.shape={shape}"
            )

    def _augmented_view_shape(self, input_shape):
        """The shape of the views the augmentation makes of `input_shape`;
        the two views of an augmentation pair must agree."""
        if not isinstance(self.augmentation, AugmentationPair):
            return tuple(self.augmentation.compute_output_shape(input_shape))
        shape_a, shape_b = (
            tuple(view.compute_output_shape(input_shape))
            for view in (self.augmentation.view_a, self.augmentation.view_b)
        )
        if shape_a != shape_b:
            raise ValueError(
                "The two views of `augmentation` must have one shape, to "
                "go through the encoder as one batch. Received: "
                f"augmentation making views of shapes {shape_a} (view_a) "
                f"and {shape_b} (view_b) from images of shape "
                f"{tuple(input_shape)}"
            )
        return shape_a

    def _check_view_size(self, view_shape, given_views):
        """Refuses views whose size the encoder's input cannot take."""
        inputs = getattr(self.encoder, "inputs", None)
        if not inputs:
            return
        expected = tuple(inputs[0].shape)
        if len(expected) != 4:
            return
        mismatch = any(
            want is not None and have is not None and want != have
            for want, have in zip(expected[1:3], view_shape[1:3])
        )
        if not mismatch:
            return
        size = f"{view_shape[1]}x{view_shape[2]}"
        wanted = f"{expected[1]}x{expected[2]}"
        if given_views:
            source = f"The views given in `x` are {size} images"
        elif self.augmentation is not None:
            image_size = getattr(self.augmentation, "image_size", None)
            source = (
                f"The augmentation makes {size} views "
                + (f"(`image_size={image_size}`)" if image_size else "")
            )
        else:
            source = f"With augmentation=None the images themselves ({size}) are the views"
        raise ValueError(
            f"{source}, but the encoder takes {wanted} images (its input "
            f"shape is {expected}). Make the two agree: set the "
            "augmentation's `image_size` to the encoder's input size, or "
            "build the encoder for the view size. Received: view shape "
            f"{tuple(view_shape)}, encoder input shape {expected}"
        )

    def _validate_data(self, x, y, batch_size, prefix=None):
        """Checks what can be checked before training starts."""
        x_name = f"{prefix}[0]" if prefix else "x"
        y_name = f"{prefix}[1]" if prefix else "y"
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or batch_size < 2
        ):
            raise ValueError(
                "`batch_size` must be an integer >= 2: NT-Xent contrasts each "
                f"image with the others of its batch. Received: batch_size={batch_size}"
            )
        if isinstance(x, (tuple, list)) and len(x) == 2 and y is None:
            raise ValueError(
                "A pair of views must be given as a dict "
                "{'view_a': ..., 'view_b': ...}; Keras reads a tuple as "
                f"(x, y). Received: {x_name} as a {type(x).__name__} of 2 arrays"
            )
        if _data_checks.is_tf_dataset(x):
            self._validate_dataset(x, x_name)
            return
        if isinstance(x, dict):
            check_view_keys(x, x_name)
            arrays = {f"{x_name}['{key}']": x[key] for key in VIEW_KEYS}
        elif x is None or not _data_checks.is_array_like(x):
            return
        else:
            arrays = {x_name: x}
        num_images = None
        for name, array in arrays.items():
            array = _data_checks.as_numpy(array, name)
            self._check_image_shape(array.shape, name)
            num_images = len(array)
            self._check_value_range(
                array[: batch_size or 32], name, views=isinstance(x, dict)
            )
        if num_images < 2:
            raise ValueError(
                f"`{x_name}` must hold at least 2 images (each image's negatives "
                f"are the others of its batch). Received: {num_images} image"
            )
        effective_batch = batch_size or 32
        if num_images % effective_batch == 1:
            raise ValueError(
                f"With {num_images} images and batch_size={effective_batch}, the "
                "last batch holds a single image, which has no negatives. "
                "Change `batch_size` or drop one image. "
                f"Received: batch_size={batch_size}"
            )
        if y is not None and _data_checks.is_array_like(y):
            self._check_label_array(_data_checks.as_numpy(y, y_name), num_images, y_name)
        elif y is None and self.objective.needs_labels:
            raise ValueError(
                _data_checks.missing_labels_message(
                    f"objective='{self.objective.name}'", f"{y_name}=None"
                )
            )

    def _check_label_array(self, labels, num_images, name):
        self._require_probe(f"{name} of shape {np.shape(labels)}")
        _data_checks.check_labels(labels, num_images, name, self.num_classes)

    def _validate_dataset(self, dataset, name):
        spec = dataset.element_spec
        if isinstance(spec, tuple):
            x_spec = spec[0]
            y_spec = spec[1] if len(spec) > 1 else None
        else:
            x_spec, y_spec = spec, None
        x_specs = x_spec if isinstance(x_spec, dict) else {"": x_spec}
        if isinstance(x_spec, dict):
            check_view_keys(x_spec, name)
        for key, item in x_specs.items():
            item_name = f"{name}['{key}']" if key else name
            if not (item.dtype.is_floating or item.dtype.is_integer):
                raise ValueError(
                    f"`{item_name}` must hold numbers. "
                    f"Received: dtype={item.dtype.name}"
                )
            self._check_image_shape(item.shape, f"{item_name} (element_spec)")
        if y_spec is not None:
            self._require_probe(f"{name} yielding labels, element_spec={spec}")
        elif self.objective.needs_labels:
            raise ValueError(
                _data_checks.missing_labels_message(
                    f"objective='{self.objective.name}'",
                    f"{name} with element_spec={spec}",
                    dataset=True,
                )
            )
        # One batch shows the batch size, the label range and the images'
        # range.
        with _graph_checks.as_value_errors():
            element = _data_checks.first_batch(dataset)
        if element is None:
            return
        x_batch = element[0] if isinstance(element, tuple) else element
        first = x_batch["view_a"] if isinstance(x_batch, dict) else x_batch
        if int(first.shape[0]) < 2:
            raise ValueError(
                f"`{name}` yields batches of {int(first.shape[0])} image; "
                "NT-Xent needs at least 2 per batch. Batch the dataset "
                "with `.batch(batch_size)`."
            )
        if isinstance(element, tuple) and len(element) > 1:
            self._check_label_array(
                np.asarray(element[1]), int(first.shape[0]), f"{name} labels"
            )
        if isinstance(x_batch, dict):
            for key in VIEW_KEYS:
                self._check_value_range(
                    np.asarray(x_batch[key]), f"{name}['{key}']", views=True
                )
        else:
            self._check_value_range(np.asarray(x_batch), name, views=False)

    def _makes_views(self):
        """Whether the augmentation changes the images (not None, nor
        Keras's `Identity`, the explicit choice of identical views)."""
        return self.augmentation is not None and not isinstance(
            self.augmentation, keras.layers.Identity
        )

    def _image_range(self, views):
        """`(value_range, owner)` that images (`views=False`) or views
        reaching the encoder (`views=True`) must be in.

        Images go to the augmentation, views to the encoder: whichever
        declares a `value_range` (the library's layers and ResNet do) sets
        it, and when both do they agree (checked when the pretrainer is
        made). An augmentation that declares none may change the range, so
        its input is not checked.
        """
        encoder_range = data_layer.declared_value_range(self.encoder)
        if views or not self._makes_views():
            return encoder_range, "the encoder"
        augmentation_range = data_layer.declared_value_range(self.augmentation)
        if augmentation_range is None:
            return None, None
        owner = "the augmentation"
        if encoder_range is not None:
            owner = "the augmentation and the encoder"
        return augmentation_range, owner

    def _check_value_range(self, images, name, views):
        """Refuses images outside the range the model reads them in.

        Images in [0, 1] given for the default (0, 255) would train on
        nearly black images without a word.
        """
        value_range, owner = self._image_range(views)
        if value_range is None or not len(images):
            return
        if images.dtype.kind not in "biuf":
            return
        data_layer.check_value_range(images, value_range, name, owner)

    def _check_views_are_made(self, x, name="x"):
        """Refuses raw images for `fit()` when there is no augmentation.

        With `augmentation=None` the images themselves would be both
        views: every pair identical, a contrastive task solved from the
        first steps (contrastive accuracy 1.0) while the encoder learns
        nothing useful. Views made elsewhere come as a dict. Arrays,
        tensors, `tf.data` datasets (by their `element_spec`), a
        `keras.utils.PyDataset` (by its first batch) and a Python generator
        (by its first batch, put back in front of the others) are checked
        before training.

        Returns:
            `x`, or for a generator a generator of the same batches.
        """
        if self.augmentation is not None:
            return x
        checked = x
        if isinstance(x, types.GeneratorType):
            first = next(x, None)
            if first is None:
                return _batches((), x)
            x = _batches((first,), x)
            checked = _data_checks.split_element(first)[0]
        elif isinstance(x, keras.utils.PyDataset):
            try:
                checked = _data_checks.split_element(x[0])[0]
            except (IndexError, KeyError, NotImplementedError, TypeError):
                return x  # no batch 0 to read: left to Keras.
        if _data_checks.is_tf_dataset(checked) or _data_checks.is_distributed_dataset(
            checked
        ):
            spec = _data_checks.split_element(checked.element_spec)[0]
            if isinstance(spec, dict):
                return x
            received = f"{name} yielding images, element_spec={checked.element_spec}"
        elif isinstance(checked, dict) or not _data_checks.is_array_like(checked):
            return x
        else:
            shape = (
                tuple(checked.shape) if hasattr(checked, "shape") else np.shape(checked)
            )
            what = "of shape" if checked is x else "yielding images of shape"
            received = f"{name} {what} {shape}"
        raise ValueError(
            "The pretrainer has no augmentation (`augmentation=None`, the "
            "default), so fit() would use each image itself as both of its "
            "views: every pair would be identical, and the contrastive task "
            "is solved from the first steps (contrastive_accuracy 1.0) "
            "without learning a useful representation. Pass an "
            "augmentation, e.g. `SimCLRPretrainer(encoder, "
            "augmentation=keras_simclr.layers.SimCLRAugmentation(image_size))`, "
            "or give views made elsewhere as a dict "
            '`{"view_a": ..., "view_b": ...}`. Received: augmentation=None, '
            f"{received}"
        )


def _batches(first, rest):
    """A generator of the batches `first`, then those of `rest`."""
    yield from first
    yield from rest


def augmentation_layer(augmentation):
    """The pretrainer's `augmentation`: None, a layer, or a pair of view
    layers; a tuple or list `(view_a, view_b)` becomes an
    `AugmentationPair`."""
    if isinstance(augmentation, (tuple, list)):
        if len(augmentation) != 2 or not all(
            isinstance(layer, keras.layers.Layer) for layer in augmentation
        ):
            raise ValueError(
                "`augmentation` given as a tuple must hold two Keras layers, "
                "`(view_a, view_b)`, one per view. Received: augmentation="
                f"{type(augmentation).__name__} of {len(augmentation)} "
                f"items: {augmentation!r}"
            )
        return AugmentationPair(*augmentation, name="augmentation_pair")
    return _validation.check_layer(
        augmentation,
        "augmentation",
        allow_none=True,
        description=(
            "a Keras layer that maps images to one view, an "
            "AugmentationPair, or a tuple (view_a, view_b) of two layers"
        ),
    )


def check_view_keys(inputs, name="x"):
    if set(inputs.keys()) != set(VIEW_KEYS):
        raise ValueError(
            f"A dict input must have exactly the keys {VIEW_KEYS}. "
            f"Received: {name} with keys {sorted(inputs.keys())}"
        )


def input_shape_of(x):
    """The input shape, batch axis `None`, of arrays or of a `tf.data` or
    `tf.distribute` dataset."""
    if _data_checks.is_tf_dataset(x) or _data_checks.is_distributed_dataset(x):
        spec = x.element_spec
        x = spec[0] if isinstance(spec, tuple) else spec
    elif not (isinstance(x, dict) or _data_checks.is_array_like(x)):
        return None

    def batchless(item):
        # A distributed dataset's spec may hold one spec per local replica.
        item = _keras_compat.per_replica_spec(item)
        shape = item.shape if hasattr(item, "shape") else np.shape(item)
        return (None,) + tuple(shape)[1:]

    if isinstance(x, dict):
        return {key: batchless(value) for key, value in x.items()}
    return batchless(x)
