import keras

from keras_simclr import _validation
from keras_simclr.layers.data_layer import ImageDataLayer
from keras_simclr.layers.random_resized_crop import INTERPOLATIONS
from keras_simclr.layers.random_resized_crop import resize_box


@keras.saving.register_keras_serializable(package="keras_simclr")
class CenterCrop(ImageDataLayer):
    """Crops the centre of each image and resizes it: SimCLR's evaluation view.

    The official SimCLR evaluation transform (`data_util.center_crop`). The
    crop keeps a fraction `crop_proportion` of the image along one side,
    with the output's shape: writing `H`, `W` for the image size, `p` for
    `crop_proportion` and `a = width / height` for the output's aspect ratio
    (the official code's `aspect_ratio`, "width / height"),

    - if `a > W / H` (the output is wider than the image):
      `crop_height = rint(p / a * W)`, `crop_width = rint(p * W)`;
    - otherwise: `crop_height = rint(p * H)`, `crop_width = rint(p * a * H)`

    (`rint` rounds half to even, as `tf.math.rint`; a side is at least one
    pixel), so the crop has the output's aspect ratio up to rounding: a
    100 x 100 image cropped to 48 x 32 (tall) keeps a box 88 pixels high and
    58 wide. The crop starts at `((H - crop_height) + 1) // 2`,
    `((W - crop_width) + 1) // 2`, and is resized to `(height, width)` with
    `interpolation` (half-pixel centres, no antialiasing, like
    `tf.image.resize`). The default, 0.875 and bicubic, is the official one
    for ImageNet at 224 x 224.

    Crop and resize are one computation, `out = R_y @ image @ R_x^T`, with
    `R_y`, `R_x` the interpolation weight matrices of the crop, so the layer
    compiles with XLA and runs inside a compiled model, and inside
    `tf.data`, on every backend.

    Bicubic resizing overshoots near sharp edges, so with
    `interpolation="bicubic"` the output is clipped to `value_range` (the
    official code clips its images to `[0, 1]`), and a direct call checks
    that its input lies in `value_range`. Bilinear resizing keeps the values
    in the input's range. With `crop_proportion=1.0` and
    `interpolation="bilinear"`, the layer is a plain resize of the whole
    image, as `RandomResizedCrop(height, width)` with `training=False`.

    The layer is deterministic: `training` changes nothing. Images are
    channels-last.

    Args:
        height: int, height of the output images.
        width: int, width of the output images.
        crop_proportion: float in `(0, 1]`, the fraction of the image kept
            along the less-cropped side. Defaults to `0.875`.
        interpolation: `"bilinear"` or `"bicubic"`, how the crop is resized.
            Defaults to `"bicubic"`.
        value_range: tuple `(low, high)`, the range of the input values.
            Defaults to `(0, 255)`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: images of shape `(batch, H, W, channels)` or `(H, W,
            channels)`, any size and dtype.
        training: bool, ignored.

    Returns:
        Images of shape `(batch, height, width, channels)` (or without the
        batch axis, as the input) in the layer's compute dtype.

    Raises:
        ValueError: for an invalid argument; with `interpolation="bicubic"`,
            when a direct call receives images outside `value_range`.

    Example:

    ```python
    layer = keras_simclr.layers.CenterCrop(224, 224)
    images = np.random.uniform(0, 255, size=(8, 256, 320, 3))
    views = layer(images)  # (8, 224, 224, 3): the central 224 x 224 box
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          and its code (github.com/google-research/simclr).
    """

    draws_at_random = False

    def __init__(
        self,
        height,
        width,
        crop_proportion=0.875,
        interpolation="bicubic",
        value_range=(0, 255),
        **kwargs,
    ):
        height = _validation.check_int(height, "height")
        width = _validation.check_int(width, "width")
        crop_proportion = _validation.check_number(
            crop_proportion,
            "crop_proportion",
            minimum=0,
            maximum=1,
            include_minimum=False,
        )
        interpolation = _validation.check_choice(
            interpolation, "interpolation", INTERPOLATIONS
        )
        super().__init__(value_range=value_range, **kwargs)
        self.height = height
        self.width = width
        self.crop_proportion = crop_proportion
        self.interpolation = interpolation

    def call(self, inputs, training=None):
        inputs = self._check_value_range(inputs)
        return self._map_batch(inputs, self.crop_and_resize)

    def _depends_on_value_range(self):
        return self.interpolation == "bicubic"

    def crop_box(self, image_height, image_width):
        """The official centre crop of an `image_height` x `image_width`
        image.

        Args:
            image_height: int or scalar tensor.
            image_width: int or scalar tensor.

        Returns:
            `(top, left, crop_height, crop_width)`, float32 scalar tensors
            holding whole pixels.
        """
        bnp = self.backend.numpy
        image_height = self.backend.cast(image_height, "float32")
        image_width = self.backend.cast(image_width, "float32")
        proportion = self.crop_proportion
        # The official `center_crop` passes `width / height`.
        aspect_ratio = self.width / self.height
        # Constants in float64, as Python computes them there, then float32.
        wider = aspect_ratio > image_width / image_height
        crop_height = bnp.where(
            wider,
            bnp.round(proportion / aspect_ratio * image_width),
            bnp.round(proportion * image_height),
        )
        crop_width = bnp.where(
            wider,
            bnp.round(proportion * image_width),
            bnp.round(proportion * aspect_ratio * image_height),
        )
        crop_height = bnp.maximum(crop_height, 1.0)
        crop_width = bnp.maximum(crop_width, 1.0)
        top = bnp.floor((image_height - crop_height + 1.0) / 2.0)
        left = bnp.floor((image_width - crop_width + 1.0) / 2.0)
        return top, left, crop_height, crop_width

    def crop_and_resize(self, images):
        """Centre crop and resize of a float32 batch."""
        _, image_height, image_width, _ = self.backend.shape(images)
        images = resize_box(
            self.backend,
            images,
            self.crop_box(image_height, image_width),
            (self.height, self.width),
            self.interpolation,
        )
        if self.interpolation == "bicubic":
            images = self.backend.numpy.clip(images, *self.value_range)
        return images

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + (
            self.height,
            self.width,
            input_shape[-1],
        )

    def get_config(self):
        config = super().get_config()
        # The layer draws nothing at random.
        config.pop("seed", None)
        config.update(
            {
                "height": self.height,
                "width": self.width,
                "crop_proportion": self.crop_proportion,
                "interpolation": self.interpolation,
            }
        )
        return config
