"""ResNet encoders of SimCLR v1 and v2 (depths 18 to 200, width, SK)."""

import keras
from keras import ops

from keras_simclr import _validation
from keras_simclr.layers import data_layer
from keras_simclr.layers.channels_last_conv2d import ChannelsLastConv2D
from keras_simclr.layers.fused_batch_normalization import FusedBatchNormalization

# (block type, blocks per group) for each depth.
RESNET_ARCHITECTURES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}

# As the official SimCLR code: its `batch_norm_decay` default and epsilon.
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5

# Smallest width of the layer that computes the selective-kernel weights.
SELECTIVE_KERNEL_MIN_CHANNELS = 32

# Scaled channel counts are rounded to a multiple of this (MobileNet's rule).
CHANNEL_DIVISOR = 8

# Every layer is built for channels-last images, whatever
# `keras.config.image_data_format()` says, so that a saved model means the
# same thing wherever it is loaded.
DATA_FORMAT = "channels_last"


def _conv_initializer():
    # The official code's `VarianceScaling()`: scale 1, fan-in, truncated
    # normal. A fresh instance per layer, so that unseeded draws differ.
    return keras.initializers.VarianceScaling()


@keras.saving.register_keras_serializable(package="keras_simclr")
class SelectiveKernelMixing(keras.layers.Layer):
    """Mixes two convolution branches with per-image, per-channel weights.

    The fusion half of a selective-kernel convolution (SK-Net), as in the
    SimCLR v2 code: the input holds two branches of `filters` channels each,
    stacked on the channel axis (the first `filters` channels are branch 0).
    Their sum is averaged over space, reduced by a 1x1 convolution to
    `reduced_channels` with batch normalization and ReLU, and expanded by a
    1x1 convolution to one logit per branch and channel; a softmax over the
    two branches gives the weights of the weighted sum that is returned.

    Args:
        filters: int, channels of each branch (the input has `2 * filters`).
        reduced_channels: int, width of the 1x1 bottleneck that computes the
            weights.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: channels-last tensor `(batch, height, width, 2 * filters)`.
        training: bool, passed to the batch normalization.

    Returns:
        A tensor `(batch, height, width, filters)`.

    References:
        - [Li et al., 2019](https://arxiv.org/abs/1903.06586), Selective
          Kernel Networks.
        - [Chen et al., 2020](https://arxiv.org/abs/2006.10029), Big
          Self-Supervised Models are Strong Semi-Supervised Learners.
    """

    def __init__(self, filters, reduced_channels, **kwargs):
        super().__init__(**kwargs)
        self.filters = _validation.check_int(filters, "filters")
        self.reduced_channels = _validation.check_int(
            reduced_channels, "reduced_channels"
        )
        self.reduce_conv = ChannelsLastConv2D(
            self.reduced_channels,
            1,
            use_bias=False,
            kernel_initializer=_conv_initializer(),
            data_format=DATA_FORMAT,
            dtype=self.dtype_policy,
            name="reduce_conv",
        )
        self.reduce_bn = FusedBatchNormalization(
            momentum=BATCH_NORM_MOMENTUM,
            epsilon=BATCH_NORM_EPSILON,
            dtype=self.dtype_policy,
            name="reduce_bn",
        )
        self.expand_conv = ChannelsLastConv2D(
            2 * self.filters,
            1,
            use_bias=False,
            kernel_initializer=_conv_initializer(),
            data_format=DATA_FORMAT,
            dtype=self.dtype_policy,
            name="expand_conv",
        )

    def build(self, input_shape):
        if input_shape[-1] != 2 * self.filters:
            raise ValueError(
                f"{self.__class__.__name__} with filters={self.filters} "
                f"expects {2 * self.filters} input channels. Received: "
                f"input_shape={input_shape}"
            )
        pooled_shape = (input_shape[0], 1, 1, self.filters)
        self.reduce_conv.build(pooled_shape)
        reduced_shape = (input_shape[0], 1, 1, self.reduced_channels)
        self.reduce_bn.build(reduced_shape)
        self.expand_conv.build(reduced_shape)

    def call(self, inputs, training=None):
        branches = ops.stack(ops.split(inputs, 2, axis=-1), axis=0)
        pooled = ops.mean(ops.sum(branches, axis=0), axis=(1, 2), keepdims=True)
        hidden = self.reduce_conv(pooled)
        hidden = ops.relu(self.reduce_bn(hidden, training=training))
        logits = self.expand_conv(hidden)
        logits = ops.stack(ops.split(logits, 2, axis=-1), axis=0)
        weights = ops.softmax(logits, axis=0)
        return ops.sum(branches * weights, axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "reduced_channels": self.reduced_channels,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_simclr")
class ResNet(data_layer.InputRangeChecks, keras.Model):
    """ResNet encoder of SimCLR: images in, one feature vector per image out.

    The post-activation ResNet (v1.5: the stride of a bottleneck block sits in
    its 3x3 convolution) of the official SimCLR code (`tf2/resnet.py`):
    convolutions without bias, batch normalization (momentum 0.9, epsilon
    1e-5) then ReLU, and the last batch normalization of every residual
    branch starts with zero scale, so that each block starts as the identity
    on its shortcut. A strided convolution pads its input explicitly by
    `(k - 1) // 2` before and `k - 1 - (k - 1) // 2` after, then convolves
    without padding ("fixed padding"), so the result does not depend on the
    input size being even. After the last block, global average pooling
    gives a vector of `512 * width_multiplier` features (depths 18 and 34) or
    `2048 * width_multiplier` (depths 50 to 200), with the rounding below for
    a fractional `width_multiplier`.

    `width_multiplier` scales the channels of every convolution. A scaled
    count `c * width_multiplier` that is not a multiple of 8 is rounded as
    MobileNet's `_make_divisible` does: to the nearest multiple of 8, never
    below 8 and never more than 10% below the exact value (one step of 8 up
    when it would be). The rounded count of a group is the width of its 3x3
    convolutions; a bottleneck block outputs 4 times it. So at width 0.25 a
    ResNet-50 has groups 16, 32, 64, 128 wide and outputs 512 features, and
    at width 0.3 its groups are 24, 40, 80, 152 wide. Integer widths need no
    rounding and give the official networks.

    Its convolutions and batch norms are `ChannelsLastConv2D` and
    `FusedBatchNormalization`: Keras's layers, computing the same, without
    the layout copies of the PyTorch backend and with the backend's fused
    batch-norm kernel (docs/speed.md gives the gain).

    One deliberate difference from the official code: a basic-block network
    (depth 18 or 34) uses a projection shortcut only where the shape changes,
    as torchvision and the original paper do (the official code also projects
    in the first block of the first group), so its parameter count is the
    standard one; `project_first_shortcut=True` gives the official network
    (the one `keras_simclr.models.load_official` builds for official
    basic-block files). Bottleneck networks are identical either way.

    The first layer rescales pixels from `value_range` to `[0, 1]`; as in the
    official SimCLR code there is no mean/std normalization. Images are
    always channels-last, `(batch, height, width, channels)`, whatever
    `keras.config.image_data_format()` says.

    Images on another scale than `value_range` give features without a
    word, so the network checks what the user gives it, with the rule of
    `keras_simclr.layers.data_layer.check_value_range`: a call by the user
    (not from inside another model, whose own entry points check their
    data) on a concrete batch, and `predict` and `predict_on_batch` on the
    first batch of their data, refuse images outside `value_range` and,
    for a range above 1, images scaled down to `[0, 1]` or `[-1, 1]` (a
    batch that is not constant, with every value at or below 1: images
    really in `[0, 255]` never are). Symbolic tensors (a compiled step)
    are not checked.

    With `sk_ratio > 0` the network is the SimCLR v2 variant: the 3x3
    convolution of every bottleneck block becomes a selective-kernel
    convolution (one 3x3 convolution to two branches of `filters` channels,
    mixed by `SelectiveKernelMixing` whose hidden width is
    `max(int(filters * sk_ratio), 32)`), the stem is three 3x3 convolutions
    (`32, 32, 64` times `width_multiplier`, the first with stride 2) unless
    `cifar_stem=True`, and projection shortcuts average-pool by the stride
    before their 1x1 convolution (ResNet-D). As in the official code, basic
    blocks (depths 18 and 34) keep plain 3x3 convolutions and take only the
    stem and shortcut changes. SimCLR v2 uses `sk_ratio=0.0625`.

    Args:
        depth: int, one of 18, 34 (basic blocks), 50, 101, 152, 200
            (bottleneck blocks).
        width_multiplier: positive number (int or float), multiplies the
            number of filters of every convolution, the stem included; 1 to
            3 in SimCLR v2, fractions such as 0.25 or 0.5 for quick
            experiments and small distillation students. Fractional
            widths are rounded per layer to a multiple of 8 (see above).
        cifar_stem: bool. If True, the stem is one 3x3 convolution with
            stride 1 and no max pooling (for 32x32 images such as CIFAR);
            otherwise a 7x7 convolution with stride 2 and a 3x3 max pooling
            with stride 2.
        input_shape: tuple `(height, width, channels)`; height and width may
            be None. Channels must be known.
        value_range: tuple `(low, high)`, the range of input pixel values,
            mapped to `[0, 1]`; None to feed the network unchanged.
        sk_ratio: float >= 0, the selective-kernel ratio; 0 for SimCLR v1.
        project_first_shortcut: bool. If True, the first block of the first
            group projects its shortcut (a 1x1 convolution and batch norm)
            even where the shape does not change, as the official code's
            basic-block networks do; bottleneck networks always project
            there. Default False.
        name: string, the model name.
        **kwargs: other `keras.Model` arguments, such as `trainable` or
            `dtype` (a dtype policy given to every layer).

    Raises:
        ValueError: if an argument is out of range, naming the argument;
            when called or asked to predict on images outside
            `value_range`, or scaled down for a range above 1 (see above).

    Example:

    ```python
    encoder = keras_simclr.models.ResNet(depth=18, cifar_stem=True)
    images = np.random.randint(0, 256, size=(8, 32, 32, 3))
    features = encoder(images)  # shape (8, 512)
    ```

    References:
        - [He et al., 2016](https://arxiv.org/abs/1512.03385), Deep Residual
          Learning for Image Recognition.
        - [Goyal et al., 2017](https://arxiv.org/abs/1706.02677), zero-init of
          the last batch normalization of each residual block.
        - [He et al., 2019](https://arxiv.org/abs/1812.01187), Bag of Tricks
          for Image Classification (ResNet-D).
        - [Li et al., 2019](https://arxiv.org/abs/1903.06586), Selective
          Kernel Networks.
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR v1.
        - [Chen et al., 2020](https://arxiv.org/abs/2006.10029), SimCLR v2.
    """

    # Checked where the user calls it or asks it to predict, on concrete
    # images (it does not run in `tf.data` maps).
    value_range_owner = "the ResNet"
    checks_graph_inputs = False

    def __init__(
        self,
        depth=50,
        width_multiplier=1,
        cifar_stem=False,
        input_shape=(None, None, 3),
        value_range=(0, 255),
        sk_ratio=0.0,
        project_first_shortcut=False,
        name=None,
        **kwargs,
    ):
        depth = _validation.check_choice(depth, "depth", tuple(RESNET_ARCHITECTURES))
        width_multiplier = _validate_width_multiplier(width_multiplier)
        cifar_stem = _validation.check_bool(cifar_stem, "cifar_stem")
        input_shape = _validate_input_shape(input_shape)
        value_range = _validation.check_value_range(value_range, allow_none=True)
        sk_ratio = _validation.check_non_negative_number(sk_ratio, "sk_ratio")
        project_first_shortcut = _validation.check_bool(
            project_first_shortcut, "project_first_shortcut"
        )
        dtype = kwargs.pop("dtype", None)
        block_type, blocks_per_group = RESNET_ARCHITECTURES[depth]
        builder = _ResNetBuilder(
            sk_ratio=sk_ratio,
            dtype=dtype,
            project_first_shortcut=project_first_shortcut,
        )

        # === Layers ===
        rescaling = None
        if value_range is not None:
            low, high = value_range
            rescaling = keras.layers.Rescaling(
                scale=1.0 / (high - low),
                offset=-low / (high - low) if low else 0.0,
                dtype=dtype,
                name="rescaling",
            )
        global_pool = keras.layers.GlobalAveragePooling2D(
            data_format=DATA_FORMAT, dtype=dtype, name="avg_pool"
        )
        block_fn = (
            builder.basic_block if block_type == "basic" else builder.bottleneck
        )
        stem_filters = _scaled_channels(64, width_multiplier)

        # === Functional Model ===
        inputs = keras.Input(shape=input_shape, name="images")
        x = rescaling(inputs) if rescaling is not None else inputs
        if cifar_stem:
            x = builder.conv(x, stem_filters, 3, 1, "stem_conv")
            x = builder.batch_norm(x, "stem")
        else:
            if sk_ratio > 0:
                # Rounded on its own, so that it never falls below 8.
                half_filters = _scaled_channels(32, width_multiplier)
                x = builder.conv(x, half_filters, 3, 2, "stem_conv1")
                x = builder.batch_norm(x, "stem", "1")
                x = builder.conv(x, half_filters, 3, 1, "stem_conv2")
                x = builder.batch_norm(x, "stem", "2")
                x = builder.conv(x, stem_filters, 3, 1, "stem_conv3")
            else:
                x = builder.conv(x, stem_filters, 7, 2, "stem_conv")
            x = builder.batch_norm(x, "stem")
            # The official code pools with "same" padding, not fixed padding.
            x = keras.layers.MaxPooling2D(
                pool_size=3,
                strides=2,
                padding="same",
                data_format=DATA_FORMAT,
                dtype=dtype,
                name="stem_pool",
            )(x)
        for group, num_blocks in enumerate(blocks_per_group):
            filters = _scaled_channels(64 * 2**group, width_multiplier)
            for block in range(num_blocks):
                strides = 2 if group > 0 and block == 0 else 1
                x = block_fn(
                    x, filters, strides, f"group{group + 1}_block{block + 1}"
                )
        outputs = global_pool(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        if dtype is not None:
            # A functional model ignores `dtype`; record the layers' policy.
            self.dtype_policy = keras.dtype_policies.get(dtype)

        # === Config ===
        self.depth = depth
        self.width_multiplier = width_multiplier
        self.cifar_stem = cifar_stem
        self.image_shape = input_shape
        self.value_range = value_range
        self.sk_ratio = sk_ratio
        self.project_first_shortcut = project_first_shortcut
        self.feature_dim = int(outputs.shape[-1])

    # === Input checks ===

    def __call__(self, *args, **kwargs):
        # Only a call by the user: inside a model, the model's entry points
        # have checked the data, and a compiled step pays nothing.
        inputs = args[0] if args else kwargs.get("inputs")
        if inputs is not None and not isinstance(inputs, (dict, list, tuple)):
            self._check_value_range(inputs)
        return super().__call__(*args, **kwargs)

    def predict(self, x, batch_size=None, *args, **kwargs):
        if self._checks_inputs():
            data_layer.check_input_range(
                x, self.value_range, "x", "the ResNet", batch_size
            )
        with data_layer.inputs_checked():
            return super().predict(x, batch_size, *args, **kwargs)

    def predict_on_batch(self, x):
        if self._checks_inputs():
            data_layer.check_input_range(
                x, self.value_range, "x", "the ResNet"
            )
        with data_layer.inputs_checked():
            return super().predict_on_batch(x)

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "depth": self.depth,
            "width_multiplier": self.width_multiplier,
            "cifar_stem": self.cifar_stem,
            "input_shape": self.image_shape,
            "value_range": self.value_range,
            "sk_ratio": self.sk_ratio,
        }
        if self.project_first_shortcut:
            # Only when set: configs saved before it load unchanged.
            config["project_first_shortcut"] = True
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _ResNetBuilder:
    """Applies the layers of one ResNet to symbolic tensors."""

    def __init__(self, sk_ratio, dtype, project_first_shortcut=False):
        self.sk_ratio = sk_ratio
        self.dtype = dtype
        self.project_first_shortcut = project_first_shortcut

    def conv(self, x, filters, kernel_size, strides, name):
        padding = "same"
        if strides > 1:
            padding = "valid"
            pad_begin = (kernel_size - 1) // 2
            pad_end = kernel_size - 1 - pad_begin
            if kernel_size > 1:
                x = keras.layers.ZeroPadding2D(
                    ((pad_begin, pad_end), (pad_begin, pad_end)),
                    data_format=DATA_FORMAT,
                    dtype=self.dtype,
                    name=f"{name}_pad",
                )(x)
        return ChannelsLastConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_initializer=_conv_initializer(),
            data_format=DATA_FORMAT,
            dtype=self.dtype,
            name=name,
        )(x)

    def batch_norm(self, x, prefix, suffix="", relu=True, zero_init=False):
        x = FusedBatchNormalization(
            momentum=BATCH_NORM_MOMENTUM,
            epsilon=BATCH_NORM_EPSILON,
            gamma_initializer="zeros" if zero_init else "ones",
            dtype=self.dtype,
            name=f"{prefix}_bn{suffix}",
        )(x)
        if relu:
            x = keras.layers.ReLU(
                dtype=self.dtype, name=f"{prefix}_relu{suffix}"
            )(x)
        return x

    def shortcut(self, x, filters_out, strides, prefix):
        first = prefix == "group1_block1"
        if strides == 1 and x.shape[-1] == filters_out:
            if not (first and self.project_first_shortcut):
                return x
        if self.sk_ratio > 0:
            # ResNet-D: average-pool by the stride, then a 1x1 convolution
            # (official code: pad (0, 1) then "valid" when strided).
            if strides > 1:
                x = keras.layers.ZeroPadding2D(
                    ((0, 1), (0, 1)),
                    data_format=DATA_FORMAT,
                    dtype=self.dtype,
                    name=f"{prefix}_shortcut_pad",
                )(x)
            x = keras.layers.AveragePooling2D(
                pool_size=2,
                strides=strides,
                padding="same" if strides == 1 else "valid",
                data_format=DATA_FORMAT,
                dtype=self.dtype,
                name=f"{prefix}_shortcut_pool",
            )(x)
            strides = 1
        x = self.conv(x, filters_out, 1, strides, f"{prefix}_shortcut_conv")
        return self.batch_norm(x, f"{prefix}_shortcut", relu=False)

    def basic_block(self, x, filters, strides, prefix):
        shortcut = self.shortcut(x, filters, strides, prefix)
        x = self.conv(x, filters, 3, strides, f"{prefix}_conv1")
        x = self.batch_norm(x, prefix, "1")
        x = self.conv(x, filters, 3, 1, f"{prefix}_conv2")
        x = self.batch_norm(x, prefix, "2", relu=False, zero_init=True)
        return self._merge(x, shortcut, prefix)

    def bottleneck(self, x, filters, strides, prefix):
        shortcut = self.shortcut(x, 4 * filters, strides, prefix)
        x = self.conv(x, filters, 1, 1, f"{prefix}_conv1")
        x = self.batch_norm(x, prefix, "1")
        if self.sk_ratio > 0:
            x = self.conv(x, 2 * filters, 3, strides, f"{prefix}_conv2")
            x = self.batch_norm(x, prefix, "2")
            reduced = int(filters * self.sk_ratio)
            x = SelectiveKernelMixing(
                filters,
                max(reduced, SELECTIVE_KERNEL_MIN_CHANNELS),
                dtype=self.dtype,
                name=f"{prefix}_sk_mixing",
            )(x)
        else:
            x = self.conv(x, filters, 3, strides, f"{prefix}_conv2")
            x = self.batch_norm(x, prefix, "2")
        x = self.conv(x, 4 * filters, 1, 1, f"{prefix}_conv3")
        x = self.batch_norm(x, prefix, "3", relu=False, zero_init=True)
        return self._merge(x, shortcut, prefix)

    def _merge(self, residual, shortcut, prefix):
        x = keras.layers.Add(dtype=self.dtype, name=f"{prefix}_add")(
            [residual, shortcut]
        )
        return keras.layers.ReLU(dtype=self.dtype, name=f"{prefix}_out")(x)


