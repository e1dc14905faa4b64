import math

import keras

from keras_simclr import _validation
from keras_simclr.layers.data_layer import ImageDataLayer

# torchvision's `RandomResizedCrop.get_params` tries this many boxes.
MAX_ATTEMPTS = 10


def _round(bnp, x):
    """Nearest integer, ties up (ties have probability 0 here)."""
    return bnp.floor(x + 0.5)


def bilinear_resize_matrix(backend, start, length, input_size, output_size):
    """Bilinear interpolation weights that crop and resize one image axis.

    Row `j` of the result holds the weights of the `input_size` source pixels
    for output pixel `j`, when the segment `[start, start + length)` of the
    axis is resized to `output_size` pixels. Pixel centres are at half-integer
    positions (as `tf.image.resize` and `torch.nn.functional.interpolate(...,
    align_corners=False)`), and source positions are clamped to the segment's
    first and last pixel, so the result equals cropping then resizing with
    `tf.image.resize(..., method="bilinear", antialias=False)`. Each row sums
    to 1.

    Args:
        backend: the backend namespace to compute with (`layer.backend`).
        start: float32 tensor of shape `(batch,)`, first pixel of the segment.
        length: float32 tensor of shape `(batch,)`, its length in pixels.
        input_size: int (or scalar tensor), the axis length of the input.
        output_size: int, the axis length of the output.

    Returns:
        A float32 tensor of shape `(batch, output_size, input_size)`.
    """
    bnp = backend.numpy
    start = bnp.expand_dims(start, -1)
    length = bnp.expand_dims(length, -1)
    output_pixels = backend.cast(bnp.arange(output_size), "float32")
    source = start + (output_pixels + 0.5) * (length / output_size) - 0.5
    source = bnp.minimum(bnp.maximum(source, start), start + length - 1.0)
    input_pixels = backend.cast(bnp.arange(input_size), "float32")
    distance = bnp.abs(bnp.expand_dims(source, -1) - input_pixels)
    return bnp.maximum(1.0 - distance, 0.0)


