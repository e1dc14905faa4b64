"""Two augmentation layers, one per view, called as one."""

import keras

from keras_simclr import _validation
from keras_simclr.layers.data_layer import DataLayer
from keras_simclr.layers.data_layer import InputRangeChecks


@keras.saving.register_keras_serializable(package="keras_simclr")
class AugmentationPair(InputRangeChecks, DataLayer):
    """Two augmentation layers, one per view: `(view_a(x), view_b(x))`.

    Methods whose two views are made differently, such as BYOL (view 1
    always blurred and never solarized, view 2 rarely blurred and sometimes
    solarized), need one layer per view; `SimCLRAugmentation.pair(...)`
    makes them for a preset. `SimCLRPretrainer(augmentation=pair)` applies
    `view_a` to make the first view of each image and `view_b` to make the
    second, inside the training step.

    The pair runs wherever its view layers run: the library's augmentation
    layers run eagerly, inside a compiled model and inside `tf.data` on
    every backend. Called directly on images, it checks them against the
    views' `value_range` as `SimCLRAugmentation` does.

    Args:
        view_a: a Keras layer that maps images to the first view.
        view_b: a Keras layer that maps images to the second view, of the
            same shape as the first.
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: a batch of images, as the view layers take them.
        training: bool. `True` (the default) returns the two views;
            `False` returns `view_a(inputs, training=False)`, one tensor
            (the evaluation transform, the same for both views of a
            `SimCLRAugmentation.pair`).

    Returns:
        A tuple `(view_a, view_b)` of views in training; one tensor with
        `training=False`.

    Raises:
        ValueError: if a view is not a Keras layer, or the two views declare
            different `value_range`s.

    Example:

    ```python
    pair = keras_simclr.layers.AugmentationPair(
        keras_simclr.layers.SimCLRAugmentation(224, preset="byol", view=1),
        keras_simclr.layers.SimCLRAugmentation(224, preset="byol", view=2),
    )
    view_1, view_2 = pair(images)
    # in a tf.data pipeline, on any backend:
    dataset = dataset.map(lambda x: dict(zip(("view_a", "view_b"), pair(x))))
    ```

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), BYOL,
          Appendix B.
    """

    def __init__(self, view_a, view_b, **kwargs):
        for name, layer in (("view_a", view_a), ("view_b", view_b)):
            _validation.check_layer(layer, name)
        ranges = [getattr(view, "value_range", None) for view in (view_a, view_b)]
        if None not in ranges and tuple(ranges[0]) != tuple(ranges[1]):
            raise ValueError(
                "The two views must read images in the same range: "
                f"`view_a` has value_range={tuple(ranges[0])}. "
                f"Received: view_b with value_range={tuple(ranges[1])}"
            )
        super().__init__(**kwargs)
        self.view_a = view_a
        self.view_b = view_b

    @property
    def value_range(self):
        """The views' `value_range`, or None if they declare none."""
        return getattr(self.view_a, "value_range", None)

    @property
    def image_size(self):
        """`view_a`'s `image_size`, or None if it has none."""
        return getattr(self.view_a, "image_size", None)

    def build(self, input_shape):
        for view in (self.view_a, self.view_b):
            if not view.built:
                view.build(input_shape)
        self.built = True

    def call(self, inputs, training=True):
        if not training:
            return self.view_a(inputs, training=False)
        inputs = self._check_value_range(inputs)
        return (
            self.view_a(inputs, training=True),
            self.view_b(inputs, training=True),
        )

    def compute_output_shape(self, input_shape):
        return (
            self.view_a.compute_output_shape(input_shape),
            self.view_b.compute_output_shape(input_shape),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "view_a": keras.saving.serialize_keras_object(self.view_a),
                "view_b": keras.saving.serialize_keras_object(self.view_b),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("view_a", "view_b"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