def _scaled_channels(channels, width_multiplier, divisor=CHANNEL_DIVISOR):
    """`channels * width_multiplier` rounded to a multiple of `divisor`.

    MobileNet's `_make_divisible`: the nearest multiple of `divisor`, at
    least `divisor`, and one step of `divisor` more if rounding down would
    lose more than 10% of the exact value.

    Args:
        channels: int, the channel count at width 1.
        width_multiplier: positive number.
        divisor: int, the multiple to round to.

    Returns:
        An int, a positive multiple of `divisor`.
    """
    exact = channels * width_multiplier
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return rounded


def _validate_width_multiplier(width_multiplier):
    """A positive number; an int stays an int (names and configs say 1, not
    1.0)."""
    _validation.check_positive_number(width_multiplier, "width_multiplier")
    if _validation.is_integer(width_multiplier):
        return int(width_multiplier)
    return float(width_multiplier)


def _validate_input_shape(input_shape):
    def is_size(value, allow_none):
        if value is None:
            return allow_none
        return _validation.is_integer(value) and value >= 1

    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(is_size(v, allow_none=True) for v in input_shape[:2])
        or not is_size(input_shape[2], allow_none=False)
    ):
        raise ValueError(
            "`input_shape` must be `(height, width, channels)` (channels "
            "last) with positive integers, height and width may be None, "
            f"channels must be known. Received: input_shape={input_shape}"
        )
    return tuple(None if v is None else int(v) for v in input_shape)