@keras.saving.register_keras_serializable(package="keras_simclr")
class RandomResizedCrop(ImageDataLayer):
    """Crops a random box of each image and resizes it, as in SimCLR.

    For every image independently, the layer samples a box whose area is a
    fraction `scale` of the image and whose aspect ratio (width / height) is
    in `aspect_ratio` (log-uniform), as torchvision's `RandomResizedCrop` and
    Inception-style training: up to 10 candidate boxes are drawn at once and
    the first that fits inside the image is kept; when none fits, the layer
    falls back to torchvision's centre crop (the whole image when its own
    aspect ratio lies in `aspect_ratio`, otherwise the largest centred box with
    the nearest allowed ratio). The box position is uniform. The box is then
    resized to `(height, width)` with bilinear interpolation (half-pixel
    centres, no antialiasing, like `tf.image.resize`), and flipped left-right
    with probability `horizontal_flip_probability`.

    Crop, resize and flip are one computation per image,
    `out = R_y @ image @ R_x^T`, with `R_y`, `R_x` the per-image bilinear
    weight matrices of the box (a flip reverses the rows of `R_x`). It runs
    as two batched `einsum`s, so it compiles with XLA and runs inside a
    compiled model on every backend, and inside `tf.data` on every backend.
    Box corners are whole pixels (as torchvision); the official SimCLR code
    samples boxes with `tf.image.sample_distorted_bounding_box` and resizes
    with bicubic interpolation.

    Resizing is linear, so the values keep the input's range: `value_range`
    is accepted for symmetry with the other layers and only recorded. Images
    are channels-last.

    With `training=False` the layer resizes the whole image to
    `(height, width)` with the same bilinear interpolation (no crop, no flip).

    Args:
        height: int, height of the output images.
        width: int, width of the output images.
        scale: tuple of two floats in `(0, 1]`, the range of the box area as a
            fraction of the image area. Defaults to `(0.08, 1.0)`.
        aspect_ratio: tuple of two positive floats, the range of the box
            aspect ratio width / height, sampled log-uniformly. Defaults to
            `(3 / 4, 4 / 3)`.
        horizontal_flip_probability: float in `[0, 1]`, the probability of
            flipping each image left-right. Defaults to `0.0`.
        value_range: tuple `(low, high)`, the range of the input values.
            Defaults to `(0, 255)`.
        seed: int or `None`, seed of the layer's random draws.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: images of shape `(batch, H, W, channels)` or `(H, W,
            channels)`, any size and dtype.
        training: bool. `True` (the default) crops at random; `False` resizes
            the whole image.

    Returns:
        Images of shape `(batch, height, width, channels)` (or without the
        batch axis, as the input) in the layer's compute dtype.

    Example:

    ```python
    layer = keras_simclr.layers.RandomResizedCrop(
        32, 32, horizontal_flip_probability=0.5, seed=0
    )
    images = np.random.uniform(0, 255, size=(8, 40, 48, 3))
    views = layer(images)  # (8, 32, 32, 3), a different box per image
    ```

    References:
        - [Szegedy et al., 2015](https://arxiv.org/abs/1409.4842), the
          Inception crop.
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          Appendix A.
    """

    def __init__(
        self,
        height,
        width,
        scale=(0.08, 1.0),
        aspect_ratio=(3 / 4, 4 / 3),
        horizontal_flip_probability=0.0,
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        height = _validation.check_int(height, "height")
        width = _validation.check_int(width, "width")
        scale = _validation.check_interval(
            scale, "scale", minimum=0, maximum=1, include_minimum=False
        )
        aspect_ratio = _validation.check_interval(
            aspect_ratio, "aspect_ratio", minimum=0, include_minimum=False
        )
        horizontal_flip_probability = _validation.check_probability(
            horizontal_flip_probability, "horizontal_flip_probability"
        )
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.height = height
        self.width = width
        self.scale = scale
        self.aspect_ratio = aspect_ratio
        self.horizontal_flip_probability = horizontal_flip_probability

    def call(self, inputs, training=True):
        if training:
            return self._map_batch(inputs, self.augment)
        return self._map_batch(inputs, self.resize)

    def _depends_on_value_range(self):
        return False

    def augment(self, images):
        transformation = self.get_random_transformation(
            self.backend.shape(images)
        )
        return self.transform_images(images, transformation)

    def get_random_transformation(self, images_shape):
        """Samples one box (and flip) per image.

        Args:
            images_shape: `(batch, H, W, channels)`; entries may be scalar
                tensors (dynamic shapes in a TensorFlow graph).

        Returns:
            A dict of tensors of shape `(batch,)`: `"top"`, `"left"`,
            `"crop_height"`, `"crop_width"` (float32, whole pixels) and
            `"flip"` (bool).
        """
        bnp = self.backend.numpy
        batch_size = images_shape[0]
        image_height = self.backend.cast(images_shape[1], "float32")
        image_width = self.backend.cast(images_shape[2], "float32")
        attempts = (batch_size, MAX_ATTEMPTS)

        # torchvision's get_params, vectorised over images and attempts.
        area = image_height * image_width
        target_area = area * self._uniform(attempts, *self.scale)
        log_low, log_high = (math.log(r) for r in self.aspect_ratio)
        ratio = bnp.exp(self._uniform(attempts, log_low, log_high))
        widths = _round(bnp, bnp.sqrt(target_area * ratio))
        heights = _round(bnp, bnp.sqrt(target_area / ratio))
        fits = bnp.logical_and(
            bnp.logical_and(widths >= 1.0, widths <= image_width),
            bnp.logical_and(heights >= 1.0, heights <= image_height),
        )
        fits = self.backend.cast(fits, "float32")
        first_fit = fits * self.backend.cast(
            bnp.equal(bnp.cumsum(fits, axis=1), 1.0), "float32"
        )
        found = bnp.sum(first_fit, axis=1) > 0.0
        random_height = bnp.sum(first_fit * heights, axis=1)
        random_width = bnp.sum(first_fit * widths, axis=1)

        # Fallback: torchvision's centre crop with the nearest allowed ratio.
        low, high = self.aspect_ratio
        image_ratio = image_width / image_height
        too_tall = image_ratio < low
        too_wide = image_ratio > high
        fallback_height = bnp.where(
            too_tall, _round(bnp, image_width / low), image_height
        )
        fallback_width = bnp.where(
            too_wide, _round(bnp, image_height * high), image_width
        )
        crop_height = bnp.where(found, random_height, fallback_height)
        crop_width = bnp.where(found, random_width, fallback_width)

        def offset(image_size, crop_size):
            room = image_size - crop_size
            uniform = bnp.floor(self._uniform((batch_size,)) * (room + 1.0))
            return bnp.where(
                found, bnp.minimum(uniform, room), bnp.floor(room / 2.0)
            )

        top = offset(image_height, crop_height)
        left = offset(image_width, crop_width)
        flip_probability = self.horizontal_flip_probability
        if flip_probability > 0.0:
            flip = self._uniform((batch_size,)) < flip_probability
        else:
            flip = bnp.zeros((batch_size,), dtype="bool")
        return {
            "top": top,
            "left": left,
            "crop_height": crop_height,
            "crop_width": crop_width,
            "flip": flip,
        }

    def transform_images(self, images, transformation):
        """Crops, resizes and flips a float batch as `transformation` says."""
        bnp = self.backend.numpy
        _, image_height, image_width, _ = self.backend.shape(images)
        rows = bilinear_resize_matrix(
            self.backend,
            transformation["top"],
            transformation["crop_height"],
            image_height,
            self.height,
        )
        columns = bilinear_resize_matrix(
            self.backend,
            transformation["left"],
            transformation["crop_width"],
            image_width,
            self.width,
        )
        if self.horizontal_flip_probability > 0.0:
            columns = bnp.where(
                transformation["flip"][:, None, None],
                bnp.flip(columns, axis=1),
                columns,
            )
        images = bnp.einsum("bhH,bHWc->bhWc", rows, images)
        return bnp.einsum("bwW,bhWc->bhwc", columns, images)

    def resize(self, images):
        """Bilinear resize of whole images to `(height, width)`."""
        bnp = self.backend.numpy
        _, image_height, image_width, _ = self.backend.shape(images)
        zero = bnp.zeros((1,), dtype="float32")

        def whole(size, output_size):
            length = zero + self.backend.cast(size, "float32")
            matrix = bilinear_resize_matrix(
                self.backend, zero, length, size, output_size
            )
            return matrix[0]

        rows = whole(image_height, self.height)
        columns = whole(image_width, self.width)
        images = bnp.einsum("hH,bHWc->bhWc", rows, images)
        return bnp.einsum("wW,bhWc->bhwc", columns, images)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + (
            self.height,
            self.width,
            input_shape[-1],
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "height": self.height,
                "width": self.width,
                "scale": self.scale,
                "aspect_ratio": self.aspect_ratio,
                "horizontal_flip_probability": (
                    self.horizontal_flip_probability
                ),
            }
        )
        return config
