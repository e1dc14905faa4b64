import keras

from keras_simclr import _validation
from keras_simclr.layers.data_layer import ImageDataLayer

PADDINGS = ("reflect", "edge", "zeros")


def gaussian_blur_matrix(backend, sigma, size, radius, padding="reflect"):
    """Per-image matrices that blur one image axis with a Gaussian kernel.

    Row `i` holds the weights of the `size` source pixels for output pixel
    `i`: the normalised kernel `exp(-d^2 / (2 sigma^2))`, `|d| <= radius`,
    with the taps that fall outside the axis folded back by `padding`.

    Args:
        backend: the backend namespace to compute with (`layer.backend`).
        sigma: float32 tensor `(batch,)`, the standard deviation in pixels.
        size: int (or scalar tensor), the length of the axis.
        radius: int (or scalar tensor), the kernel has `2 * radius + 1` taps.
        padding: `"reflect"` (mirror without repeating the edge pixel, as
            `numpy.pad(mode="reflect")`), `"edge"` (repeat the edge pixel) or
            `"zeros"` (taps outside the image are dropped, as a `"SAME"`
            convolution). With `"reflect"` the kernel is limited to the axis:
            taps reflected past the far edge land on the edge pixel.

    Returns:
        A float32 tensor of shape `(batch, size, size)`. With `"reflect"` and
        `"edge"` every row sums to 1.
    """
    bnp = backend.numpy
    taps = bnp.arange(-radius, radius + 1)
    distance = backend.cast(taps, "float32")
    sigma = bnp.expand_dims(sigma, -1)
    kernel = bnp.exp(-bnp.square(distance) / (2.0 * bnp.square(sigma)))
    kernel = kernel / bnp.sum(kernel, axis=-1, keepdims=True)
    positions = bnp.expand_dims(bnp.arange(size), -1) + taps
    last = size - 1
    if padding == "reflect":
        positions = last - bnp.abs(last - bnp.abs(positions))
        positions = bnp.maximum(positions, 0)
    elif padding == "edge":
        positions = bnp.clip(positions, 0, last)
    sources = bnp.equal(bnp.expand_dims(positions, -1), bnp.arange(size))
    sources = backend.cast(sources, "float32")
    return bnp.einsum("bk,ikj->bij", kernel, sources)


@keras.saving.register_keras_serializable(package="keras_simclr")
class RandomGaussianBlur(ImageDataLayer):
    """Blurs each image, with some probability, by a Gaussian of random width.

    As SimCLR's ImageNet augmentation: each image is blurred with probability
    `probability`, with its own standard deviation drawn from `U(sigma)` (in
    pixels), by a separable Gaussian kernel of `2 * (kernel_size // 2) + 1`
    taps. By default `kernel_size` is 10% of the image height
    (`height // 10`, as the official code), so a 224 pixel image gets 23 taps
    and a 32 pixel image 3.

    Borders are padded by reflection by default (as torchvision's
    `GaussianBlur`), so a constant image stays constant; the official code
    pads with zeros (a `"SAME"` depthwise convolution), which darkens the
    border: `padding="zeros"` reproduces it. The official code also draws one
    sigma for the whole batch; this layer draws one per image.

    The blur runs as two batched `einsum`s with per-image banded matrices
    (`out = K_y @ image @ K_x^T`), so it compiles with XLA and runs inside a
    compiled model and inside `tf.data` on every backend. Keras's own
    `keras.layers.RandomGaussianBlur` draws one sigma per batch and has a
    fixed kernel size, hence this layer. Images are channels-last.

    Args:
        probability: float in `[0, 1]`, the probability of blurring each
            image. Defaults to `0.5`.
        sigma: tuple of two positive floats, the range of the standard
            deviation in pixels. Defaults to `(0.1, 2.0)`.
        kernel_size: positive int or `None`, the kernel size (even sizes are
            rounded up to the next odd one). `None` (the default) uses
            `height // 10` of the input images.
        padding: `"reflect"`, `"edge"` or `"zeros"`, how the kernel treats the
            pixels beyond the border. Defaults to `"reflect"`.
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
        Images of the input's shape in the layer's compute dtype.

    Example:

    ```python
    layer = keras_simclr.layers.RandomGaussianBlur(probability=0.5, seed=0)
    images = np.random.uniform(0, 255, size=(8, 224, 224, 3))
    blurred = layer(images)  # half of them blurred, 23-tap kernels
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          Appendix A.
    """

    def __init__(
        self,
        probability=0.5,
        sigma=(0.1, 2.0),
        kernel_size=None,
        padding="reflect",
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        probability = _validation.check_probability(probability, "probability")
        sigma = _validation.check_interval(
            sigma, "sigma", minimum=0, include_minimum=False
        )
        kernel_size = _validation.check_int(
            kernel_size, "kernel_size", allow_none=True
        )
        padding = _validation.check_choice(padding, "padding", PADDINGS)
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.probability = probability
        self.sigma = sigma
        self.kernel_size = kernel_size
        self.padding = padding

    def _depends_on_value_range(self):
        return self.padding == "zeros" and self.value_range[0] != 0.0

    def _augment_in_unit_range(self, images):
        # Blurring is linear with weights that sum to 1, so it commutes with
        # mapping the value range to [0, 1], except that zero padding means
        # black, `low`, which is 0 only when `low` is 0.
        if self.padding != "zeros" or self.value_range[0] == 0.0:
            return self.augment(images)
        return super()._augment_in_unit_range(images)

    def augment(self, images):
        if self.probability == 0.0:
            return images
        transformation = self.get_random_transformation(
            self.backend.shape(images)[0]
        )
        return self.transform_images(images, transformation)

    def get_random_transformation(self, batch_size):
        """Draws `"blur"` (bool) and `"sigma"` (float32), both `(batch,)`."""
        return {
            "blur": self._uniform((batch_size,)) < self.probability,
            "sigma": self._uniform((batch_size,), *self.sigma),
        }

    def kernel_radius(self, image_height):
        """Half the kernel size, from `kernel_size` or the image height."""
        kernel_size = self.kernel_size
        if kernel_size is None:
            kernel_size = image_height // 10
        return kernel_size // 2

    def transform_images(self, images, transformation):
        """Blurs the images of a float batch that `transformation` selects."""
        bnp = self.backend.numpy
        _, height, width, _ = self.backend.shape(images)
        radius = self.kernel_radius(height)
        if isinstance(radius, int) and radius == 0:
            return images
        sigma = transformation["sigma"]
        rows = gaussian_blur_matrix(
            self.backend, sigma, height, radius, self.padding
        )
        if isinstance(height, int) and height == width:
            columns = rows
        else:
            columns = gaussian_blur_matrix(
                self.backend, sigma, width, radius, self.padding
            )
        blurred = bnp.einsum("bhH,bHWc->bhWc", rows, images)
        blurred = bnp.einsum("bwW,bhWc->bhwc", columns, blurred)
        if self.probability == 1.0:
            return blurred
        # A 0/1 blend rather than `where`, which is slow on TensorFlow's CPU
        # kernels; images with weight 0 come back bit for bit.
        blur = self.backend.cast(transformation["blur"], "float32")
        blur = bnp.reshape(blur, (-1, 1, 1, 1))
        return images + blur * (blurred - images)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "probability": self.probability,
                "sigma": self.sigma,
                "kernel_size": self.kernel_size,
                "padding": self.padding,
            }
        )
        return config
