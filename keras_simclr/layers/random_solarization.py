import keras

from keras_simclr import _validation
from keras_simclr.layers.data_layer import ImageDataLayer


@keras.saving.register_keras_serializable(package="keras_simclr")
class RandomSolarization(ImageDataLayer):
    """Solarizes each image, with some probability, as BYOL's augmentation.

    Each image is solarized with probability `probability`: its pixels at or
    above `threshold` are inverted within the value range, `x -> high + low
    - x`, and the pixels below it are kept. On `[0, 1]` images with the
    default threshold this is BYOL's `x if x < 0.5 else 1 - x`; on
    `[0, 255]` images it is PIL's `ImageOps.solarize(image, 128)` for
    integer pixels.

    The default probability, 0.2, is that of BYOL's second view (its first
    view is never solarized). The threshold is compared with the values as
    given (in `value_range`, not rescaled), and the inversion is computed
    there too, so pixels that are kept come back bit for bit.

    The choice per image is a 0/1 blend, so the layer runs inside a compiled
    model (XLA included) and inside `tf.data` on every backend. Images are
    channels-last; every channel is treated alike.

    Args:
        probability: float in `[0, 1]`, the probability of solarizing each
            image. Defaults to `0.2`.
        threshold: number inside `value_range`, or `None` (the default) for
            the middle of `value_range` (`127.5` for `(0, 255)`, `0.5` for
            `(0, 1)`). Pixels `>= threshold` are inverted.
        value_range: tuple `(low, high)`, the range of the input values.
            Defaults to `(0, 255)`.
        seed: int or `None`, seed of the layer's random draws.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: images `(batch, height, width, channels)` or
            `(height, width, channels)`.
        training: bool. `False` returns the inputs unchanged (cast to the
            compute dtype). Defaults to `True`.

    Returns:
        Images of the input's shape, in `value_range`, in the layer's compute
        dtype.

    Example:

    ```python
    layer = keras_simclr.layers.RandomSolarization(probability=0.2, seed=0)
    images = np.random.uniform(0, 255, size=(8, 224, 224, 3))
    solarized = layer(images)  # about one image in five inverted above 127.5
    ```

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), BYOL,
          Appendix B.
    """

    def __init__(
        self,
        probability=0.2,
        threshold=None,
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        probability = _validation.check_probability(probability, "probability")
        low, high = _validation.check_value_range(value_range)
        threshold = _validation.check_number(
            threshold, "threshold", minimum=low, maximum=high, allow_none=True
        )
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.probability = probability
        self.threshold = threshold

    def solarization_threshold(self):
        """The threshold in the units of `value_range`."""
        if self.threshold is not None:
            return self.threshold
        low, high = self.value_range
        return 0.5 * (low + high)

    def _augment_in_unit_range(self, images):
        # Comparing and inverting in the input's own range keeps the pixels
        # below the threshold exact, and the threshold where the user put it.
        return self._solarize_batch(images, self.value_range)

    def augment(self, images):
        low, high = self.value_range
        threshold = (self.solarization_threshold() - low) / (high - low)
        return self._solarize_batch(images, (0.0, 1.0), threshold)

    def _solarize_batch(self, images, value_range, threshold=None):
        if self.probability == 0.0:
            return images
        transformation = self.get_random_transformation(
            self.backend.shape(images)[0]
        )
        return self._solarize(images, transformation, value_range, threshold)

    def get_random_transformation(self, batch_size):
        """Draws `"solarize"` (bool, `(batch,)`): which images to solarize."""
        return {
            "solarize": self._uniform((batch_size,)) < self.probability,
        }

    def transform_images(self, images, transformation):
        """Solarizes the images that `transformation` selects.

        Args:
            images: float32 images `(batch, height, width, channels)` in
                `value_range`.
            transformation: a dict from `get_random_transformation`.

        Returns:
            The images, in `value_range`.
        """
        return self._solarize(images, transformation, self.value_range)

    def _solarize(self, images, transformation, value_range, threshold=None):
        bnp = self.backend.numpy
        low, high = value_range
        if threshold is None:
            threshold = self.solarization_threshold()
        above = self.backend.cast(bnp.greater_equal(images, threshold), "float32")
        selected = self.backend.cast(transformation["solarize"], "float32")
        weight = above * bnp.reshape(selected, (-1, 1, 1, 1))
        # A blend rather than `where` (slow on TensorFlow's CPU kernels):
        # `x + (high + low - 2 x)` is the inverted pixel.
        return images + weight * ((high + low) - 2.0 * images)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"probability": self.probability, "threshold": self.threshold}
        )
        return config
