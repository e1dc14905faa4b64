import keras

from keras_simclr import _validation
from keras_simclr.layers.augmentation_pair import AugmentationPair
from keras_simclr.layers.center_crop import CenterCrop
from keras_simclr.layers.data_layer import ImageDataLayer
from keras_simclr.layers.random_color_distortion import IMPLEMENTATIONS
from keras_simclr.layers.random_color_distortion import RandomColorDistortion
from keras_simclr.layers.random_color_distortion import check_channels
from keras_simclr.layers.random_gaussian_blur import RandomGaussianBlur
from keras_simclr.layers.random_resized_crop import INTERPOLATIONS
from keras_simclr.layers.random_resized_crop import SAMPLERS
from keras_simclr.layers.random_resized_crop import RandomResizedCrop
from keras_simclr.layers.random_solarization import RandomSolarization

# The colour jitter ranges (brightness, contrast, saturation, hue) per unit
# of `color_jitter_strength`: SimCLR's `0.8 s, 0.8 s, 0.8 s, 0.2 s` and
# BYOL's `0.4, 0.4, 0.2, 0.1` (its Appendix B).
SIMCLR_JITTER = (0.8, 0.8, 0.8, 0.2)
BYOL_JITTER = (0.4, 0.4, 0.2, 0.1)

# Per preset; pairs hold the values of view 1 and view 2. SimCLR Appendix A
# / B.9: colour strength 0.5 and no blur on CIFAR-10, 1.0 and blur 0.5 on
# ImageNet, with the official code's crops (`sample_distorted_bounding_box`,
# bicubic) and evaluation on a centre crop of 87.5%. BYOL Appendix B and its
# code: its own crop sampler (`_decode_and_random_crop`, bicubic), its own
# jitter with an additive brightness change, blur 1.0 / 0.1 and
# solarization 0.0 / 0.2.
PRESETS = {
    "cifar": {
        "color_jitter_strength": 0.5,
        "jitter": SIMCLR_JITTER,
        "blur_probability": (0.0, 0.0),
        "solarization_probability": (0.0, 0.0),
        "crop_sampler": "torchvision",
        "crop_interpolation": "bilinear",
        "impl": "v2",
        "eval_crop_proportion": 1.0,
    },
    "imagenet": {
        "color_jitter_strength": 1.0,
        "jitter": SIMCLR_JITTER,
        "blur_probability": (0.5, 0.5),
        "solarization_probability": (0.0, 0.0),
        "crop_sampler": "simclr",
        "crop_interpolation": "bicubic",
        "impl": "v2",
        "eval_crop_proportion": 0.875,
    },
    "byol": {
        "color_jitter_strength": 1.0,
        "jitter": BYOL_JITTER,
        "blur_probability": (1.0, 0.1),
        "solarization_probability": (0.0, 0.2),
        "crop_sampler": "byol",
        "crop_interpolation": "bicubic",
        "impl": "v1",
        "eval_crop_proportion": 0.875,
    },
}

VIEWS = (1, 2)

# Sublayer seeds of one view are `seed` to `seed + 3`; the second view of a
# pair starts after them.
SEEDS_PER_VIEW = 4


def preset_settings(preset, view=1):
    """The settings of one view of a preset, as `SimCLRAugmentation` uses
    them.

    Args:
        preset: `"cifar"`, `"imagenet"` or `"byol"`.
        view: 1 or 2, which view (only `"byol"` makes them differently).

    Returns:
        A dict: `color_jitter_strength`, `jitter` (the ranges of brightness,
        contrast, saturation and hue per unit strength),
        `blur_probability`, `solarization_probability`, `crop_sampler`,
        `crop_interpolation`, `impl` and `eval_crop_proportion`.
    """
    preset = _validation.check_choice(preset, "preset", tuple(PRESETS))
    view = _validation.check_choice(view, "view", VIEWS)
    settings = dict(PRESETS[preset])
    for key in ("blur_probability", "solarization_probability"):
        settings[key] = settings[key][view - 1]
    return settings


