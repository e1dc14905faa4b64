import keras

from keras_simclr import _validation
from keras_simclr.layers.data_layer import ImageDataLayer

# tf.image.rgb_to_grayscale's luma weights (ITU-R BT.601).
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)

# The brightness changes of SimCLR v1 and v2: the values of `impl`.
IMPLEMENTATIONS = ("v1", "v2")

# Order of the jitter operations in the per-image ranks.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)

# Channel n of an HSV pixel is `value - chroma * ramp((hue + n) mod 6)`, with
# the hue in sixths of the circle and n = 5, 3, 1 for red, green and blue.
_HUE_OFFSETS = (5.0, 3.0, 1.0)


def _per_image(backend, values):
    """Reshapes per-image values `(batch,)` to broadcast over `(b, h, w)`."""
    return backend.numpy.reshape(values, (-1, 1, 1))


def _blend(start, stop, weight):
    """`start` where `weight` is 0, `stop` where it is 1.

    Arithmetic instead of `where`, which is several times slower on
    TensorFlow's CPU kernels.
    """
    return start + weight * (stop - start)


def _split_channels(backend, images):
    """`(b, h, w, c)` to `c` planes `(b, h, w)` (contiguous slices); `c` is
    1 or 3."""
    planes = backend.numpy.transpose(images, (3, 0, 1, 2))
    if images.shape[-1] == 1:
        return [planes[0]]
    return [planes[0], planes[1], planes[2]]


def _merge_channels(backend, planes):
    # Stacking on the last axis, not stacking first and transposing: XLA on
    # CPU fuses such a transpose into the consumers of the layer (a mean, a
    # convolution) and then runs the colour steps several times slower.
    return backend.numpy.stack(planes, axis=-1)


def _hsv_parts(backend, red, green, blue):
    """Value, chroma and hue (sixths of the circle, in `[-1, 5]`) per pixel.

    Hue is arbitrary where chroma is 0 (gray pixels), which is harmless: the
    RGB rebuilt from it does not depend on it.
    """
    bnp = backend.numpy
    value = bnp.maximum(bnp.maximum(red, green), blue)
    chroma = value - bnp.minimum(bnp.minimum(red, green), blue)
    red_max = backend.cast(bnp.equal(value, red), "float32")
    green_max = backend.cast(bnp.equal(value, green), "float32")
    green_max = green_max * (1.0 - red_max)
    # Red max: (g - b) / c; green max: (b - r) / c + 2; blue: (r - g) / c + 4.
    numerator = (
        (red - green)
        + red_max * (2.0 * green - blue - red)
        + green_max * (blue + green - 2.0 * red)
    )
    hue = numerator / (chroma + 1e-12) + (4.0 - 4.0 * red_max - 2.0 * green_max)
    return value, chroma, hue


def _hsv_to_planes(backend, value, chroma, hue):
    """RGB planes from value, chroma and hue in sixths (any real number)."""
    bnp = backend.numpy
    planes = []
    for offset in _HUE_OFFSETS:
        k = hue + offset
        k = k - 6.0 * bnp.floor(k * (1.0 / 6.0))
        ramp = bnp.clip(bnp.minimum(k, 4.0 - k), 0.0, 1.0)
        planes.append(value - chroma * ramp)
    return planes


def _hsv_step(backend, planes, chroma_scale, hue_shift):
    """Scales the HSV saturation and rotates the hue of RGB planes.

    `chroma_scale` and `hue_shift` (sixths) broadcast against the planes. The
    saturation is clipped to 1 (chroma to value) as `tf.image` does, so the
    result stays in `[0, 1]` for inputs in `[0, 1]`.
    """
    value, chroma, hue = _hsv_parts(backend, *planes)
    chroma = backend.numpy.minimum(chroma * chroma_scale, value)
    return _hsv_to_planes(backend, value, chroma, hue + hue_shift)


def _with_planes(backend, images, function):
    planes = _split_channels(backend, images)
    return _merge_channels(backend, function(planes))


