import keras

from keras_simclr import _validation
from keras_simclr.layers.data_layer import ImageDataLayer
from keras_simclr.layers.random_color_distortion import IMPLEMENTATIONS
from keras_simclr.layers.random_color_distortion import RandomColorDistortion
from keras_simclr.layers.random_color_distortion import check_channels
from keras_simclr.layers.random_gaussian_blur import RandomGaussianBlur
from keras_simclr.layers.random_resized_crop import RandomResizedCrop

# SimCLR Appendix A / B.9: colour strength 0.5 and no blur on CIFAR-10.
PRESETS = {
    "cifar": {"color_jitter_strength": 0.5, "blur_probability": 0.0},
    "imagenet": {"color_jitter_strength": 1.0, "blur_probability": 0.5},
}


@keras.saving.register_keras_serializable(package="keras_simclr")
class SimCLRAugmentation(ImageDataLayer):
    """Makes one SimCLR view of each image.

    Applies, independently to each image of the batch:

    1. `RandomResizedCrop` to `image_size` (area `crop_scale`, aspect ratio
       3/4 to 4/3), with a left-right flip of probability 0.5;
    2. `RandomColorDistortion` of strength `color_jitter_strength` (jitter
       with probability 0.8 in random order, grayscale with probability 0.2);
    3. `RandomGaussianBlur` with probability `blur_probability`, sigma in
       `[0.1, 2.0]` and a kernel of 10% of `image_size` (skipped when the
       probability is 0).

    Call it twice on the same batch for the two views of SimCLR. The presets
    follow the SimCLR paper: `"imagenet"` has strength 1.0 and blur with
    probability 0.5; `"cifar"` strength 0.5 and no blur. Arguments left as
    `None` take the preset's value.

    The layer runs inside a compiled model on every backend (augmentation on
    the accelerator) and in `tf.data.Dataset.map` on every backend. Images are
    channels-last, RGB or grayscale: a grayscale image (1 channel) keeps its
    channel and gets the brightness and contrast changes of the colour
    distortion, which is what the RGB distortion does to a gray image (see
    `RandomColorDistortion`). Other channel counts are refused when the
    layer is built, or when a model that contains it is built. With
    `training=False` it only resizes the whole image to `image_size`
    (bilinear), so a model that starts with it also accepts plain images at
    inference time.

    Called directly (eagerly, or in a `tf.data` map), the layer checks that
    its input lies in `value_range`, and refuses images in `[0, 1]` given
    with the default `(0, 255)` (they would be read as nearly black); see
    `keras_simclr.layers.data_layer.check_value_range`. In a `tf.data` map
    the check is a TensorFlow assertion, reported by TensorFlow as a
    `tf.errors.InvalidArgumentError` with the same message. Inside a model
    (a compiled training step) the layer adds no check: the model's `fit`
    checks its data.

    Args:
        image_size: int or tuple `(height, width)`, the size of the views.
        preset: `"imagenet"` or `"cifar"`. Defaults to `"imagenet"`.
        color_jitter_strength: non-negative float or `None` (the preset's).
        blur_probability: float in `[0, 1]` or `None` (the preset's).
        crop_scale: tuple of two floats in `(0, 1]`, the range of the crop
            area as a fraction of the image. Defaults to `(0.08, 1.0)`.
        impl: `"v1"` or `"v2"`, the SimCLR version of the brightness change.
            Defaults to `"v2"`.
        value_range: tuple `(low, high)`, the range of the input values; the
            views come out in the same range. Defaults to `(0, 255)`.
        seed: int or `None`. When given, the crop, colour and blur layers get
            the seeds `seed`, `seed + 1` and `seed + 2`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: RGB images `(batch, H, W, 3)` or `(H, W, 3)`, any size, or
            grayscale images with 1 channel.
        training: bool. Defaults to `True`.

    Returns:
        Views of shape `(batch, height, width, channels)` (or without the
        batch axis, as the input) in `value_range` and the layer's compute
        dtype.

    Raises:
        ValueError: when called directly on images outside `value_range`,
            or on images in `[0, 1]` with a `value_range` above 1; when
            built for images with neither 1 nor 3 channels.

    Example:

    ```python
    augment = keras_simclr.layers.SimCLRAugmentation(32, preset="cifar")
    images = np.random.randint(0, 256, size=(8, 32, 32, 3)).astype("uint8")
    view_a, view_b = augment(images), augment(images)

    # or in a tf.data pipeline, on any backend:
    dataset = dataset.batch(256).map(lambda x: (augment(x), augment(x)))
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          Appendix A.
        - [Chen et al., 2020](https://arxiv.org/abs/2006.10029), SimCLR v2.
    """

    def __init__(
        self,
        image_size,
        preset="imagenet",
        color_jitter_strength=None,
        blur_probability=None,
        crop_scale=(0.08, 1.0),
        impl="v2",
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        size = _validation.check_image_size(image_size)
        preset = _validation.check_choice(preset, "preset", tuple(PRESETS))
        _validation.check_number(
            color_jitter_strength,
            "color_jitter_strength",
            minimum=0,
            allow_none=True,
        )
        _validation.check_probability(
            blur_probability, "blur_probability", allow_none=True
        )
        crop_scale = _validation.check_interval(
            crop_scale, "crop_scale", minimum=0, maximum=1, include_minimum=False
        )
        impl = _validation.check_choice(impl, "impl", IMPLEMENTATIONS)
        seed = _validation.check_seed(seed)
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.image_size = image_size
        self.preset = preset
        self.color_jitter_strength = color_jitter_strength
        self.blur_probability = blur_probability
        self.crop_scale = crop_scale
        self.impl = impl

        defaults = PRESETS[preset]
        strength = color_jitter_strength
        if strength is None:
            strength = defaults["color_jitter_strength"]
        blur = blur_probability
        if blur is None:
            blur = defaults["blur_probability"]

        def sublayer_seed(offset):
            return None if seed is None else seed + offset

        # The sublayers work on [0, 1] float32 images: this layer converts
        # the value range once, and casts to its own dtype at the end.
        self.crop = RandomResizedCrop(
            size[0],
            size[1],
            scale=crop_scale,
            horizontal_flip_probability=0.5,
            value_range=(0, 1),
            seed=sublayer_seed(0),
            dtype="float32",
            name="random_resized_crop",
        )
        self.color_distortion = RandomColorDistortion(
            strength=strength,
            impl=impl,
            value_range=(0, 1),
            seed=sublayer_seed(1),
            dtype="float32",
            name="random_color_distortion",
        )
        self.blur = None
        if blur > 0.0:
            self.blur = RandomGaussianBlur(
                probability=blur,
                value_range=(0, 1),
                seed=sublayer_seed(2),
                dtype="float32",
                name="random_gaussian_blur",
            )

    def build(self, input_shape):
        check_channels(self.__class__.__name__, input_shape)
        # Shapes are unknown (None) when a tf.data graph calls the layer on
        # the JAX or torch backend; the sublayers have no shape-dependent state.
        view_shape = None
        if input_shape is not None:
            view_shape = self.crop.compute_output_shape(input_shape)
        self.crop.build(input_shape)
        self.color_distortion.build(view_shape)
        if self.blur is not None:
            self.blur.build(view_shape)
        self.built = True

    def call(self, inputs, training=True):
        if not training:
            return self.backend.cast(
                self.crop(inputs, training=False), self.compute_dtype
            )
        inputs = self._check_value_range(inputs)
        return self._map_batch(inputs, self._augment_in_unit_range)

    def augment(self, images):
        images = self.crop(images, training=True)
        images = self.color_distortion(images, training=True)
        if self.blur is not None:
            images = self.blur(images, training=True)
        return images

    def compute_output_shape(self, input_shape):
        # A model that contains the layer calls this when it is built, so
        # channels that the colour distortion cannot take are refused then.
        check_channels(self.__class__.__name__, input_shape)
        return self.crop.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_size": self.image_size,
                "preset": self.preset,
                "color_jitter_strength": self.color_jitter_strength,
                "blur_probability": self.blur_probability,
                "crop_scale": self.crop_scale,
                "impl": self.impl,
            }
        )
        return config