@keras.saving.register_keras_serializable(package="keras_simclr")
class SimCLRAugmentation(ImageDataLayer):
    """Makes one SimCLR (or BYOL) view of each image.

    Applies, independently to each image of the batch:

    1. `RandomResizedCrop` to `image_size` (area `crop_scale`, aspect ratio
       3/4 to 4/3, boxes drawn by `crop_sampler`, resized with
       `crop_interpolation`), with a left-right flip of probability 0.5;
    2. `RandomColorDistortion`: colour jitter with probability 0.8 in random
       order, then grayscale with probability 0.2;
    3. `RandomGaussianBlur` with probability `blur_probability`, sigma in
       `[0.1, 2.0]` and a kernel of 10% of `image_size` (skipped when the
       probability is 0);
    4. `RandomSolarization` with probability `solarization_probability`,
       threshold the middle of the value range (skipped when the
       probability is 0).

    Arguments left as `None` take the preset's value:

    | | `"cifar"` | `"imagenet"` | `"byol"` |
    | --- | --- | --- | --- |
    | crop sampler | torchvision | simclr | byol |
    | crop and evaluation resize | bilinear | bicubic | bicubic |
    | jitter ranges b / c / s / h | .4 / .4 / .4 / .1 | .8 / .8 / .8 / .2 | .4 / .4 / .2 / .1 |
    | brightness change (`impl`) | factor, `"v2"` | factor, `"v2"` | delta, `"v1"` |
    | blur probability, view 1 / 2 | 0 / 0 | 0.5 / 0.5 | 1.0 / 0.1 |
    | solarization, view 1 / 2 | 0 / 0 | 0 / 0 | 0 / 0.2 |
    | evaluation crop proportion | 1.0 | 0.875 | 0.875 |

    (b / c / s / h: brightness, contrast, saturation, hue.)

    The jitter ranges are those at the preset's `color_jitter_strength`
    (0.5 for `"cifar"`, 1.0 otherwise); a strength `s` scales them: SimCLR's
    ranges are `0.8 s, 0.8 s, 0.8 s, 0.2 s`, BYOL's `0.4 s, 0.4 s, 0.2 s,
    0.1 s`. `"cifar"` and `"imagenet"` follow the SimCLR paper and its
    official code (its crop sampler and bicubic resize on ImageNet; CIFAR
    keeps torchvision's sampler and bilinear resize). `"byol"` follows
    BYOL's Appendix B and its official code: its crop sampler (one draw of
    area and aspect ratio per image, clamped to the image, see
    `RandomResizedCrop(sampler="byol")`) and its brightness change, an
    additive delta (`impl="v1"`).

    A configuration stores `crop_sampler=None` unless one was given, so a
    `"byol"` layer saved before BYOL's sampler existed (when the preset
    cropped with SimCLR's) loads with BYOL's sampler, as the preset now
    means; give `crop_sampler="simclr"` to keep SimCLR's.

    BYOL makes its two views differently: `view=1` is always blurred and
    never solarized, `view=2` is blurred with probability 0.1 and solarized
    with probability 0.2. `view` selects which; with `"cifar"` and
    `"imagenet"` both views come from one distribution and `view` changes
    nothing. `SimCLRAugmentation.pair(...)` makes the two views' layers at
    once, as an `AugmentationPair` that `SimCLRPretrainer` takes as its
    `augmentation`. For `"cifar"` and `"imagenet"`, calling one layer twice
    on the same batch also gives the two views.

    The blur pads by reflection, so a constant image stays constant; BYOL's
    and SimCLR's code pad with zeros (`RandomGaussianBlur(padding="zeros")`
    reproduces it).

    With `training=False` the layer is the preset's evaluation transform:
    the official SimCLR centre crop (`CenterCrop`), which keeps
    `eval_crop_proportion` of the image, resized to `image_size` with
    `crop_interpolation`. `"imagenet"` and `"byol"` take
    87.5% of the image with bicubic interpolation, as the official SimCLR
    and BYOL evaluation; `"cifar"` resizes the whole image bilinearly (the
    official code does not crop images of 32 pixels or less). An
    `eval_crop_proportion` of 1.0 always means the whole image, stretched
    to `image_size` when its aspect ratio differs. A model that
    starts with the layer therefore also accepts plain images at inference
    time.

    The layer runs inside a compiled model on every backend (augmentation on
    the accelerator) and in `tf.data.Dataset.map` on every backend. Images are
    channels-last, RGB or grayscale: a grayscale image (1 channel) keeps its
    channel and gets the brightness and contrast changes of the colour
    distortion, which is what the RGB distortion does to a gray image (see
    `RandomColorDistortion`). Other channel counts are refused when the
    layer is built, or when a model that contains it is built.

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
        preset: `"imagenet"`, `"cifar"` or `"byol"`. Defaults to
            `"imagenet"`.
        color_jitter_strength: non-negative float or `None` (the preset's),
            the factor of the preset's jitter ranges.
        blur_probability: float in `[0, 1]` or `None` (the preset's, for
            this `view`).
        crop_scale: tuple of two floats in `(0, 1]`, the range of the crop
            area as a fraction of the image. Defaults to `(0.08, 1.0)`.
        impl: `"v1"` (additive brightness change), `"v2"` (multiplicative)
            or `None` (the preset's).
        solarization_probability: float in `[0, 1]` or `None` (the
            preset's, for this `view`).
        view: 1 or 2, which of the preset's two views the layer makes.
            Defaults to `1`.
        crop_sampler: `"torchvision"`, `"simclr"`, `"byol"` or `None` (the
            preset's), how crop boxes are drawn (see `RandomResizedCrop`).
        crop_interpolation: `"bilinear"`, `"bicubic"` or `None` (the
            preset's), how crops, and the evaluation image, are resized.
        eval_crop_proportion: float in `(0, 1]` or `None` (the preset's),
            the proportion of the image that the evaluation transform keeps.
        value_range: tuple `(low, high)`, the range of the input values; the
            views come out in the same range. Defaults to `(0, 255)`.
        seed: int or `None`. When given, the crop, colour, blur and
            solarization layers get the seeds `seed` to `seed + 3`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: RGB images `(batch, H, W, 3)` or `(H, W, 3)`, any size, or
            grayscale images with 1 channel.
        training: bool. `True` (the default) makes a random view; `False`
            applies the evaluation transform.

    Returns:
        Views of shape `(batch, height, width, channels)` (or without the
        batch axis, as the input) in `value_range` and the layer's compute
        dtype.

    Raises:
        ValueError: for an invalid argument (naming it); when called
            directly on images outside `value_range`, or on images in
            `[0, 1]` with a `value_range` above 1; when built for images
            with neither 1 nor 3 channels.

    Example:

    ```python
    augment = keras_simclr.layers.SimCLRAugmentation(32, preset="cifar")
    images = np.random.randint(0, 256, size=(8, 32, 32, 3)).astype("uint8")
    view_a, view_b = augment(images), augment(images)

    # or in a tf.data pipeline, on any backend:
    dataset = dataset.batch(256).map(lambda x: (augment(x), augment(x)))

    # BYOL's two views, made differently:
    pair = keras_simclr.layers.SimCLRAugmentation.pair(224, preset="byol")
    view_1, view_2 = pair(images)
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          Appendix A.
        - [Chen et al., 2020](https://arxiv.org/abs/2006.10029), SimCLR v2.
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), BYOL,
          Appendix B.
    """

    def __init__(
        self,
        image_size,
        preset="imagenet",
        color_jitter_strength=None,
        blur_probability=None,
        crop_scale=(0.08, 1.0),
        impl=None,
        solarization_probability=None,
        view=1,
        crop_sampler=None,
        crop_interpolation=None,
        eval_crop_proportion=None,
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        size = _validation.check_image_size(image_size)
        preset = _validation.check_choice(preset, "preset", tuple(PRESETS))
        view = _validation.check_choice(view, "view", VIEWS)
        _validation.check_number(
            color_jitter_strength,
            "color_jitter_strength",
            minimum=0,
            allow_none=True,
        )
        _validation.check_probability(
            blur_probability, "blur_probability", allow_none=True
        )
        _validation.check_probability(
            solarization_probability, "solarization_probability", allow_none=True
        )
        crop_scale = _validation.check_interval(
            crop_scale, "crop_scale", minimum=0, maximum=1, include_minimum=False
        )
        if impl is not None:
            impl = _validation.check_choice(impl, "impl", IMPLEMENTATIONS)
        if crop_sampler is not None:
            crop_sampler = _validation.check_choice(
                crop_sampler, "crop_sampler", SAMPLERS
            )
        if crop_interpolation is not None:
            crop_interpolation = _validation.check_choice(
                crop_interpolation, "crop_interpolation", INTERPOLATIONS
            )
        eval_crop_proportion = _validation.check_number(
            eval_crop_proportion,
            "eval_crop_proportion",
            minimum=0,
            maximum=1,
            include_minimum=False,
            allow_none=True,
        )
        seed = _validation.check_seed(seed)
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.image_size = image_size
        self.preset = preset
        self.color_jitter_strength = color_jitter_strength
        self.blur_probability = blur_probability
        self.crop_scale = crop_scale
        self.impl = impl
        self.solarization_probability = solarization_probability
        self.view = view
        self.crop_sampler = crop_sampler
        self.crop_interpolation = crop_interpolation

        defaults = preset_settings(preset, view)

        def chosen(value, key):
            return defaults[key] if value is None else value

        strength = chosen(color_jitter_strength, "color_jitter_strength")
        blur = chosen(blur_probability, "blur_probability")
        solarization = chosen(solarization_probability, "solarization_probability")
        interpolation = chosen(crop_interpolation, "crop_interpolation")
        self.eval_crop_proportion = eval_crop_proportion

        def sublayer_seed(offset):
            return None if seed is None else seed + offset

        # The sublayers work on [0, 1] float32 images: this layer converts
        # the value range once, and casts to its own dtype at the end.
        self.crop = RandomResizedCrop(
            size[0],
            size[1],
            scale=crop_scale,
            horizontal_flip_probability=0.5,
            sampler=chosen(crop_sampler, "crop_sampler"),
            interpolation=interpolation,
            value_range=(0, 1),
            seed=sublayer_seed(0),
            dtype="float32",
            name="random_resized_crop",
        )
        jitter = {}
        if defaults["jitter"] != SIMCLR_JITTER:
            # Explicit ranges; SimCLR's are the colour layer's own defaults.
            names = ("brightness", "contrast", "saturation", "hue")
            jitter = {
                name: base * strength
                for name, base in zip(names, defaults["jitter"])
            }
        self.color_distortion = RandomColorDistortion(
            strength=strength,
            impl=chosen(impl, "impl"),
            **jitter,
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
        self.solarization = None
        if solarization > 0.0:
            self.solarization = RandomSolarization(
                probability=solarization,
                value_range=(0, 1),
                seed=sublayer_seed(3),
                dtype="float32",
                name="random_solarization",
            )
        self.center_crop = CenterCrop(
            size[0],
            size[1],
            crop_proportion=chosen(eval_crop_proportion, "eval_crop_proportion"),
            interpolation=interpolation,
            value_range=(0, 1),
            dtype="float32",
            name="center_crop",
        )

    @classmethod
    def pair(cls, image_size, preset="imagenet", seed=None, **kwargs):
        """The two views' layers of a preset, as an `AugmentationPair`.

        `view_a` makes view 1 and `view_b` view 2 (BYOL's two different
        views for `preset="byol"`; two views of one distribution for the
        other presets). With a `seed`, `view_b`'s sublayers get seeds 4
        above `view_a`'s, so the two views differ.

        Args:
            image_size: int or tuple `(height, width)`, the size of the
                views.
            preset: `"imagenet"`, `"cifar"` or `"byol"`. Defaults to
                `"imagenet"`.
            seed: int or `None`, the seed of `view_a`.
            **kwargs: other arguments of `SimCLRAugmentation`, given to
                both views (not `view` or `name`).

        Returns:
            An `AugmentationPair`, named `"augmentation_pair"`, whose view
            layers are named `"view_a"` and `"view_b"`.

        Example:

        ```python
        pair = keras_simclr.layers.SimCLRAugmentation.pair(
            224, preset="byol", seed=0
        )
        view_1, view_2 = pair(images)
        pretrainer = keras_simclr.models.SimCLRPretrainer(
            encoder, augmentation=pair, objective="byol"
        )
        ```
        """
        for key in ("view", "name"):
            if key in kwargs:
                raise ValueError(
                    f"`SimCLRAugmentation.pair` sets `{key}` of each view "
                    f"itself. Received: {key}={kwargs[key]!r}"
                )
        seed = _validation.check_seed(seed)
        view_a = cls(
            image_size, preset=preset, view=1, seed=seed, name="view_a", **kwargs
        )
        view_b = cls(
            image_size,
            preset=preset,
            view=2,
            seed=None if seed is None else seed + SEEDS_PER_VIEW,
            name="view_b",
            **kwargs,
        )
        return AugmentationPair(view_a, view_b, name="augmentation_pair")

    def build(self, input_shape):
        check_channels(self.__class__.__name__, input_shape)
        # Shapes are unknown (None) when a tf.data graph calls the layer on
        # the JAX or torch backend; the sublayers have no shape-dependent state.
        view_shape = None
        if input_shape is not None:
            view_shape = self.crop.compute_output_shape(input_shape)
        self.crop.build(input_shape)
        self.center_crop.build(input_shape)
        self.color_distortion.build(view_shape)
        for layer in (self.blur, self.solarization):
            if layer is not None:
                layer.build(view_shape)
        self.built = True

    def call(self, inputs, training=True):
        if not training:
            return self._map_batch(inputs, self._evaluate_in_unit_range)
        inputs = self._check_value_range(inputs)
        return self._map_batch(inputs, self._augment_in_unit_range)

    def _evaluate_in_unit_range(self, images):
        # Bicubic resizing clips to its value range, which is [0, 1] here.
        low, high = self.value_range
        images = (images - low) / (high - low)
        if self.center_crop.crop_proportion == 1.0:
            # The whole image, whatever its aspect ratio.
            images = self.crop(images, training=False)
        else:
            images = self.center_crop(images)
        return images * (high - low) + low

    def augment(self, images):
        images = self.crop(images, training=True)
        images = self.color_distortion(images, training=True)
        for layer in (self.blur, self.solarization):
            if layer is not None:
                images = layer(images, training=True)
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
                "solarization_probability": self.solarization_probability,
                "view": self.view,
                "crop_sampler": self.crop_sampler,
                "crop_interpolation": self.crop_interpolation,
                "eval_crop_proportion": self.eval_crop_proportion,
            }
        )
        return config