def adjust_brightness(backend, images, amount, impl="v2"):
    """Changes the brightness of each image, as SimCLR v1 or v2.

    Args:
        backend: the backend namespace to compute with (`layer.backend`).
        images: float32 images `(batch, height, width, channels)`.
        amount: float32 `(batch,)`. With `impl="v2"` a factor that multiplies
            the image (SimCLR v2); with `impl="v1"` a delta added to it
            (SimCLR v1, `tf.image.adjust_brightness`).
        impl: `"v1"` or `"v2"`.

    Returns:
        The images, not clipped.
    """
    amount = backend.numpy.reshape(amount, (-1, 1, 1, 1))
    return images + amount if impl == "v1" else images * amount


def adjust_contrast(backend, images, factor):
    """Scales each channel around its mean, as `tf.image.adjust_contrast`.

    Args:
        backend: the backend namespace to compute with (`layer.backend`).
        images: float32 images `(batch, height, width, channels)`.
        factor: float32 `(batch,)`.

    Returns:
        `(images - mean) * factor + mean`, with `mean` the mean of each
        channel of each image; not clipped.
    """
    mean = backend.numpy.mean(images, axis=(1, 2), keepdims=True)
    factor = backend.numpy.reshape(factor, (-1, 1, 1, 1))
    return (images - mean) * factor + mean


def adjust_saturation(backend, images, factor):
    """Scales the HSV saturation, as `tf.image.adjust_saturation`.

    The saturation is multiplied by `factor` and clipped to `[0, 1]`; hue and
    value are kept.

    Args:
        backend: the backend namespace to compute with (`layer.backend`).
        images: float32 RGB images `(batch, height, width, 3)` in `[0, 1]`.
        factor: float32 `(batch,)`, non-negative.

    Returns:
        The images, in `[0, 1]`.
    """
    factor = _per_image(backend, factor)
    return _with_planes(
        backend, images, lambda planes: _hsv_step(backend, planes, factor, 0.0)
    )


def adjust_hue(backend, images, delta):
    """Rotates the HSV hue, as `tf.image.adjust_hue`.

    Args:
        backend: the backend namespace to compute with (`layer.backend`).
        images: float32 RGB images `(batch, height, width, 3)` in `[0, 1]`.
        delta: float32 `(batch,)`, the rotation as a fraction of the hue
            circle.

    Returns:
        The images, in `[0, 1]`; saturation and value are kept.
    """
    shift = 6.0 * _per_image(backend, delta)
    return _with_planes(
        backend, images, lambda planes: _hsv_step(backend, planes, 1.0, shift)
    )


def check_channels(layer_name, shape):
    """Refuses images whose (static) channel count is neither 3 nor 1.

    Args:
        layer_name: str, the layer named in the message.
        shape: the input shape; its last entry may be None (not checked).

    Raises:
        ValueError: if the channel count is known and is not 1 or 3.
    """
    try:
        shape = tuple(shape)
    except (TypeError, ValueError):
        # None, or a TensorShape of unknown rank.
        return
    if not shape:
        return
    channels = shape[-1]
    if channels is not None and channels not in (1, 3):
        raise ValueError(
            f"{layer_name} expects channels-last RGB images (3 channels) or "
            "grayscale images (1 channel). Convert the images to one of "
            "them; for RGBA images, drop the alpha channel with "
            f"`images[..., :3]`. Received: inputs.shape={tuple(shape)}"
        )


def _gray_plane(planes):
    red, green, blue = planes
    red_weight, green_weight, blue_weight = LUMA_WEIGHTS
    return red_weight * red + green_weight * green + blue_weight * blue


def to_grayscale(backend, images):
    """Luma of RGB images replicated to 3 channels (`tf.image` weights)."""
    return _with_planes(
        backend, images, lambda planes: [_gray_plane(planes)] * 3
    )


