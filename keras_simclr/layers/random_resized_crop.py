import math

import keras

from keras_simclr import _validation
from keras_simclr.layers.data_layer import ImageDataLayer

# torchvision's `RandomResizedCrop.get_params` tries this many boxes.
MAX_ATTEMPTS = 10

# The official SimCLR code calls `tf.image.sample_distorted_bounding_box`
# with these (`data_util.crop_and_resize`).
SIMCLR_MAX_ATTEMPTS = 100
SIMCLR_MIN_OBJECT_COVERED = 0.1

SAMPLERS = ("torchvision", "simclr", "byol")
INTERPOLATIONS = ("bilinear", "bicubic")

# The Keys cubic convolution kernel of `tf.image.resize(..., "bicubic")`,
# and the steps per pixel of the table TensorFlow evaluates it from.
KEYS_CUBIC_A = -0.5
KEYS_CUBIC_TABLE_SIZE = 1024


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


def bicubic_resize_matrix(backend, start, length, input_size, output_size):
    """Bicubic interpolation weights that crop and resize one image axis.

    The bicubic counterpart of `bilinear_resize_matrix`, with the same
    arguments and result: row `j` holds the weights of the `input_size`
    source pixels for output pixel `j` when the segment `[start, start +
    length)` is resized to `output_size` pixels. It follows
    `tf.image.resize(..., method="bicubic", antialias=False)`: half-pixel
    centres, the Keys cubic kernel with `a = -0.5` over the four nearest
    source pixels, and at the segment's edges the taps that fall outside it
    get no weight, the others being renormalised to sum to 1. As
    TensorFlow, which reads the kernel from a table of 1024 entries per
    pixel, source positions are rounded to 1/1024 of a pixel, so the two
    agree to float32 rounding.

    Bicubic weights can be negative, so the result may overshoot the range
    of the input near sharp edges.

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
    # Source positions relative to the segment, unclamped (unlike bilinear).
    source = (output_pixels + 0.5) * (length / output_size) - 0.5
    # TensorFlow reads the kernel from a table: the fraction of a pixel is
    # rounded to 1 / KEYS_CUBIC_TABLE_SIZE.
    below = bnp.floor(source)
    steps = bnp.round((source - below) * KEYS_CUBIC_TABLE_SIZE)
    source = below + steps / KEYS_CUBIC_TABLE_SIZE
    input_pixels = backend.cast(bnp.arange(input_size), "float32")
    # (batch, 1, input_size): each input pixel's position in the segment.
    relative = bnp.expand_dims(input_pixels - start, 1)
    inside = bnp.logical_and(
        relative >= 0.0, relative <= bnp.expand_dims(length, 1) - 1.0
    )
    distance = bnp.abs(bnp.expand_dims(source, -1) - relative)
    a = KEYS_CUBIC_A
    near = ((a + 2.0) * distance - (a + 3.0)) * distance * distance + 1.0
    far = ((a * distance - 5.0 * a) * distance + 8.0 * a) * distance - 4.0 * a
    weights = bnp.where(distance <= 1.0, near, far)
    weights = bnp.where(
        bnp.logical_and(inside, distance < 2.0), weights, 0.0
    )
    # The nearest pixel of the segment is at most half a pixel away, so the
    # sum is at least 0.56: the division is safe.
    return weights / bnp.sum(weights, axis=-1, keepdims=True)


def resize_matrix(
    backend, start, length, input_size, output_size, interpolation
):
    """`bilinear_resize_matrix` or `bicubic_resize_matrix`, by name.

    Args:
        backend: the backend namespace to compute with (`layer.backend`).
        start: float32 tensor of shape `(batch,)`, first pixel of the segment.
        length: float32 tensor of shape `(batch,)`, its length in pixels.
        input_size: int (or scalar tensor), the axis length of the input.
        output_size: int, the axis length of the output.
        interpolation: `"bilinear"` or `"bicubic"`.

    Returns:
        A float32 tensor of shape `(batch, output_size, input_size)`.

    Raises:
        ValueError: if `interpolation` is neither.
    """
    interpolation = _validation.check_choice(
        interpolation, "interpolation", INTERPOLATIONS
    )
    if interpolation == "bicubic":
        return bicubic_resize_matrix(
            backend, start, length, input_size, output_size
        )
    return bilinear_resize_matrix(
        backend, start, length, input_size, output_size
    )


def resize_box(backend, images, box, size, interpolation):
    """Crops one box out of every image of a batch and resizes it.

    Args:
        backend: the backend namespace to compute with (`layer.backend`).
        images: float32 batch `(batch, H, W, channels)`.
        box: `(top, left, box_height, box_width)`, whole pixels, the same
            for every image (scalars or scalar tensors).
        size: `(height, width)` of the result.
        interpolation: `"bilinear"` or `"bicubic"` (see `resize_matrix`).

    Returns:
        `(batch, height, width, channels)`, not clipped.
    """
    bnp = backend.numpy
    _, image_height, image_width, _ = backend.shape(images)

    def matrix(start, length, axis_size, output_size):
        start = bnp.reshape(backend.cast(start, "float32"), (1,))
        length = bnp.reshape(backend.cast(length, "float32"), (1,))
        weights = resize_matrix(
            backend, start, length, axis_size, output_size, interpolation
        )
        return weights[0]

    top, left, box_height, box_width = box
    rows = matrix(top, box_height, image_height, size[0])
    columns = matrix(left, box_width, image_width, size[1])
    images = bnp.einsum("hH,bHWc->bhWc", rows, images)
    return bnp.einsum("wW,bhWc->bhwc", columns, images)


@keras.saving.register_keras_serializable(package="keras_simclr")
class RandomResizedCrop(ImageDataLayer):
    """Crops a random box of each image and resizes it, as in SimCLR.

    For every image independently, the layer samples a box whose area is a
    fraction `scale` of the image and whose aspect ratio (width / height)
    lies in a range given by `aspect_ratio`, with one of three samplers:

    - `sampler="torchvision"` (the default), torchvision's
      `RandomResizedCrop` and Inception-style training: the area fraction
      is uniform in `scale` and the aspect ratio log-uniform in
      `aspect_ratio`; up to 10 candidate boxes are drawn at once and the
      first that fits inside the image is kept; when none fits, the layer
      falls back to torchvision's centre crop (the whole image when its own
      aspect ratio lies in `aspect_ratio`, otherwise the largest centred box
      with the nearest allowed ratio).
    - `sampler="simclr"`, the official SimCLR code
      (`data_util.crop_and_resize`), which calls
      `tf.image.sample_distorted_bounding_box` with `area_range=scale`,
      `min_object_covered=0.1` and 100 attempts. Its aspect ratio range is
      `aspect_ratio` times the output's `width / height` (as the official
      code), the ratio is uniform (not log-uniform) in it, and the box
      height, not its area, is drawn uniformly between the heights that
      give the smallest and the largest allowed area: this favours small
      boxes (at 224 x 224 with the defaults, the mean area fraction is
      about 0.42, against 0.48 for torchvision). A box must also cover at
      least 10% of the image. When none of the 100 attempts gives a valid
      box, the box is the whole image.
    - `sampler="byol"`, the official BYOL code
      (`byol/utils/dataset.py`, `_decode_and_random_crop`): one draw per
      image, no retries. The area fraction `s` is uniform in `scale` and
      the ratio `r` log-uniform in `aspect_ratio` (not relative to the
      output's shape; BYOL's views are square); the box is
      `rint(sqrt(s * r * H * W))` wide and `rint(sqrt(s / r * H * W))`
      high (`rint` rounds half to even, as `tf.round`), each side then
      clamped to the image's (and, unlike BYOL's code, to at least one
      pixel: a side drawn under half a pixel, on images of a few pixels,
      would otherwise be empty). A box clamped on one side keeps its other
      side, so it is smaller and squarer than drawn; nothing is redrawn.
      Large boxes are thus more frequent than with the other two samplers
      (at 224 x 224 with the defaults, the mean area fraction is about
      0.53).

    The box position is uniform (for `"byol"`, each offset is a uniform
    integer in `[0, image size - box size]`, as BYOL's code). The box is
    then resized to `(height, width)` with `interpolation` (half-pixel
    centres, no antialiasing, like `tf.image.resize`), and flipped
    left-right with probability `horizontal_flip_probability`.

    Crop, resize and flip are one computation per image,
    `out = R_y @ image @ R_x^T`, with `R_y`, `R_x` the per-image
    interpolation weight matrices of the box (a flip reverses the rows of
    `R_x`). It runs as two batched `einsum`s, so it compiles with XLA and
    runs inside a compiled model on every backend, and inside `tf.data` on
    every backend. Box corners are whole pixels (as torchvision and
    TensorFlow). The official SimCLR recipe is `sampler="simclr",
    interpolation="bicubic"`.

    Bilinear resizing keeps the values in the input's range, and
    `value_range` is then only recorded. Bicubic resizing overshoots near
    sharp edges, so with `interpolation="bicubic"` the output is clipped to
    `value_range` (as the official code clips its images to `[0, 1]`), and a
    direct call checks that its input lies in `value_range`. Images are
    channels-last.

    With `training=False` the layer resizes the whole image to
    `(height, width)` with the same interpolation (no crop, no flip).

    Args:
        height: int, height of the output images.
        width: int, width of the output images.
        scale: tuple of two floats in `(0, 1]`, the range of the box area as a
            fraction of the image area. Defaults to `(0.08, 1.0)`.
        aspect_ratio: tuple of two positive floats, the range of the box
            aspect ratio width / height (for `sampler="simclr"`, relative to
            the output's `width / height`, as the official SimCLR code).
            Defaults to `(3 / 4, 4 / 3)`.
        horizontal_flip_probability: float in `[0, 1]`, the probability of
            flipping each image left-right. Defaults to `0.0`.
        sampler: `"torchvision"`, `"simclr"` or `"byol"`, how boxes are
            drawn (see above). Defaults to `"torchvision"`.
        interpolation: `"bilinear"` or `"bicubic"`, how the box is resized.
            Defaults to `"bilinear"`.
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

    Raises:
        ValueError: for an invalid argument; with `interpolation="bicubic"`,
            when a direct call receives images outside `value_range`.

    Example:

    ```python
    layer = keras_simclr.layers.RandomResizedCrop(
        32, 32, horizontal_flip_probability=0.5, seed=0
    )
    images = np.random.uniform(0, 255, size=(8, 40, 48, 3))
    views = layer(images)  # (8, 32, 32, 3), a different box per image
    # The crops of the official SimCLR code.
    official = keras_simclr.layers.RandomResizedCrop(
        224,
        224,
        horizontal_flip_probability=0.5,
        sampler="simclr",
        interpolation="bicubic",
    )
    ```

    References:
        - [Szegedy et al., 2015](https://arxiv.org/abs/1409.4842), the
          Inception crop.
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          Appendix A, and its code (github.com/google-research/simclr).
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), BYOL,
          Appendix B, and its code (github.com/deepmind/deepmind-research,
          `byol/utils/dataset.py`).
        - [Keys, 1981](https://doi.org/10.1109/TASSP.1981.1163711), the
          cubic convolution kernel.
    """

    def __init__(
        self,
        height,
        width,
        scale=(0.08, 1.0),
        aspect_ratio=(3 / 4, 4 / 3),
        horizontal_flip_probability=0.0,
        sampler="torchvision",
        interpolation="bilinear",
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
        sampler = _validation.check_choice(sampler, "sampler", SAMPLERS)
        interpolation = _validation.check_choice(
            interpolation, "interpolation", INTERPOLATIONS
        )
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.height = height
        self.width = width
        self.scale = scale
        self.aspect_ratio = aspect_ratio
        self.horizontal_flip_probability = horizontal_flip_probability
        self.sampler = sampler
        self.interpolation = interpolation

    def call(self, inputs, training=True):
        inputs = self._check_value_range(inputs)
        if training:
            return self._map_batch(inputs, self.augment)
        return self._map_batch(inputs, self.resize)

    def _depends_on_value_range(self):
        return self.interpolation == "bicubic"

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
        if self.sampler == "simclr":
            box = self._simclr_box(batch_size, image_height, image_width)
        elif self.sampler == "byol":
            box = self._byol_box(batch_size, image_height, image_width)
        else:
            box = self._torchvision_box(batch_size, image_height, image_width)
        flip_probability = self.horizontal_flip_probability
        if flip_probability > 0.0:
            flip = self._uniform((batch_size,)) < flip_probability
        else:
            flip = bnp.zeros((batch_size,), dtype="bool")
        return dict(box, flip=flip)

    def _torchvision_box(self, batch_size, image_height, image_width):
        """torchvision's `get_params`, vectorised over images and attempts."""
        bnp = self.backend.numpy
        attempts = (batch_size, MAX_ATTEMPTS)
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
        found, (random_height, random_width) = self._first_valid(
            fits, heights, widths
        )

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

        return {
            "top": offset(image_height, crop_height),
            "left": offset(image_width, crop_width),
            "crop_height": crop_height,
            "crop_width": crop_width,
        }

    def _simclr_box(self, batch_size, image_height, image_width):
        """`tf.image.sample_distorted_bounding_box` with the whole image as
        the object, vectorised over images and attempts.

        Follows `GenerateRandomCrop` of TensorFlow's
        `sample_distorted_bounding_box_op.cc` step by step, in float32 as
        it does; `rint` rounds half to even, as `lrintf`.
        """
        bnp = self.backend.numpy
        rint = bnp.round
        attempts = (batch_size, SIMCLR_MAX_ATTEMPTS)
        output_ratio = self.width / self.height
        low, high = (r * output_ratio for r in self.aspect_ratio)
        ratio = self._uniform(attempts, low, high)
        image_area = image_height * image_width
        min_area = self.scale[0] * image_area
        max_area = self.scale[1] * image_area

        height = rint(bnp.sqrt(min_area / ratio))
        max_height = rint(bnp.sqrt(max_area / ratio))
        # The largest height whose rounded width still fits the image.
        fitting = bnp.floor((image_width + (0.5 - 1e-7)) / ratio)
        fitting = bnp.where(
            rint(fitting * ratio) > image_width, fitting - 1.0, fitting
        )
        max_height = bnp.where(
            rint(max_height * ratio) > image_width, fitting, max_height
        )
        max_height = bnp.minimum(max_height, image_height)
        height = bnp.minimum(height, max_height)
        # A uniform integer in [0, max_height - height], both included.
        span = max_height - height + 1.0
        extra = bnp.floor(self._uniform(attempts) * span)
        height = height + bnp.maximum(bnp.minimum(extra, span - 1.0), 0.0)
        width = rint(height * ratio)
        # TensorFlow's correction of rounding: one pixel taller if too
        # small, then one shorter if too large.
        too_small = width * height < min_area
        height = bnp.where(too_small, height + 1.0, height)
        width = rint(height * ratio)
        too_large = width * height > max_area
        height = bnp.where(too_large, height - 1.0, height)
        width = rint(height * ratio)
        area = width * height
        valid = bnp.logical_and(
            bnp.logical_and(area >= min_area, area <= max_area),
            bnp.logical_and(width <= image_width, height <= image_height),
        )
        valid = bnp.logical_and(
            valid, bnp.logical_and(width > 0.0, height > 0.0)
        )
        # The overlap constraint with the whole-image box.
        covered = area / image_area >= SIMCLR_MIN_OBJECT_COVERED
        valid = bnp.logical_and(valid, covered)
        found, (crop_height, crop_width) = self._first_valid(
            valid, height, width
        )
        crop_height = bnp.where(found, crop_height, image_height)
        crop_width = bnp.where(found, crop_width, image_width)

        def offset(image_size, crop_size):
            # A uniform integer in [0, room), 0 when the box fills the axis.
            room = image_size - crop_size
            uniform = bnp.floor(self._uniform((batch_size,)) * room)
            return bnp.maximum(bnp.minimum(uniform, room - 1.0), 0.0)

        return {
            "top": offset(image_height, crop_height),
            "left": offset(image_width, crop_width),
            "crop_height": crop_height,
            "crop_width": crop_width,
        }

    def _byol_box(self, batch_size, image_height, image_width):
        """BYOL's `_decode_and_random_crop`, vectorised over images: one
        box per image, clamped to the image, never redrawn."""
        bnp = self.backend.numpy
        target_area = image_height * image_width * self._uniform(
            (batch_size,), *self.scale
        )
        log_low, log_high = (math.log(r) for r in self.aspect_ratio)
        ratio = bnp.exp(self._uniform((batch_size,), log_low, log_high))
        # `tf.round`: half to even, as `round` here.
        crop_width = bnp.round(bnp.sqrt(target_area * ratio))
        crop_height = bnp.round(bnp.sqrt(target_area / ratio))
        # A side drawn under half a pixel (images of a few pixels) would be
        # empty, as in BYOL's code; one pixel keeps the resize defined.
        crop_width = bnp.maximum(bnp.minimum(crop_width, image_width), 1.0)
        crop_height = bnp.maximum(bnp.minimum(crop_height, image_height), 1.0)

        def offset(image_size, crop_size):
            # A uniform integer in [0, room], both included.
            room = image_size - crop_size
            uniform = bnp.floor(self._uniform((batch_size,)) * (room + 1.0))
            return bnp.minimum(uniform, room)

        return {
            "top": offset(image_height, crop_height),
            "left": offset(image_width, crop_width),
            "crop_height": crop_height,
            "crop_width": crop_width,
        }

    def _first_valid(self, valid, *values):
        """Whether each row of `valid` has a True, and the `values` at its
        first True (0 where none)."""
        bnp = self.backend.numpy
        valid = self.backend.cast(valid, "float32")
        first = valid * self.backend.cast(
            bnp.equal(bnp.cumsum(valid, axis=1), 1.0), "float32"
        )
        found = bnp.sum(first, axis=1) > 0.0
        return found, [bnp.sum(first * value, axis=1) for value in values]

    def transform_images(self, images, transformation):
        """Crops, resizes and flips a float batch as `transformation` says."""
        bnp = self.backend.numpy
        _, image_height, image_width, _ = self.backend.shape(images)
        rows = resize_matrix(
            self.backend,
            transformation["top"],
            transformation["crop_height"],
            image_height,
            self.height,
            self.interpolation,
        )
        columns = resize_matrix(
            self.backend,
            transformation["left"],
            transformation["crop_width"],
            image_width,
            self.width,
            self.interpolation,
        )
        if self.horizontal_flip_probability > 0.0:
            columns = bnp.where(
                transformation["flip"][:, None, None],
                bnp.flip(columns, axis=1),
                columns,
            )
        images = bnp.einsum("bhH,bHWc->bhWc", rows, images)
        images = bnp.einsum("bwW,bhWc->bhwc", columns, images)
        return self._clip(images)

    def resize(self, images):
        """Resizes whole images to `(height, width)` with `interpolation`."""
        _, image_height, image_width, _ = self.backend.shape(images)
        images = resize_box(
            self.backend,
            images,
            (0.0, 0.0, image_height, image_width),
            (self.height, self.width),
            self.interpolation,
        )
        return self._clip(images)

    def _clip(self, images):
        """Bicubic overshoot clipped to `value_range`."""
        if self.interpolation != "bicubic":
            return images
        return self.backend.numpy.clip(images, *self.value_range)

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
                "sampler": self.sampler,
                "interpolation": self.interpolation,
            }
        )
        return config