@keras.saving.register_keras_serializable(package="keras_simclr")
class RandomColorDistortion(ImageDataLayer):
    """SimCLR's colour distortion: random colour jitter, then random grayscale.

    Follows `color_jitter` of the official SimCLR code with
    `random_order=True`, independently for every image of the batch. With
    probability `jitter_probability` the image gets brightness, contrast,
    saturation and hue changes of strengths `0.8 s`, `0.8 s`, `0.8 s` and
    `0.2 s` (`s = strength`), or the ranges given by `brightness`,
    `contrast`, `saturation` and `hue`, in a random order, each followed by
    clipping to the value range; then, with probability
    `grayscale_probability`, it is
    replaced by its luma (weights `0.2989, 0.587, 0.114`, as
    `tf.image.rgb_to_grayscale`) on all three channels.

    Grayscale images (one channel) get the brightness and contrast changes
    only, in their random order, with the same draws: on a gray image the
    saturation and hue changes are the identity (its chroma is 0) and so is
    the conversion to grayscale (up to the luma weights summing to 0.9999),
    so this is what the RGB distortion does to the image repeated on three
    channels, and the view keeps the single channel that the encoder takes.

    With `b`, `c`, `sat` and `h` the ranges of brightness, contrast,
    saturation and hue (by default `0.8 s`, `0.8 s`, `0.8 s` and `0.2 s`):

    - brightness: `impl="v2"` multiplies by a factor drawn from
      `U(max(0, 1 - b), 1 + b)`; `impl="v1"` adds a delta drawn from
      `U(-b, b)` (`tf.image.random_brightness`).
    - contrast: scales each channel around its mean by a factor from
      `U(max(0, 1 - c), 1 + c)` (`tf.image.adjust_contrast`).
    - saturation: scales the HSV saturation by a factor from
      `U(max(0, 1 - sat), 1 + sat)` and clips it to 1, as
      `tf.image.adjust_saturation` (torchvision blends with the grayscale
      image instead).
    - hue: rotates the HSV hue by `U(-h, h)` of the circle, as
      `tf.image.adjust_hue` (an exact HSV rotation, not the YIQ
      approximation).

    BYOL's colour jitter is `brightness=0.4, contrast=0.4, saturation=0.2,
    hue=0.1` with `impl="v1"` (its brightness change is additive), jitter
    probability 0.8 and grayscale probability 0.2. A range of 0 leaves that
    property unchanged.

    The random order is exact but cheap: saturation and hue change
    independent HSV coordinates and keep pixels in range, so they commute,
    clipping included. Every order is then one fixed sequence, HSV step,
    affine step, HSV step, affine step, HSV step, where the affine steps apply
    brightness and contrast in the image's order and each HSV step applies
    the saturation and hue changes that the image's order puts there (the
    identity elsewhere): 3 HSV round trips per view instead of 16 operations
    for "every operation at every position". Per-image choices are blends with
    0/1 weights, so everything stays batched.

    Images are channels-last, RGB or grayscale; other channel counts are
    refused when the layer is built. Called directly (eagerly, or in a
    `tf.data` map), the layer checks that its input lies in `value_range`
    and refuses images in `[0, 1]` with a range above 1, as
    `SimCLRAugmentation` does.

    Args:
        strength: non-negative float, `s` above. SimCLR uses 1.0 on ImageNet
            and 0.5 on CIFAR-10. Defaults to `1.0`.
        jitter_probability: float in `[0, 1]`, the probability of the colour
            jitter per image. Defaults to `0.8`.
        grayscale_probability: float in `[0, 1]`, the probability of
            converting an image to grayscale. Defaults to `0.2`.
        impl: `"v1"` or `"v2"`, the SimCLR version whose brightness change is
            used (additive or multiplicative). Defaults to `"v2"`.
        brightness: non-negative float or `None` (the default:
            `0.8 * strength`), the range `b` of the brightness change.
        contrast: non-negative float or `None` (the default:
            `0.8 * strength`), the range `c` of the contrast factor.
        saturation: non-negative float or `None` (the default:
            `0.8 * strength`), the range `sat` of the saturation factor.
        hue: float in `[0, 0.5]` or `None` (the default: `0.2 * strength`),
            the range `h` of the hue rotation, in turns.
        value_range: tuple `(low, high)`, the range of the input values.
            Defaults to `(0, 255)`.
        seed: int or `None`, seed of the layer's random draws.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: RGB images `(batch, height, width, 3)` or `(height, width, 3)`,
            or grayscale images with 1 channel.
        training: bool. `False` returns the inputs unchanged (cast to the
            compute dtype). Defaults to `True`.

    Returns:
        Images of the input's shape, in `value_range`, in the layer's compute
        dtype.

    Example:

    ```python
    layer = keras_simclr.layers.RandomColorDistortion(strength=0.5, seed=0)
    images = np.random.uniform(0, 255, size=(8, 32, 32, 3))
    distorted = layer(images)

    # BYOL's colour jitter:
    byol = keras_simclr.layers.RandomColorDistortion(
        brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, impl="v1"
    )
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
        strength=1.0,
        jitter_probability=0.8,
        grayscale_probability=0.2,
        impl="v2",
        brightness=None,
        contrast=None,
        saturation=None,
        hue=None,
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        strength = _validation.check_number(strength, "strength", minimum=0)
        jitter_probability = _validation.check_probability(
            jitter_probability, "jitter_probability"
        )
        grayscale_probability = _validation.check_probability(
            grayscale_probability, "grayscale_probability"
        )
        impl = _validation.check_choice(impl, "impl", IMPLEMENTATIONS)
        brightness = _validation.check_number(
            brightness, "brightness", minimum=0, allow_none=True
        )
        contrast = _validation.check_number(
            contrast, "contrast", minimum=0, allow_none=True
        )
        saturation = _validation.check_number(
            saturation, "saturation", minimum=0, allow_none=True
        )
        hue = _validation.check_number(
            hue, "hue", minimum=0, maximum=0.5, allow_none=True
        )
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.strength = strength
        self.jitter_probability = jitter_probability
        self.grayscale_probability = grayscale_probability
        self.impl = impl
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue

    def jitter_ranges(self):
        """The ranges `(brightness, contrast, saturation, hue)` in use: the
        overrides where given, else SimCLR's `0.8 s, 0.8 s, 0.8 s, 0.2 s`."""
        defaults = (0.8 * self.strength,) * 3 + (0.2 * self.strength,)
        given = (self.brightness, self.contrast, self.saturation, self.hue)
        return tuple(
            float(default if value is None else value)
            for value, default in zip(given, defaults)
        )

    def build(self, input_shape):
        check_channels(self.__class__.__name__, input_shape)
        self.built = True

    def augment(self, images):
        # Also here: a tf.data graph on the JAX and PyTorch backends builds
        # the layer without a shape.
        check_channels(self.__class__.__name__, images.shape)
        transformation = self.get_random_transformation(
            self.backend.shape(images)[0]
        )
        return self.transform_images(images, transformation)

    def get_random_transformation(self, batch_size):
        """Draws the per-image parameters of the distortion.

        Returns:
            A dict of tensors with a leading batch axis: `"jitter"` and
            `"grayscale"` (bool, whether each part applies), `"ranks"` (int,
            `(batch, 4)`: the step at which brightness, contrast, saturation
            and hue run), and float32 `"brightness"` (factor or delta, see
            `impl`), `"contrast"`, `"saturation"` (factors) and `"hue"`
            (rotation).
        """
        bnp = self.backend.numpy
        shape = (batch_size,)
        brightness, contrast, saturation, hue = self.jitter_ranges()

        def factor_range(amount):
            return (max(0.0, 1.0 - amount), 1.0 + amount)

        if self.impl == "v1":
            brightness = self._uniform(shape, -brightness, brightness)
        else:
            brightness = self._uniform(shape, *factor_range(brightness))
        # argsort of argsort turns random keys into a random permutation.
        keys = self._uniform((batch_size, 4))
        return {
            "jitter": self._uniform(shape) < self.jitter_probability,
            "ranks": bnp.argsort(bnp.argsort(keys, axis=1), axis=1),
            "brightness": brightness,
            "contrast": self._uniform(shape, *factor_range(contrast)),
            "saturation": self._uniform(shape, *factor_range(saturation)),
            "hue": self._uniform(shape, -hue, hue),
            "grayscale": self._uniform(shape) < self.grayscale_probability,
        }

    def transform_images(self, images, transformation):
        """Applies the distortion described by `transformation`.

        Args:
            images: float32 RGB images `(batch, height, width, 3)`, or
                grayscale images with 1 channel, in `[0, 1]` (values outside
                are clipped first).
            transformation: a dict from `get_random_transformation`.

        Returns:
            The distorted images, in `[0, 1]`.
        """
        bnp = self.backend.numpy
        images = bnp.clip(images, 0.0, 1.0)
        planes = _split_channels(self.backend, images)
        if self.jitter_probability > 0.0 and max(self.jitter_ranges()) > 0.0:
            jittered = self._jitter(planes, transformation)
            weight = self._mask(transformation["jitter"])
            planes = [_blend(a, b, weight) for a, b in zip(planes, jittered)]
        if self.grayscale_probability > 0.0 and len(planes) == 3:
            gray = _gray_plane(planes)
            weight = self._mask(transformation["grayscale"])
            planes = [_blend(plane, gray, weight) for plane in planes]
        return _merge_channels(self.backend, planes)

    def _mask(self, selected):
        return _per_image(self.backend, self.backend.cast(selected, "float32"))

    def _jitter(self, planes, transformation):
        """The four jitter operations in each image's own order.

        Saturation and hue act on independent HSV coordinates and keep pixels
        inside `[0, 1]`, so they commute, clipping included; only their
        position relative to brightness and contrast matters. Any order is
        therefore the fixed sequence HSV, affine, HSV, affine, HSV: the two
        affine steps run brightness and contrast in the image's order, and
        saturation and hue go to the HSV step after as many affine operations
        as precede them; the other steps are the identity for that image.
        This computes 3 HSV round trips instead of the 16 operations of
        evaluating every operation at every one of 4 positions.
        """
        bnp = self.backend.numpy
        ranks = self.backend.cast(transformation["ranks"], "float32")
        rank = [ranks[:, operation] for operation in range(4)]
        brightness_first = self.backend.cast(
            rank[BRIGHTNESS] < rank[CONTRAST], "float32"
        )

        def hsv_slot(operation):
            """How many of brightness and contrast run before `operation`."""
            slot = 0.0
            for other in (BRIGHTNESS, CONTRAST):
                slot = slot + self.backend.cast(
                    rank[other] < rank[operation], "float32"
                )
            return slot

        saturation_slot = hsv_slot(SATURATION)
        hue_slot = hsv_slot(HUE)
        saturation = transformation["saturation"]
        hue_shift = 6.0 * transformation["hue"]
        brightness = transformation["brightness"]
        contrast = transformation["contrast"]

        def hsv(planes, slot):
            if len(planes) == 1:
                # A gray image has no saturation or hue to change.
                return planes
            chroma_scale = _blend(
                1.0, saturation, self._equal(saturation_slot, slot)
            )
            shift = hue_shift * self._equal(hue_slot, slot)
            return _hsv_step(
                self.backend,
                planes,
                _per_image(self.backend, chroma_scale),
                _per_image(self.backend, shift),
            )

        def affine(planes, is_brightness):
            is_brightness = _per_image(self.backend, is_brightness)
            factor = _per_image(self.backend, contrast)
            if self.impl == "v1":
                alpha = _blend(factor, 1.0, is_brightness)
                brightness_offset = _per_image(self.backend, brightness)
            else:
                alpha = _blend(
                    factor, _per_image(self.backend, brightness), is_brightness
                )
                brightness_offset = 0.0
            outputs = []
            for plane in planes:
                mean = bnp.mean(plane, axis=(1, 2), keepdims=True)
                beta = _blend(
                    (1.0 - factor) * mean, brightness_offset, is_brightness
                )
                outputs.append(bnp.clip(alpha * plane + beta, 0.0, 1.0))
            return outputs

        planes = hsv(planes, 0.0)
        planes = affine(planes, brightness_first)
        planes = hsv(planes, 1.0)
        planes = affine(planes, 1.0 - brightness_first)
        return hsv(planes, 2.0)

    def _equal(self, a, b):
        return self.backend.cast(self.backend.numpy.equal(a, b), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "strength": self.strength,
                "jitter_probability": self.jitter_probability,
                "grayscale_probability": self.grayscale_probability,
                "impl": self.impl,
                "brightness": self.brightness,
                "contrast": self.contrast,
                "saturation": self.saturation,
                "hue": self.hue,
            }
        )
        return config
